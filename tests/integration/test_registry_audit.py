"""The registry's audit trail over real HTTP and real processes, on both stores (its SQLite file and a real
PostgreSQL server): one row per change with secrets masked, none for a refused or empty change, who made
it, `GET /admin/audit` with its filters and pages, and a complete, ordered trail when two processes write at
once."""

from __future__ import annotations

import json
import multiprocessing
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import ANY

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from test_registry_api import serving

from pipeline.registry.api import create_app
from pipeline.registry.audit import Actor
from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
from pipeline.registry.manual import (
    ENTERPRISE_LOCATION_NUMBER,
    MANUAL_GROUP_ID,
    SMB_BUSINESS_NUMBER,
    STEP,
    replay_manual,
)
from pipeline.registry.secrets import SecretBox
from pipeline.registry.store import RegistryStore
from pipeline.settings import load_settings

MANUAL_KEY = json.loads(STEP["smb_group"].body)["integrationGroupProperties"][0]["propertyValue"]
# Another Cliniko key on the same shard: its mask is the manual key's (`****-au3`), and it is still a change.
SAME_SHARD_KEY = "MS0xMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo-au3"
BIRDEYE_KEY = "be-live-7f3c9a2e41d84b6f9c0a5e7d3b1f2a9e"
OVERRIDE_KEY = "MS0xMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo-uk2"
KEYS = (MANUAL_KEY, SAME_SHARD_KEY, BIRDEYE_KEY, OVERRIDE_KEY)
GROUP_PATH = "/integration/add/businessintegrationgroup"
UPDATE_PATH = "/integration/update/businessintegrationgroup"
MAPPING_PATH = "/integration/add/businessintegrationmapping"
SMB_PATH = f"/admin/mappings/{SMB_BUSINESS_NUMBER}"
T129 = {"triggerId": 129, "triggerTypeId": 1, "actionIds": [1]}
T130 = {"triggerId": 130, "triggerTypeId": 1, "actionIds": [1]}


def prop(key: str, value: str) -> dict:
    return {"propertyKey": key, "propertyValue": value, "isSecure": False}


def _environment(env: pytest.MonkeyPatch, tmp_path: Path, database_url: str | None, **variables: str) -> None:
    if database_url:
        env.setenv("DATABASE_URL", database_url)
    else:
        env.delenv("DATABASE_URL", raising=False)
    env.setenv("DATA_DIR", str(tmp_path))
    env.setenv("REGISTRY_SECRET_KEY", Fernet.generate_key().decode())
    for name in ("ADMIN_TOKEN", "ADMIN_TOKENS", "ADMIN_ALLOWED_HOSTS"):
        env.delenv(name, raising=False)
    for name, value in variables.items():
        env.setenv(name, value)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url_or_none(request) -> str | None:
    return request.getfixturevalue("database_url") if request.param == "postgres" else None


