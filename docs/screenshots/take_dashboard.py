"""Screenshots of the integration dashboard for the docs, at 1280 px, from a throw-away registry.

    uv run python docs/screenshots/take_dashboard.py

Starts the admin app on a free loopback port over a temporary DATA_DIR, sets up the manual's SMB clinic and a
small enterprise through the admin API, and saves `dashboard-list.png` (the integrations list),
`dashboard-drawer.png` (the location drawer of Add Integration, with a next run time 10 days back and its
catch-up warning) and `dashboard-review.png` (the review step) next to this script. Needs Debian's chromium
(`make browser`).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from cryptography.fernet import Fernet
from playwright.sync_api import sync_playwright

from pipeline.registry.api import create_app
from pipeline.registry.manual import replay_manual
from pipeline.sandbox.browser import launch_chromium
from pipeline.settings import load_settings

HERE = Path(__file__).resolve().parent
ENTERPRISE = "159894300000001"
LOCATIONS = (
    ("159894300000011", "Sydney CBD, Bondi", "2", {"value": 1, "unit": "days"}, True),
    ("159894300000012", "Parramatta", None, {"value": 12, "unit": "hours"}, True),
    ("159894300000013", "Newcastle", None, {"value": 1, "unit": "days"}, False),
)


def _seed(url: str) -> None:
    replay_manual(url)
    with httpx.Client(base_url=url, timeout=10) as http:
        group = http.put(
            "/integration/add/businessintegrationgroup",
            json={
                "parentBusinessNumber": ENTERPRISE,
                "integrationSourceId": 118,
                "integrationGroupProperties": [
                    {"propertyKey": "cliniko.api.key", "propertyValue": "MS0xMjM0NTY3ODkwYWJjZGVm-au2"},
                    {"propertyKey": "birdeye.api.key", "propertyValue": "be-demo-0a1b2c3d4e5f6071"},
                    {"propertyKey": "customer.fetch.delay", "propertyValue": "1"},
                ],
                "integrationGroupTriggers": [{"triggerId": 129, "triggerTypeId": 1}],
            },
        ).json()
        for number, names, delay, frequency, active in LOCATIONS:
            properties = [{"propertyKey": "cliniko.location.name", "propertyValue": names}]
            if delay is not None:
                properties.append({"propertyKey": "customer.fetch.delay", "propertyValue": delay})
            http.put(
                "/integration/add/businessintegrationmapping",
                json={
                    "businessNumber": number,
                    "integrationGroupId": group["groupId"],
                    "integrationProperties": properties,
                    "active": active,
                    "test": number.endswith("12"),
                    "frequency": frequency,
                    "nextRunTime": "2026-12-01T06:00:00Z",
                },
            ).raise_for_status()


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.update(DATA_DIR=data_dir, REGISTRY_SECRET_KEY=Fernet.generate_key().decode())
        os.environ.pop("ADMIN_TOKEN", None)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(create_app(load_settings()), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            _seed(url)
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(url)
                page.wait_for_selector("body[data-ready=true]")
                page.screenshot(path=HERE / "dashboard-list.png")

                page.get_by_role("button", name="Add Integration").click()
                page.get_by_label("CRM name").fill("clin")
                page.get_by_role("radio", name="Cliniko", exact=False).check()
                page.get_by_role("button", name="Next").click()
                page.get_by_role("button", name="Next").click()
                page.get_by_label("Enterprise (multi-location)").check()
                page.get_by_label("Enterprise ID").fill("159894399999999")
                page.locator("#g-cliniko-key").fill("MS05ODkwMTU1NzY1ODIwMzcyNjAt-au3")
                page.get_by_role("button", name="Next").click()
                page.get_by_role("button", name="Add location").click()
                page.get_by_label("Business ID (Birdeye location)").fill("159894399999911")
                page.get_by_label("Location names").fill("New York, Brooklyn")
                page.get_by_label("Customer fetch delay (days)", exact=True).last.fill("2")
                page.get_by_label("Beta").check()
                page.get_by_label("Birdeye API key", exact=True).last.fill("be-demo-9f8e7d6c5b4a3928")
                past = datetime.now(UTC) - timedelta(days=10, hours=1)
                page.get_by_label("Next run time (UTC)").fill(past.strftime("%Y-%m-%dT%H:%M"))
                page.locator("#loc-next-run-warning").wait_for()
                page.locator("#loc-next-run").scroll_into_view_if_needed()
                page.screenshot(path=HERE / "dashboard-drawer.png")

                page.get_by_role("dialog").get_by_role("button", name="Add").click()
                page.get_by_role("button", name="Add location").click()
                page.get_by_label("Business ID (Birdeye location)").fill("159894399999912")
                page.get_by_label("Location names").fill("Queens")
                page.get_by_label("Test (dry run, never sends)").check()
                page.get_by_role("dialog").get_by_role("button", name="Add").click()
                page.get_by_role("button", name="Next").click()
                page.locator("#review-warnings li").first.wait_for()
                page.screenshot(path=HERE / "dashboard-review.png", full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


if __name__ == "__main__":
    main()
