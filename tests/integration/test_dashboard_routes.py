"""The dashboard routes on the admin app: public page files, guarded API, rules that match the registry."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet

from pipeline.registry.api import create_app
from pipeline.registry.dashboard import STATIC_DIR, rules
from pipeline.registry.model import RegistryError, normalize_property, parse_frequency
from pipeline.settings import load_settings

TOKEN = "route-token"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The admin app with ADMIN_TOKEN set, served by uvicorn in a thread on a free loopback port."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(load_settings()), log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "admin server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def _raw_get(url: str, target: str) -> bytes:
    """A request line sent as written: HTTP clients would collapse the `..` segments first."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def test_the_page_loads_without_the_token_and_the_api_still_needs_it(url: str) -> None:
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("dashboard.js", "dashboard.css"):
        assert httpx.get(f"{url}/dashboard/static/{name}").status_code == 200
    # The page names its icon, so a browser does not ask for /favicon.ico (a 404 on every load before).
    assert '<link rel="icon" href="/dashboard/static/favicon.svg"' in page.text
    icon = httpx.get(f"{url}/dashboard/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert httpx.get(f"{url}/dashboard/rules.json").json()["sources"][0]["integrationSource"] == "CLINIKO"

    for method, path in (
        ("GET", "/admin/groups"),
        ("GET", "/openapi.json"),
        ("POST", "/"),
        ("PUT", "/dashboard/static/dashboard.js"),
    ):
        assert httpx.request(method, url + path).status_code == 401, (method, path)
    for target in (
        "/dashboard/static/../../api.py",
        "/dashboard/../admin/groups",
        "/dashboard/%2e%2e/admin/groups",
    ):
        reply = _raw_get(url, target)
        assert reply.startswith(b"HTTP/1.1 404"), (target, reply[:200])
    assert httpx.get(f"{url}/admin/groups", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a fetch
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


@pytest.mark.parametrize("key", ["customer.fetch.delay", "customer.cooloff.days"])
def test_the_pages_integer_ranges_are_the_registrys(key: str) -> None:
    low, high = rules()["integerRanges"][key]
    for ok in (low, high):
        assert normalize_property(key, str(ok), level="mapping", field="f") == str(ok)
    for bad in (low - 1, high + 1):
        with pytest.raises(RegistryError):
            normalize_property(key, str(bad), level="mapping", field="f")


def test_the_pages_frequency_limits_are_the_registrys() -> None:
    for unit, high in rules()["maxFrequency"].items():
        assert parse_frequency(high, unit, "frequency").value == high
        with pytest.raises(RegistryError):
            parse_frequency(high + 1, unit, "frequency")


def test_the_catch_up_warning_is_public_and_comes_from_the_calendar(url: str) -> None:
    """No token: it reads no registry data. A past time gets the planner's words, a future one none."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    past = (now - timedelta(days=10, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = {"nextRunTime": past, "frequencyValue": 1, "frequencyUnit": "days", "catchupDays": 3}
    reply = httpx.get(f"{url}/dashboard/catch-up", params=query)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["past"] is True and answer["catchupDays"] == 3
    assert "is 10 days in the past" in answer["message"]
    assert "catch-up horizon of 3 days plus one frequency (1 day)" in answer["message"]
    assert answer["skippedDays"] > 0 and f"The {answer['skippedDays']} older days" in answer["message"]

    future = (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert httpx.get(f"{url}/dashboard/catch-up", params={**query, "nextRunTime": future}).json() == {
        "past": False,
        "message": None,
    }
    refused = httpx.get(f"{url}/dashboard/catch-up", params={**query, "catchupDays": 91})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "catchupDays"
    refused = httpx.get(f"{url}/dashboard/catch-up", params={**query, "nextRunTime": "yesterday"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "nextRunTime"