@pytest.fixture
def app(database_url_or_none, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    _environment(monkeypatch, tmp_path, database_url_or_none)
    return create_app(load_settings())


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http


def trail(app: FastAPI) -> list[dict]:
    """Every stored audit row, oldest first, as the table holds it."""
    return app.state.registry.audit_rows()[::-1]


def fields(row: dict) -> dict[str, tuple]:
    return {change["field"]: (change["before"], change["after"]) for change in json.loads(row["changes"])}


# -- what is recorded ----------------------------------------------------------------------------------------


def test_each_kind_of_change_writes_exactly_one_row_with_secrets_masked(
    app: FastAPI, client: httpx.Client
) -> None:
    # a second trigger of Cliniko, to add and drop
    with app.state.registry.database.transaction(write=True) as con:
        con.execute(
            "INSERT INTO integration_trigger VALUES (130, 118, 'clinikoOtherTriggerServiceImpl', 'Other', "
            "'Another trigger', 1, 1, 'JOB', 1, 'Other', 1)"
        )
    group = json.loads(STEP["smb_group"].body)
    mapping = json.loads(STEP["smb_mapping"].body)
    triggers = {"groupId": MANUAL_GROUP_ID}
    # (what the change is, method, path, body, entity kind, action, {field: (before, after)} it must record)
    changes = [
        ("group created", "PUT", GROUP_PATH, group, "group", "create",
         {"parentBusinessNumber": (None, SMB_BUSINESS_NUMBER), "integrationSourceId": (None, 118),
          "integrationGroupTriggers": (None, [T129]),
          "cliniko.api.key": (None, "****-au3"), "customer.fetch.delay": (None, "0")}),
        ("group property added", "POST", UPDATE_PATH,
         {**triggers, "integrationGroupProperties": [prop("birdeye.api.key", BIRDEYE_KEY)]},
         "group", "update", {"birdeye.api.key": (None, "****2a9e")}),
        ("group property changed", "POST", UPDATE_PATH,
         {**triggers, "integrationGroupProperties": [prop("customer.fetch.delay", "2")]},
         "group", "update", {"customer.fetch.delay": ("0", "2")}),
        ("group key replaced by one with the same last 4 characters", "POST", UPDATE_PATH,
         {**triggers, "integrationGroupProperties": [prop("cliniko.api.key", SAME_SHARD_KEY)]},
         "group", "update", {"cliniko.api.key": ("****-au3", "****-au3")}),
        ("group property removed", "POST", UPDATE_PATH,
         {**triggers, "removePropertyKeys": ["birdeye.api.key"]},
         "group", "update", {"birdeye.api.key": ("****2a9e", None)}),
        ("trigger added", "POST", UPDATE_PATH + "?replaceTriggers=false",
         {**triggers, "integrationGroupTriggers": [{"triggerId": 130, "triggerTypeId": 1}]},
         "group", "update", {"integrationGroupTriggers": ([T129], [T129, T130])}),
        ("trigger changed and the other dropped", "POST", UPDATE_PATH + "?replaceTriggers=true",
         {**triggers, "integrationGroupTriggers": [{**T129, "actionIds": [1, 2]}]},
         "group", "update", {"integrationGroupTriggers": ([T129, T130], [{**T129, "actionIds": [1, 2]}])}),
        ("mapping created", "PUT", MAPPING_PATH, mapping, "mapping", "create",
         {"integrationGroupId": (None, MANUAL_GROUP_ID), "active": (None, True), "test": (None, False),
          "beta": (None, False), "frequency": (None, {"value": 1, "unit": "days"}),
          "nextRunTime": (None, ANY),
          "customer.fetch.delay": (None, "0"), "cliniko.location.name": (None, "New York")}),
        ("mapping flags, schedule and an override key", "PATCH", SMB_PATH,
         {"integrationProperties": [prop("cliniko.api.key", OVERRIDE_KEY)], "test": True,
          "frequency": {"value": 6, "unit": "hours"}, "nextRunTime": "2031-01-02T03:04:00Z"},
         "mapping", "update",
         {"test": (False, True), "frequency": ({"value": 1, "unit": "days"}, {"value": 6, "unit": "hours"}),
          "nextRunTime": (ANY, "2031-01-02T03:04:00Z"), "cliniko.api.key": (None, "****-uk2")}),
        ("mapping property changed", "PATCH", SMB_PATH,
         {"integrationProperties": [prop("cliniko.location.name", "New York, Brooklyn")]},
         "mapping", "update",
         {"cliniko.location.name": ("New York", "New York, Brooklyn")}),
        ("mapping properties removed", "PATCH", SMB_PATH,
         {"removePropertyKeys": ["cliniko.api.key", "customer.fetch.delay"]}, "mapping", "update",
         {"cliniko.api.key": ("****-uk2", None), "customer.fetch.delay": ("0", None)}),
        ("mapping deactivated", "POST", SMB_PATH + "/deactivate", None, "mapping", "update",
         {"active": (True, False)}),
    ]  # fmt: skip
    for name, method, path, body, kind, action, expected in changes:
        count = len(trail(app))
        reply = client.request(method, path, json=body)
        assert reply.status_code < 300, (name, reply.text)
        rows = trail(app)
        assert len(rows) == count + 1, name
        row = rows[-1]
        assert (row["entity_kind"], row["action"], row["changed_by"], row["method"]) == (
            kind,
            action,
            "local",
            method,
        ), name
        assert fields(row) == expected, name
        assert row["group_id"] == MANUAL_GROUP_ID and row["business_number"] == SMB_BUSINESS_NUMBER
        assert row["entity_id"] == (str(MANUAL_GROUP_ID) if kind == "group" else SMB_BUSINESS_NUMBER)

    routes = [(row["method"], row["route"]) for row in trail(app)]
    assert routes[0] == ("PUT", GROUP_PATH)
    assert routes[-3:] == [
        ("PATCH", "/admin/mappings/{businessNumber}"),
        ("PATCH", "/admin/mappings/{businessNumber}"),
        ("POST", "/admin/mappings/{businessNumber}/deactivate"),
    ]
    same_mask = json.loads(trail(app)[3]["changes"])
    assert same_mask == [
        {"field": "cliniko.api.key", "before": "****-au3", "after": "****-au3", "secret": True}
    ]

    # The full keys are nowhere in the trail: not in the stored rows, not in what the API shows.
    stored = repr(app.state.registry.audit_rows())
    shown = client.get("/admin/audit", params={"limit": 500}).text
    for key in KEYS:
        for text in (stored, shown):
            assert key not in text and key[:-4] not in text


def test_changes_that_change_nothing_and_the_schedulers_advances_write_no_row(
    app: FastAPI, client: httpx.Client
) -> None:
    replay_manual(str(client.base_url))
    first = trail(app)
    assert [(r["entity_kind"], r["action"], r["entity_id"]) for r in first] == [
        ("group", "create", str(MANUAL_GROUP_ID)),  # the enterprise command's identical body finds it
        ("mapping", "create", SMB_BUSINESS_NUMBER),  # the trigger steps set what is already there
        ("mapping", "create", ENTERPRISE_LOCATION_NUMBER),
    ]
    replay_manual(str(client.base_url))
    assert client.patch(SMB_PATH, json={}).status_code == 200
    assert client.patch(SMB_PATH, json={"active": True, "test": False}).status_code == 200
    same_key = {
        "groupId": MANUAL_GROUP_ID,
        "integrationGroupProperties": [prop("cliniko.api.key", MANUAL_KEY)],
    }
    assert client.post(UPDATE_PATH, json=same_key).status_code == 200  # the same key, encrypted anew
    store: RegistryStore = app.state.registry
    mapping = store.mapping(SMB_BUSINESS_NUMBER)
    due = datetime.fromisoformat(mapping["nextRunTime"])
    assert store.advance_next_run_time(SMB_BUSINESS_NUMBER, due, due + timedelta(days=1))
    assert trail(app) == first


def test_changes_made_in_process_are_recorded_as_cli(app: FastAPI) -> None:
    store: RegistryStore = app.state.registry
    group, _ = store.create_group(
        "4242",
        118,
        [PropertyInput("cliniko.api.key", OVERRIDE_KEY, False, "p")],
        [TriggerInput(129, 1, None, "t")],
    )
    store.create_mapping(
        MappingInput("4243", group["groupId"], [PropertyInput("cliniko.location.name", "Here", False, "p")])
    )
    store.update_mapping("4243", MappingPatch(beta=True))
    assert [(r["changed_by"], r["method"], r["route"], r["entity_id"]) for r in trail(app)] == [
        ("cli", None, None, str(group["groupId"])),
        ("cli", None, None, "4243"),
        ("cli", None, None, "4243"),
    ]


# -- what is not recorded ------------------------------------------------------------------------------------

REFUSED = [
    ("unknown property key", "PATCH", SMB_PATH, {"integrationProperties": [prop("no.such.key", "1")]}, 422),
    ("bad value", "PATCH", SMB_PATH, {"integrationProperties": [prop("customer.fetch.delay", "400")]}, 422),
    # The first part is valid and written, the second refused: the transaction, audit row included, is undone.
    ("valid part then refused part", "PATCH", SMB_PATH,
     {"integrationProperties": [prop("birdeye.api.key", BIRDEYE_KEY)],
      "removePropertyKeys": ["cliniko.location.name"]}, 422),
    ("unknown mapping", "PATCH", "/admin/mappings/999999", {"test": True}, 404),
    ("unknown group", "POST", UPDATE_PATH, {"groupId": 1, "integrationGroupProperties": []}, 404),
    ("conflicting group", "PUT", GROUP_PATH,
     {**json.loads(STEP["smb_group"].body), "integrationGroupTriggers": [{**T129, "actionIds": [5]}]}, 409),
    ("not JSON", "PATCH", SMB_PATH, b"{nope", 400),
    ("unknown field", "PATCH", SMB_PATH, {"actve": False}, 422),
]  # fmt: skip


def test_a_refused_change_writes_no_row(app: FastAPI, client: httpx.Client) -> None:
    replay_manual(str(client.base_url))
    before = trail(app)
    for name, method, path, body, status in REFUSED:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        reply = client.request(method, path, content=content, headers={"content-type": "application/json"})
        assert reply.status_code == status, (name, reply.text)
        assert reply.json()["error"]["message"], name
        assert trail(app) == before, name


def test_read_tokens_foreign_hosts_and_origins_change_nothing_and_write_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url_or_none
) -> None:
    _environment(
        monkeypatch,
        tmp_path,
        database_url_or_none,
        ADMIN_TOKENS="ana:read:analyst-token-1,sam:write:support-token-2",
        ADMIN_ALLOWED_HOSTS="127.0.0.1",
    )
    app = create_app(load_settings())
    reader = {"Authorization": "Bearer analyst-token-1"}
    writer = {"Authorization": "Bearer support-token-2"}
    step = STEP["smb_group"]
    with serving(app) as url:
        port = url.rsplit(":", 1)[1]
        attempts = [
            ({**step.headers, **reader}, 403, "Authorization"),
            ({**step.headers, **writer, "Host": f"evil.example:{port}"}, 403, "Host"),
            ({**step.headers, **writer, "Origin": "https://evil.example"}, 403, "Origin"),
            (step.headers, 401, "Authorization"),
        ]
        for headers, status, field in attempts:
            reply = httpx.request(step.method, url + step.path, content=step.body.encode(), headers=headers)
            assert (reply.status_code, reply.json()["error"]["field"]) == (status, field)
        assert trail(app) == []
        assert httpx.get(url + "/admin/audit", headers=reader).json() == {"changes": [], "nextCursor": None}
        assert httpx.get(url + "/admin/audit").status_code == 401

        replies = replay_manual(url, token="support-token-2")
        assert all(reply.status_code < 300 for reply in replies.values())
        listed = httpx.get(url + "/admin/audit", headers=reader).json()["changes"]
        assert [(c["changedBy"], c["method"], c["entityKind"]) for c in listed] == [
            ("sam", "PUT", "mapping"),
            ("sam", "PUT", "mapping"),
            ("sam", "PUT", "group"),
        ]


