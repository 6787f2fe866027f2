"""The admin API over real HTTP: the manual's curl payloads, bad input, operator routes, secrets, auth.

Every test runs on both stores of the registry: its SQLite file, and PostgreSQL (`DATABASE_URL`, a real
server: tests/postgres_server.py)."""

from __future__ import annotations

import json
import logging
import random
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from postgres_server import create_database

from pipeline.registry.api import create_app
from pipeline.registry.manual import (
    ENTERPRISE_LOCATION_NUMBER,
    SAMPLE_GROUP_RESPONSE,
    SAMPLE_TRIGGERS_RESPONSE,
    SMB_BUSINESS_NUMBER,
    STEP,
    replay_manual,
    send,
)
from pipeline.settings import load_settings

MANUAL_KEY = json.loads(STEP["smb_group"].body)["integrationGroupProperties"][0]["propertyValue"]
BIRDEYE_KEY = "be-live-7f3c9a2e41d84b6f9c0a5e7d3b1f2a9e"
OVERRIDE_KEY = "MS0xMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo-uk2"
UNKNOWN_SHARD_KEY = OVERRIDE_KEY.replace("-uk2", "-uk9")


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """uvicorn in a thread on a free loopback port; logs propagate to the root logger (caplog)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "admin server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if request.param == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("database_url"))
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    return load_settings()


@pytest.fixture
def app(settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded_server(
    request, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, httpx.Client]]:
    """One server for the read-mostly tests: the manual's set-up, plus a source and trigger of another
    integration for the cross-source case. Tests that use it must leave the registry as they found it."""
    with pytest.MonkeyPatch.context() as env:
        if request.param == "postgres":
            server = request.getfixturevalue("postgres_server_url")
            env.setenv("DATABASE_URL", create_database(server, f"seeded_{uuid.uuid4().hex[:8]}"))
        else:
            env.delenv("DATABASE_URL", raising=False)
        env.setenv("DATA_DIR", str(tmp_path_factory.mktemp("seeded")))
        env.setenv("REGISTRY_SECRET_KEY", Fernet.generate_key().decode())
        env.delenv("ADMIN_TOKEN", raising=False)
        app = create_app(load_settings())
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        replies = replay_manual(url)
        assert all(reply.status_code < 300 for reply in replies.values()), {
            name: reply.text for name, reply in replies.items()
        }
        with app.state.registry.database.transaction(write=True) as con:  # a catalogue of another integration
            con.execute(
                "INSERT INTO integration_source "
                "VALUES (200, 'OTHER', 'Healthcare', 'Birdeye API', 'Standard', 0)"
            )
            con.execute(
                "INSERT INTO integration_trigger VALUES (300, 200, 'otherTriggerServiceImpl', 'Other', "
                "'Other trigger', 1, 1, 'JOB', 1, 'Other', 1)"
            )
        yield app, http


@pytest.fixture
def seeded(base_url: str, client: httpx.Client) -> httpx.Client:
    """A fresh server of this test alone, set up as the manual says."""
    replies = replay_manual(base_url)
    assert all(reply.status_code < 300 for reply in replies.values())
    return client


# -- the manual, verbatim --------------------------------------------------------------------------


def test_manual_replay_returns_the_sample_responses(base_url: str, app: FastAPI) -> None:
    replies = replay_manual(base_url)

    assert {name: reply.status_code for name, reply in replies.items()} == {
        "smb_group": 201,
        "enterprise_group": 200,  # the same body again: PUT is idempotent and returns the same group
        "list_triggers": 200,
        "find_group": 200,
        "replace_triggers": 200,
        "append_triggers": 200,
        "smb_mapping": 201,
        "enterprise_mapping": 201,
    }
    assert replies["list_triggers"].json() == SAMPLE_TRIGGERS_RESPONSE
    group = replies["find_group"].json()
    assert {key: group[key] for key in SAMPLE_GROUP_RESPONSE} == SAMPLE_GROUP_RESPONSE
    assert group["parentBusinessNumber"] == SMB_BUSINESS_NUMBER
    assert group["integrationGroupProperties"] == [
        {"propertyKey": "cliniko.api.key", "propertyValue": "****-au3", "isSecure": True},
        {"propertyKey": "customer.fetch.delay", "propertyValue": "0", "isSecure": False},
    ]
    assert replies["smb_group"].json()["groupId"] == replies["enterprise_group"].json()["groupId"] == 22253
    for name in ("replace_triggers", "append_triggers"):
        assert (
            replies[name].json()["integrationGroupTriggers"]
            == SAMPLE_GROUP_RESPONSE["integrationGroupTriggers"]
        )

    smb, enterprise = replies["smb_mapping"].json(), replies["enterprise_mapping"].json()
    assert (smb["businessNumber"], enterprise["businessNumber"]) == (
        SMB_BUSINESS_NUMBER,
        ENTERPRISE_LOCATION_NUMBER,
    )
    for mapping in (smb, enterprise):
        assert mapping["integrationGroupId"] == 22253
        assert (mapping["active"], mapping["test"], mapping["beta"]) == (True, False, False)
        assert mapping["frequency"] == {"value": 1, "unit": "days"}
        assert mapping["nextRunTime"].endswith("T06:00:00Z")
        assert mapping["integrationProperties"] == [
            {"propertyKey": "customer.fetch.delay", "propertyValue": "0", "isSecure": False},
            {"propertyKey": "cliniko.location.name", "propertyValue": "New York", "isSecure": False},
        ]
    # The enterprise location is found through its mapping: same group, same shape.
    by_location = httpx.get(f"{base_url}/integration/businessintegrationgroup/{ENTERPRISE_LOCATION_NUMBER}")
    assert by_location.status_code == 200 and by_location.json()["groupId"] == 22253


def test_manual_replay_twice_changes_nothing(base_url: str, app: FastAPI) -> None:
    replay_manual(base_url)
    before = app.state.registry.snapshot()
    replies = replay_manual(base_url)
    assert all(reply.status_code == 200 for reply in replies.values()), {
        n: r.status_code for n, r in replies.items()
    }
    after = app.state.registry.snapshot()
    # Only update timestamps of the trigger steps move; rows and values stay.
    strip = {"integration_group"}
    assert {t: rows for t, rows in after.items() if t not in strip} == {
        t: rows for t, rows in before.items() if t not in strip
    }


# -- bad input -------------------------------------------------------------------------------------

GROUP = json.loads(STEP["smb_group"].body)
MAPPING = json.loads(STEP["smb_mapping"].body)
GROUP_PATH = "/integration/add/businessintegrationgroup"
UPDATE_PATH = "/integration/update/businessintegrationgroup?replaceTriggers=true"
MAPPING_PATH = "/integration/add/businessintegrationmapping"
NEW_PARENT = 777000111222333


def group_with(**changes: object) -> dict:
    body = json.loads(json.dumps(GROUP))
    body["parentBusinessNumber"] = NEW_PARENT
    body.update(changes)
    return body


def group_props(*extra: dict, key: str = MANUAL_KEY) -> list[dict]:
    return [{"propertyKey": "cliniko.api.key", "propertyValue": key, "isSecure": False}, *extra]


def mapping_with(props: list[dict] | None = None, **changes: object) -> dict:
    body = json.loads(json.dumps(MAPPING))
    body["businessNumber"] = 888000111222333
    if props is not None:
        body["integrationProperties"] = props
    body.update(changes)
    return body


def prop(key: str, value: object) -> dict:
    return {"propertyKey": key, "propertyValue": value, "isSecure": False}


NY = prop("cliniko.location.name", "New York")

# (id, method, path, body (dict -> JSON, bytes -> raw), extra headers, status, field, message fragment)
BAD_REQUESTS = [
    (
        "unknown source",
        "PUT",
        GROUP_PATH,
        group_with(integrationSourceId=999),
        {},
        422,
        "integrationSourceId",
        "unknown integration source 999; known sources: 118 (CLINIKO)",
    ),
    (
        "unknown trigger",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupTriggers=[{"triggerId": 130, "triggerTypeId": 1}]),
        {},
        422,
        "integrationGroupTriggers[0].triggerId",
        "unknown trigger 130; triggers of source 118: 129",
    ),
    (
        "trigger of another source",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupTriggers=[{"triggerId": 300, "triggerTypeId": 1}]),
        {},
        422,
        "integrationGroupTriggers[0].triggerId",
        "trigger 300 belongs to source 200, not to source 118",
    ),
    (
        "trigger type mismatch",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupTriggers=[{"triggerId": 129, "triggerTypeId": 2}]),
        {},
        422,
        "integrationGroupTriggers[0].triggerTypeId",
        "trigger 129 has type 1 (JOB), not 2",
    ),
    (
        "no trigger",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupTriggers=[]),
        {},
        422,
        "integrationGroupTriggers",
        "at least one trigger",
    ),
    (
        "duplicate group",
        "PUT",
        GROUP_PATH,
        {**GROUP, "integrationGroupProperties": group_props(prop("customer.fetch.delay", "3"))},
        {},
        409,
        "parentBusinessNumber",
        "already has integration group 22253",
    ),
    (
        "group without cliniko key",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupProperties=[prop("customer.fetch.delay", "0")]),
        {},
        422,
        "integrationGroupProperties",
        "cliniko.api.key is required on the group",
    ),
    (
        "unknown shard suffix",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupProperties=group_props(key="abcdef-zz9")),
        {},
        422,
        "integrationGroupProperties[0].propertyValue",
        "unknown shard suffix 'zz9'",
    ),
    (
        "location name on a group",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupProperties=group_props(NY)),
        {},
        422,
        "integrationGroupProperties[1].propertyKey",
        "cliniko.location.name is a mapping property",
    ),
    (
        "parent not a number",
        "PUT",
        GROUP_PATH,
        group_with(parentBusinessNumber="12ab"),
        {},
        422,
        "parentBusinessNumber",
        "must be a positive integer",
    ),
    (
        "missing field",
        "PUT",
        GROUP_PATH,
        {k: v for k, v in GROUP.items() if k != "integrationSourceId"},
        {},
        422,
        "integrationSourceId",
        "is required",
    ),
    (
        "unknown field",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupProperty=[]),
        {},
        422,
        "integrationGroupProperty",
        "is not a known field",
    ),
    (
        "isSecure not a boolean",
        "PUT",
        GROUP_PATH,
        group_with(integrationGroupProperties=[{**group_props()[0], "isSecure": "yes"}]),
        {},
        422,
        "integrationGroupProperties[0].isSecure",
        "valid boolean",
    ),
    (
        "mapping to unknown group",
        "PUT",
        MAPPING_PATH,
        mapping_with(integrationGroupId=1),
        {},
        422,
        "integrationGroupId",
        "no integration group 1; existing groups: 22253",
    ),
    (
        "business number text",
        "PUT",
        MAPPING_PATH,
        mapping_with(businessNumber="abc"),
        {},
        422,
        "businessNumber",
        "must be a positive integer",
    ),
    (
        "business number negative",
        "PUT",
        MAPPING_PATH,
        mapping_with(businessNumber=-159894373919788),
        {},
        422,
        "businessNumber",
        "must be a positive integer",
    ),
    (
        "business number zero",
        "PUT",
        MAPPING_PATH,
        mapping_with(businessNumber=0),
        {},
        422,
        "businessNumber",
        "not 0",
    ),
    (
        "business number fraction",
        "PUT",
        MAPPING_PATH,
        mapping_with(businessNumber=1.5),
        {},
        422,
        "businessNumber",
        "must be a positive integer",
    ),
    (
        "business number boolean",
        "PUT",
        MAPPING_PATH,
        mapping_with(businessNumber=True),
        {},
        422,
        "businessNumber",
        "not a boolean",
    ),
    (
        "unknown property key",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("customer.fetch.days", "1")]),
        {},
        422,
        "integrationProperties[1].propertyKey",
        "unknown property key 'customer.fetch.days'; known keys: cliniko.api.key, birdeye.api.key, "
        "customer.fetch.delay, cliniko.location.name, customer.cooloff.days",
    ),
    (
        "fetch delay not an integer",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("customer.fetch.delay", "2.5")]),
        {},
        422,
        "integrationProperties[1].propertyValue",
        "must be an integer from 0 to 365, got '2.5'",
    ),
    (
        "fetch delay too large",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("customer.fetch.delay", "366")]),
        {},
        422,
        "integrationProperties[1].propertyValue",
        "must be an integer from 0 to 365, got 366",
    ),
    (
        "fetch delay negative",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("customer.fetch.delay", -1)]),
        {},
        422,
        "integrationProperties[1].propertyValue",
        "got -1",
    ),
    (
        "cool-off too large",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("customer.cooloff.days", "3651")]),
        {},
        422,
        "integrationProperties[1].propertyValue",
        "from 0 to 3650",
    ),
    (
        "blank location names",
        "PUT",
        MAPPING_PATH,
        mapping_with([prop("cliniko.location.name", " , ")]),
        {},
        422,
        "integrationProperties[0].propertyValue",
        "none blank",
    ),
    (
        "empty location name in list",
        "PUT",
        MAPPING_PATH,
        mapping_with([prop("cliniko.location.name", "New York,,Boston")]),
        {},
        422,
        "integrationProperties[0].propertyValue",
        "none blank",
    ),
    (
        "blank name among excluded appointment types",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("cliniko.appointment.types.excluded", "Free Consult,,Pilates Class")]),
        {},
        422,
        "integrationProperties[1].propertyValue",
        "comma-separated Cliniko appointment type names, none blank",
    ),
    (
        "excluded appointment types of only commas on a group",
        "POST",
        UPDATE_PATH,
        {
            "groupId": 22253,
            "integrationGroupTriggers": [{"triggerId": 129, "triggerTypeId": 1, "actionIds": [2]}],
            "integrationGroupProperties": [prop("cliniko.appointment.types.excluded", " , ")],
        },
        {},
        422,
        "integrationGroupProperties[0].propertyValue",
        "none blank",
    ),
    (
        "mapping without location",
        "PUT",
        MAPPING_PATH,
        mapping_with([prop("customer.fetch.delay", "0")]),
        {},
        422,
        "integrationProperties",
        "cliniko.location.name is required",
    ),
    (
        "mapping key with unknown shard",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, prop("cliniko.api.key", "abc-au9")]),
        {},
        422,
        "integrationProperties[1].propertyValue",
        "unknown shard suffix 'au9'",
    ),
    (
        "duplicate property key",
        "PUT",
        MAPPING_PATH,
        mapping_with([NY, NY]),
        {},
        422,
        "integrationProperties[1].propertyKey",
        "given more than once",
    ),
    (
        "duplicate mapping",
        "PUT",
        MAPPING_PATH,
        {**MAPPING, "beta": True},
        {},
        409,
        "businessNumber",
        "already mapped in integration group 22253",
    ),
    ("invalid JSON", "PUT", MAPPING_PATH, b'{"businessNumber": 1,', {}, 400, "body", "invalid JSON"),
    ("JSON that is not an object", "PUT", MAPPING_PATH, b"[1, 2]", {}, 422, "body", "must be a JSON object"),
    ("empty body", "PUT", MAPPING_PATH, b"", {}, 422, "body", "a JSON request body is required"),
    (
        "wrong content type",
        "PUT",
        MAPPING_PATH,
        json.dumps(MAPPING).encode(),
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "Content-Type",
        "application/json",
    ),
    (
        "body too large",
        "PUT",
        GROUP_PATH,
        b'{"pad": "' + b"x" * 70_000 + b'"}',
        {},
        413,
        "body",
        "65536 bytes",
    ),
    (
        "replace on unknown group",
        "POST",
        UPDATE_PATH,
        {"groupId": 99999, "integrationGroupTriggers": []},
        {},
        404,
        "groupId",
        "no integration group 99999",
    ),
    (
        "replaceTriggers not a boolean",
        "POST",
        UPDATE_PATH.replace("true", "maybe"),
        json.loads(STEP["replace_triggers"].body),
        {},
        422,
        "replaceTriggers",
        "valid boolean",
    ),
    (
        "replace with bad property keeps triggers",
        "POST",
        UPDATE_PATH,
        {
            "groupId": 22253,
            "integrationGroupTriggers": [{"triggerId": 129, "triggerTypeId": 1, "actionIds": [2]}],
            "integrationGroupProperties": [prop("customer.fetch.delay", "400")],
        },
        {},
        422,
        "integrationGroupProperties[0].propertyValue",
        "from 0 to 365",
    ),
    (
        "lookup of unknown business",
        "GET",
        "/integration/businessintegrationgroup/123456",
        None,
        {},
        404,
        "businessNumber",
        "no integration group for business 123456",
    ),
    (
        "lookup of malformed business",
        "GET",
        "/integration/businessintegrationgroup/12x",
        None,
        {},
        422,
        "businessNumber",
        "must be a positive integer",
    ),
    (
        "triggers of unknown source",
        "GET",
        "/integration/trigger/integrationtriggers/sourceid/999",
        None,
        {},
        404,
        "sourceId",
        "unknown integration source 999",
    ),
    (
        "patch of unknown mapping",
        "PATCH",
        "/admin/mappings/123456",
        {"active": False},
        {},
        404,
        "businessNumber",
        "no mapping for business 123456",
    ),
    (
        "patch half valid",
        "PATCH",
        f"/admin/mappings/{SMB_BUSINESS_NUMBER}",
        {"active": False, "integrationProperties": [prop("customer.fetch.delay", "999")]},
        {},
        422,
        "integrationProperties[0].propertyValue",
        "from 0 to 365",
    ),
    (
        "frequency zero",
        "PATCH",
        f"/admin/mappings/{SMB_BUSINESS_NUMBER}",
        {"frequency": {"value": 0, "unit": "days"}},
        {},
        422,
        "frequency.value",
        "from 1 to 365",
    ),
    (
        "frequency unit",
        "PATCH",
        f"/admin/mappings/{SMB_BUSINESS_NUMBER}",
        {"frequency": {"value": 1, "unit": "weeks"}},
        {},
        422,
        "frequency.unit",
        "'days' or 'hours'",
    ),
    (
        "naive next run time",
        "PATCH",
        f"/admin/mappings/{SMB_BUSINESS_NUMBER}",
        {"nextRunTime": "2026-12-01T06:00:00"},
        {},
        422,
        "nextRunTime",
        "time zone offset",
    ),
    (
        "remove location override",
        "PATCH",
        f"/admin/mappings/{SMB_BUSINESS_NUMBER}",
        {"removePropertyKeys": ["cliniko.location.name"]},
        {},
        422,
        "removePropertyKeys[0]",
        "is required on a mapping",
    ),
    ("unknown route", "GET", "/integration/nothing", None, {}, 404, None, "Not Found"),
    ("wrong method", "DELETE", MAPPING_PATH, None, {}, 405, None, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "field", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_refused_and_writes_nothing(
    seeded_server: tuple[FastAPI, httpx.Client], method, path, body, headers, status, field, message
) -> None:
    app, seeded = seeded_server
    before = app.state.registry.snapshot()
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    reply = seeded.request(
        method, path, content=content, headers={"content-type": "application/json", **headers}
    )
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["field"] == field
    assert message in error["message"]
    assert app.state.registry.snapshot() == before


def test_odd_bodies_never_cause_a_server_error(seeded_server: tuple[FastAPI, httpx.Client]) -> None:
    app, seeded = seeded_server
    before = app.state.registry.snapshot()
    rng = random.Random(7)
    bodies = [
        b"null",
        b"true",
        b'"text"',
        b"1e999",
        b"{}",
        b"[]",
        b"\xff\xfe\x00",
        b'{"a": NaN}',
        b"[" * 3000 + b"]" * 3000,
        b'{"businessNumber": ' + b"9" * 4000 + b"}",
        b'{"businessNumber": {"$gt": 1}}',
        b'{"integrationProperties": 5}',
        b'{"integrationProperties": [null]}',
        b'{"integrationGroupId": "22253"}',
        b'{"groupId": 1e400}',
        '{"parentBusinessNumber": "١٢٣"}'.encode(),
        b'{"frequency": {"value": 99999999999999999999, "unit": "hours"}}',
        b'{"nextRunTime": "9999-12-31T23:59:59+14:00"}',
        b'{"nextRunTime": "9999-12-31T23:59:59-14:00"}',
        b'{"nextRunTime": "0001-01-01T00:00:00+14:00"}',
        b'{"nextRunTime": 5}',
    ] + [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) for _ in range(15)]
    routes = [
        ("PUT", GROUP_PATH),
        ("PUT", MAPPING_PATH),
        ("POST", UPDATE_PATH),
        ("PATCH", f"/admin/mappings/{SMB_BUSINESS_NUMBER}"),
    ]
    for method, path in routes:
        for body in bodies:
            reply = seeded.request(method, path, content=body, headers={"content-type": "application/json"})
            assert reply.status_code < 500, (method, path, body[:60], reply.status_code, reply.text)
            if reply.status_code >= 400:
                assert reply.json()["error"]["message"]
            else:  # only an empty PATCH is valid, and it changes nothing
                assert (method, body) == ("PATCH", b"{}")
    assert app.state.registry.snapshot() == before


# -- operator routes -------------------------------------------------------------------------------


def test_operator_routes_list_update_and_deactivate(seeded: httpx.Client) -> None:
    groups = seeded.get("/admin/groups").json()["groups"]
    assert [g["groupId"] for g in groups] == [22253]
    assert groups[0]["mappedBusinessNumbers"] == [SMB_BUSINESS_NUMBER, ENTERPRISE_LOCATION_NUMBER]
    assert seeded.get("/admin/groups/22253").json() == groups[0]

    listed = seeded.get("/admin/mappings", params={"groupId": 22253}).json()["mappings"]
    assert [m["businessNumber"] for m in listed] == [SMB_BUSINESS_NUMBER, ENTERPRISE_LOCATION_NUMBER]
    one = seeded.get("/admin/mappings", params={"businessNumber": ENTERPRISE_LOCATION_NUMBER}).json()[
        "mappings"
    ]
    assert [m["businessNumber"] for m in one] == [ENTERPRISE_LOCATION_NUMBER]

    patched = seeded.patch(
        f"/admin/mappings/{ENTERPRISE_LOCATION_NUMBER}",
        json={
            "integrationProperties": [
                prop("cliniko.api.key", OVERRIDE_KEY),
                prop("birdeye.api.key", BIRDEYE_KEY),
                prop("cliniko.location.name", "Brooklyn, Queens"),
                prop("customer.cooloff.days", "30"),
            ],
            "removePropertyKeys": ["customer.fetch.delay"],
            "test": True,
            "frequency": {"value": 6, "unit": "hours"},
            "nextRunTime": "2026-12-01T08:30:00+02:00",
        },
    )
    assert patched.status_code == 200, patched.text
    view = patched.json()
    assert (view["active"], view["test"], view["beta"]) == (True, True, False)
    assert view["frequency"] == {"value": 6, "unit": "hours"}
    assert view["nextRunTime"] == "2026-12-01T06:30:00Z"
    assert {p["propertyKey"]: (p["propertyValue"], p["level"]) for p in view["effectiveProperties"]} == {
        "cliniko.api.key": ("****-uk2", "mapping"),
        "birdeye.api.key": ("****2a9e", "mapping"),
        "customer.fetch.delay": ("0", "group"),
        "cliniko.location.name": ("Brooklyn, Queens", "mapping"),
        "customer.cooloff.days": ("30", "mapping"),
    }

    deactivated = seeded.post(f"/admin/mappings/{ENTERPRISE_LOCATION_NUMBER}/deactivate")
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    active = seeded.get("/admin/mappings", params={"active": "true"}).json()["mappings"]
    assert [m["businessNumber"] for m in active] == [SMB_BUSINESS_NUMBER]

    openapi = seeded.get("/openapi.json").json()
    assert "/integration/add/businessintegrationgroup" in openapi["paths"]
    assert "/admin/mappings/{businessNumber}" in openapi["paths"]
    assert seeded.get("/docs").status_code == 404  # Swagger UI would need a CDN


def test_excluded_appointment_types_are_set_on_the_group_and_overridden_on_a_mapping(
    seeded: httpx.Client,
) -> None:
    """`cliniko.appointment.types.excluded` is a group property a mapping may override, like the cool-off; a
    blank override excludes nothing at that location. Names are stored trimmed, as written otherwise (the
    run matches them against Cliniko trimmed and case-insensitively)."""
    group = seeded.post(
        "/integration/update/businessintegrationgroup?replaceTriggers=false",
        json={
            "groupId": 22253,
            "integrationGroupTriggers": [{"triggerId": 129, "triggerTypeId": 1, "actionIds": [2]}],
            "integrationGroupProperties": [
                prop("cliniko.appointment.types.excluded", " free consult ,Pilates Class")
            ],
        },
    )
    assert group.status_code == 200, group.text

    def effective(number: str) -> tuple[str, str] | None:
        view = seeded.get("/admin/mappings", params={"businessNumber": number}).json()["mappings"][0]
        found = [
            (p["propertyValue"], p["level"])
            for p in view["effectiveProperties"]
            if p["propertyKey"] == "cliniko.appointment.types.excluded"
        ]
        return found[0] if found else None

    assert effective(SMB_BUSINESS_NUMBER) == ("free consult, Pilates Class", "group")
    override = seeded.patch(
        f"/admin/mappings/{ENTERPRISE_LOCATION_NUMBER}",
        json={"integrationProperties": [prop("cliniko.appointment.types.excluded", "  ")]},
    )
    assert override.status_code == 200, override.text
    assert effective(ENTERPRISE_LOCATION_NUMBER) == ("", "mapping")
    assert effective(SMB_BUSINESS_NUMBER) == ("free consult, Pilates Class", "group")


# -- secrets ---------------------------------------------------------------------------------------


def test_api_keys_never_appear_in_clear(
    base_url: str, app: FastAPI, settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A reader held open keeps SQLite from folding the WAL back into the file when the writer closes.
    reader = None
    if settings.database_url is None:
        reader = sqlite3.connect(settings.registry_path)
        reader.execute("SELECT count(*) FROM integration_group").fetchone()
    texts = [reply.text for reply in replay_manual(base_url).values()]
    with httpx.Client(base_url=base_url) as http:
        for reply in (
            http.patch(
                f"/admin/mappings/{SMB_BUSINESS_NUMBER}",
                json={"integrationProperties": [prop("birdeye.api.key", BIRDEYE_KEY)]},
            ),
            http.put(
                GROUP_PATH,
                json=group_with(integrationGroupProperties=group_props(key=OVERRIDE_KEY[:-1] + "9")),
            ),
            http.get("/admin/groups"),
            http.get("/admin/mappings"),
            http.get(f"/integration/businessintegrationgroup/{SMB_BUSINESS_NUMBER}"),
        ):
            texts.append(reply.text)
    assert "****-au3" in texts[0] and "****2a9e" in texts[-2]
    assert "unknown shard suffix" in texts[-4]  # the refused key is not echoed either
    assert any("PATCH /admin/mappings" in record.getMessage() for record in caplog.records)

    secrets = [MANUAL_KEY, BIRDEYE_KEY, OVERRIDE_KEY, MANUAL_KEY[:-4], BIRDEYE_KEY[:-4], OVERRIDE_KEY[:20]]
    files = [
        settings.registry_path,
        Path(f"{settings.registry_path}-wal"),
        Path(f"{settings.registry_path}-shm"),
    ]
    if settings.database_url is None:
        assert Path(f"{settings.registry_path}-wal").stat().st_size > 0
        stored = b"".join(path.read_bytes() for path in files if path.exists())
    else:  # every row of every table, as the server keeps it
        assert not settings.registry_path.exists()
        stored = repr(app.state.registry.snapshot()).encode()
        assert b"gAAAAA" in stored  # the Fernet tokens of the keys are there
    if reader is not None:
        reader.close()
    for secret in secrets:
        assert all(secret not in text for text in texts)
        assert secret not in caplog.text
        assert secret.encode() not in stored

    # The pipeline's read API is the one place plaintext exists, and only behind reveal().
    from pipeline.registry import Registry

    config = Registry.open(settings).mapping(SMB_BUSINESS_NUMBER)
    assert config.cliniko_api_key.reveal() == MANUAL_KEY
    assert config.birdeye_api_key.reveal() == BIRDEYE_KEY
    assert MANUAL_KEY not in repr(config) and BIRDEYE_KEY not in str(config)


# -- auth ------------------------------------------------------------------------------------------


def test_admin_token_is_required_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret-token")
    monkeypatch.delenv("REGISTRY_SECRET_KEY", raising=False)
    app = create_app(load_settings())
    with serving(app) as url:
        before = app.state.registry.snapshot()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            for method, path in (("GET", "/admin/health"), ("GET", "/openapi.json"), ("PUT", MAPPING_PATH)):
                reply = httpx.request(method, url + path, headers=headers, content=b"{}")
                assert reply.status_code == 401, (method, path, headers)
                assert reply.json()["error"]["field"] == "Authorization"
                assert reply.headers["www-authenticate"] == "Bearer"
        with httpx.Client(base_url=url) as anonymous:
            assert send(anonymous, STEP["smb_group"]).status_code == 401
        assert app.state.registry.snapshot() == before

        replies = replay_manual(url, token="s3cret-token")
        assert all(reply.status_code < 300 for reply in replies.values())
    assert (tmp_path / ".registry_secret_key").stat().st_mode & 0o777 == 0o600


# -- host and origin -------------------------------------------------------------------------------------


def test_without_a_token_only_loopback_host_names_are_answered(app: FastAPI, base_url: str) -> None:
    """A page whose DNS name re-binds to 127.0.0.1 sends its own name as Host: refused, nothing changes."""
    port = base_url.rsplit(":", 1)[1]
    before = app.state.registry.snapshot()
    step = STEP["smb_group"]
    for method, path, content, headers in (
        ("GET", "/admin/groups", None, {}),
        (step.method, step.path, step.body.encode(), step.headers),
    ):
        headers = {**headers, "Host": f"evil.example:{port}"}
        reply = httpx.request(method, base_url + path, headers=headers, content=content)
        assert reply.status_code == 403, (method, reply.text)
        error = reply.json()["error"]
        assert (
            error["field"] == "Host" and "127.0.0.1" in error["message"] and "ADMIN_TOKEN" in error["message"]
        )
    assert app.state.registry.snapshot() == before
    for name in ("127.0.0.1", "localhost"):
        assert httpx.get(base_url + "/admin/groups", headers={"Host": f"{name}:{port}"}).status_code == 200


def test_a_change_from_another_origin_is_refused_and_the_same_origin_goes_through(
    app: FastAPI, base_url: str
) -> None:
    step = STEP["smb_group"]
    before = app.state.registry.snapshot()
    body = step.body.encode()
    foreign = httpx.request(
        step.method,
        base_url + step.path,
        content=body,
        headers={**step.headers, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and foreign.json()["error"]["field"] == "Origin"
    assert app.state.registry.snapshot() == before
    same = httpx.request(
        step.method, base_url + step.path, content=body, headers={**step.headers, "Origin": base_url}
    )
    assert same.status_code < 300, same.text  # the dashboard served here sends its own origin
    assert (
        httpx.get(base_url + "/admin/groups", headers={"Origin": "https://evil.example"}).status_code == 200
    )


def test_with_a_token_the_allowed_hosts_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret-token")
    monkeypatch.setenv("ADMIN_ALLOWED_HOSTS", "reviews.example.internal, 127.0.0.1")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app(load_settings())
    auth = {"Authorization": "Bearer s3cret-token"}
    with serving(app) as url:
        port = url.rsplit(":", 1)[1]
        allowed = httpx.get(
            url + "/admin/groups", headers={**auth, "Host": f"reviews.example.internal:{port}"}
        )
        assert allowed.status_code == 200
        refused = httpx.get(url + "/admin/groups", headers={**auth, "Host": f"other.example:{port}"})
        assert refused.status_code == 403 and "ADMIN_ALLOWED_HOSTS" in refused.json()["error"]["message"]
        assert "s3cret" not in refused.text


def test_named_tokens_read_or_write_and_admin_token_stays_a_write_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ADMIN_TOKEN", "the-admin-token")
    monkeypatch.setenv("ADMIN_TOKENS", "ana:read:analyst-token-1, sam:write:support-token-2")
    app = create_app(load_settings())
    step = STEP["smb_group"]
    with serving(app) as url:
        before = app.state.registry.snapshot()
        reader = {"Authorization": "Bearer analyst-token-1"}
        assert httpx.get(url + "/admin/groups", headers=reader).status_code == 200
        refused = httpx.request(
            step.method, url + step.path, content=step.body.encode(), headers={**step.headers, **reader}
        )
        assert refused.status_code == 403 and "'ana' may only read" in refused.json()["error"]["message"]
        assert "analyst-token-1" not in refused.text
        assert app.state.registry.snapshot() == before
        unknown = httpx.get(url + "/admin/groups", headers={"Authorization": "Bearer nobody-s-token"})
        assert unknown.status_code == 401
        assert replay_manual(url, token="support-token-2")["smb_group"].status_code < 300  # a write token
        assert httpx.get(url + "/admin/groups", headers={"Authorization": "Bearer the-admin-token"}).json()


def test_a_malformed_admin_tokens_setting_is_a_clear_error_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADMIN_TOKENS", "ana:admin:analyst-token-1")
    with pytest.raises(ValueError, match="ADMIN_TOKENS entry 1 is not name:role:token") as error:
        load_settings()
    assert "analyst-token-1" not in str(error.value)


def test_refusals_the_dashboard_words_carry_a_code_and_details_beside_the_unchanged_message(
    seeded_server: tuple[FastAPI, httpx.Client],
) -> None:
    """The dashboard says these in its own words from `code` and `details`; curl users keep `message` (which
    names the route to use) and the `field`, `message` keys every error has."""
    app, seeded = seeded_server
    before = app.state.registry.snapshot()
    parent = GROUP["parentBusinessNumber"]
    group = seeded.put(
        GROUP_PATH,
        json={**GROUP, "integrationGroupProperties": group_props(prop("customer.fetch.delay", "3"))},
    )
    assert group.status_code == 409
    assert group.json() == {
        "error": {
            "field": "parentBusinessNumber",
            "message": f"business {parent} already has integration group 22253 for source 118; change it "
            "with POST /integration/update/businessintegrationgroup",
            "code": "group_exists",
            "details": {"parentBusinessNumber": str(parent), "groupId": 22253},
        }
    }
    mapping = seeded.put(MAPPING_PATH, json={**MAPPING, "beta": True})
    assert mapping.status_code == 409
    number = str(MAPPING["businessNumber"])
    assert mapping.json() == {
        "error": {
            "field": "businessNumber",
            "message": f"business {number} is already mapped in integration group 22253; change it with "
            f"PATCH /admin/mappings/{number}",
            "code": "mapping_exists",
            "details": {"businessNumber": number, "integrationGroupId": 22253},
        }
    }
    # Any other refusal keeps exactly the two keys it always had.
    other = seeded.put(MAPPING_PATH, json=mapping_with([NY, NY]))
    assert set(other.json()["error"]) == {"field", "message"}
    assert app.state.registry.snapshot() == before