def test_without_tokens_a_foreign_host_or_origin_writes_no_row(app: FastAPI, client: httpx.Client) -> None:
    url = str(client.base_url)
    port = url.rsplit(":", 1)[1]
    step = STEP["smb_group"]
    for extra, field in (
        ({"Host": f"evil.example:{port}"}, "Host"),
        ({"Origin": "https://evil.example"}, "Origin"),
    ):
        reply = httpx.request(
            step.method, url + step.path, content=step.body.encode(), headers={**step.headers, **extra}
        )
        assert (reply.status_code, reply.json()["error"]["field"]) == (403, field)
    assert trail(app) == []
    reply = httpx.request(
        step.method, url + step.path, content=step.body.encode(), headers={**step.headers, "Origin": url}
    )
    assert reply.status_code == 201
    assert [r["changed_by"] for r in trail(app)] == ["local"]


# -- GET /admin/audit ----------------------------------------------------------------------------------------


def test_audit_route_filters_and_pages_newest_first(app: FastAPI, client: httpx.Client) -> None:
    replay_manual(str(client.base_url))  # group 22253: a group row and two mapping rows
    other = {**json.loads(STEP["smb_group"].body), "parentBusinessNumber": 500000000000001}
    other_group = client.put(GROUP_PATH, json=other).json()["groupId"]
    other_mapping = {**json.loads(STEP["smb_mapping"].body), "businessNumber": 500000000000011,
                     "integrationGroupId": other_group}  # fmt: skip
    assert client.put(MAPPING_PATH, json=other_mapping).status_code == 201
    for value in ("1", "2", "3"):
        patch = {"integrationProperties": [prop("customer.cooloff.days", value)]}
        assert client.patch(SMB_PATH, json=patch).status_code == 200
    everything = client.get("/admin/audit").json()
    assert everything["nextCursor"] is None
    listed = everything["changes"]
    assert len(listed) == 8
    ids = [change["id"] for change in listed]
    assert ids == sorted(ids, reverse=True)  # newest first
    times = [change["changedAt"] for change in listed]
    assert times == sorted(times, reverse=True)

    def query(**params: object) -> list[dict]:
        reply = client.get("/admin/audit", params=params)
        assert reply.status_code == 200, reply.text
        return reply.json()["changes"]

    smb = query(businessNumber=SMB_BUSINESS_NUMBER)  # the mapping's rows and its group's (the same parent)
    assert [(c["entityKind"], c["entityId"]) for c in smb] == [("mapping", SMB_BUSINESS_NUMBER)] * 4 + [
        ("group", str(MANUAL_GROUP_ID))
    ]
    assert [c["changes"][0]["after"] for c in smb[:3]] == ["3", "2", "1"]
    assert [c["entityId"] for c in query(businessNumber=ENTERPRISE_LOCATION_NUMBER)] == [
        ENTERPRISE_LOCATION_NUMBER
    ]
    assert {c["groupId"] for c in query(groupId=other_group)} == {other_group}
    assert len(query(groupId=other_group)) == 2
    assert len(query(groupId=MANUAL_GROUP_ID)) == 6
    assert query(groupId=MANUAL_GROUP_ID, businessNumber=ENTERPRISE_LOCATION_NUMBER) == query(
        businessNumber=ENTERPRISE_LOCATION_NUMBER
    )

    # `since` is inclusive, compared with the stored times (microseconds; the route takes whole seconds).
    assert query(since=(datetime.now(UTC) + timedelta(minutes=1)).isoformat()) == []
    assert len(query(since="2000-01-01T00:00:00Z")) == 8
    assert len(query(since=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())) == 8

    # Pages of 3 by cursor: every change once, in the same order, while a new change lands meanwhile.
    pages, cursor = [], None
    while True:
        reply = client.get(
            "/admin/audit", params={"limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        pages.append(reply["changes"])
        if len(pages) == 1:  # a change made while paging shows on the first page of the next walk, not here
            assert client.patch(SMB_PATH, json={"beta": True}).status_code == 200
        cursor = reply["nextCursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [3, 3, 2]
    assert [c["id"] for page in pages for c in page] == ids
    assert query(limit=1)[0]["changes"] == [
        {"field": "beta", "before": False, "after": True, "secret": False}
    ]

    for params, field, message in (
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 501}, "limit", "less than or equal to 500"),
        ({"cursor": "x"}, "cursor", "integer"),
        ({"since": "yesterday"}, "since", "ISO 8601"),
        ({"since": "2026-11-26T06:00:00"}, "since", "time zone offset"),
        ({"businessNumber": "12ab"}, "businessNumber", "positive integer"),
        ({"groupId": "x"}, "groupId", "integer"),
    ):
        reply = client.get("/admin/audit", params=params)
        assert reply.status_code == 422, params
        assert reply.json()["error"]["field"] == field and message in reply.json()["error"]["message"], (
            reply.text
        )


# -- two processes at once ----------------------------------------------------------------------------------

PER_PROCESS = 20


def _writer(path: str, database_url: str | None, key: str, worker: int, start, results) -> None:
    try:
        store = RegistryStore(Path(path), SecretBox(Fernet(key)), database_url)
        actor = Actor(f"worker-{worker}", "PATCH", "/admin/mappings/{businessNumber}")
        start.wait()
        for index in range(PER_PROCESS):
            number = f"{worker}0000{index:04d}"
            group, _ = store.create_group(
                number,
                118,
                [PropertyInput("cliniko.api.key", f"KEY{worker}x{index}xxxxxxxxxx-au2", False, "p")],
                [TriggerInput(129, 1, None, "t")],
                actor,
            )
            store.create_mapping(
                MappingInput(
                    number, group["groupId"], [PropertyInput("cliniko.location.name", "A", False, "p")]
                ),
                actor,
            )
            store.update_mapping(number, MappingPatch(test=True), actor)
        results.put((worker, None))
    except Exception:  # the parent asserts on the traceback instead of timing out on an empty queue
        results.put((worker, traceback.format_exc()))


def test_two_processes_changing_at_once_keep_a_complete_ordered_trail(
    database_url_or_none, tmp_path: Path
) -> None:
    key = Fernet.generate_key().decode()
    path = tmp_path / "registry.sqlite3"
    RegistryStore(path, SecretBox(Fernet(key)), database_url_or_none)  # the schema, before the race
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_writer, args=(str(path), database_url_or_none, key, worker, start, results))
        for worker in (1, 2)
    ]
    for process in workers:
        process.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for process in workers:
        process.join(30)
    assert outcomes == [(1, None), (2, None)], outcomes

    rows = RegistryStore(path, SecretBox(Fernet(key)), database_url_or_none).audit_rows()[::-1]
    assert len(rows) == 2 * 3 * PER_PROCESS  # complete: a row for every change of both
    ids = [row["change_id"] for row in rows]
    assert ids == sorted(set(ids))  # one id each, in the order they committed
    times = [row["changed_at"] for row in rows]
    assert times == sorted(times)  # taken under the write lock: the same order
    for worker in (1, 2):
        own = [
            (row["entity_kind"], row["action"], row["entity_id"])
            for row in rows
            if row["changed_by"] == f"worker-{worker}"
        ]
        expected = []
        for index in range(PER_PROCESS):
            number = f"{worker}0000{index:04d}"
            expected += [
                ("group", "create", None),
                ("mapping", "create", number),
                ("mapping", "update", number),
            ]
        assert [
            (kind, action, None if kind == "group" else entity) for kind, action, entity in own
        ] == expected
    workers_seen = [row["changed_by"] for row in rows]
    assert workers_seen != sorted(workers_seen), "the two processes never interleaved: not a concurrent test"
