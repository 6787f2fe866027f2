"""The Cliniko emulator over real HTTP on loopback: auth, envelope, filters, sort, 429, faults, request log.

Expected results are computed from the generator's records in plain Python, independently of the emulator's
numpy query engine.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig, FaultConfig
from pipeline.sandbox.generator import generate_account
from pipeline.sandbox.server import running_cliniko

UA = {"User-Agent": "cliniko-reviews tests (tests@example.com)"}
DAY_FROM, DAY_TO = "2026-01-20T00:00:00Z", "2026-01-27T00:00:00Z"


@pytest.fixture(scope="module")
def account():
    return generate_account(21, appointments=3_000, start=date(2026, 1, 1), end=date(2026, 2, 15))


@pytest.fixture(scope="module")
def emulator(account):
    return ClinikoEmulator(ClinikoEmulatorConfig(accounts=[account], rate_limit=100_000))


@pytest.fixture(scope="module")
def base_url(emulator):
    with running_cliniko(emulator) as url:
        yield url


@pytest.fixture()
def client(base_url, account):
    with httpx.Client(base_url=base_url, auth=(account.api_key, ""), headers=UA, timeout=10) as c:
        yield c


def _walk(
    client: httpx.Client, path: str, params: list[tuple[str, str | int]]
) -> tuple[list[dict], list[dict]]:
    """Follow links.next; returns (records, page bodies)."""
    pages = [client.get(path, params=params).json()]
    while "next" in pages[-1]["links"]:
        response = client.get(pages[-1]["links"]["next"])
        assert response.status_code == 200
        pages.append(response.json())
    key = path.strip("/").split("/")[0]
    return [r for p in pages for r in p[key]], pages


# --- auth and headers ---


def test_key_with_and_without_shard_suffix_authenticates(base_url, account):
    for key in (account.api_key, account.api_key.rsplit("-", 1)[0]):
        response = httpx.get(f"{base_url}/businesses", auth=(key, ""), headers=UA)
        assert response.status_code == 200, key[-4:]


@pytest.mark.parametrize("username", ["wrong-shard", "unknown", "missing"])
def test_bad_credentials_get_rails_basic_401(base_url, account, username):
    auth = {
        "wrong-shard": (account.api_key.rsplit("-", 1)[0] + "-au2", ""),
        "unknown": ("NotARealKey0000000000000000000000000000-au4", ""),
        "missing": None,
    }[username]
    response = httpx.get(f"{base_url}/patients", auth=auth, headers=UA)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="Application"'
    assert response.text == "HTTP Basic: Access denied."


@pytest.mark.parametrize("agent", [None, "python-httpx/0.28.1", "My App", "My App (not-an-email)"])
def test_user_agent_without_name_and_email_is_refused(base_url, account, agent):
    headers = {"User-Agent": agent} if agent else {}
    with httpx.Client(auth=(account.api_key, ""), headers=headers) as c:
        if agent is None:
            del c.headers["User-Agent"]
        response = c.get(f"{base_url}/businesses")
    assert response.status_code == 403
    assert response.text == "Requires a user agent"


def test_user_agent_status_and_forbidden_resources_are_configurable(account):
    config = ClinikoEmulatorConfig(
        accounts=[account], user_agent_status=400, forbidden={account.api_key: frozenset({"patients"})}
    )
    with running_cliniko(config) as url:
        assert httpx.get(f"{url}/businesses", auth=(account.api_key, "")).status_code == 400
        assert httpx.get(f"{url}/businesses", auth=(account.api_key, ""), headers=UA).status_code == 200
        forbidden = httpx.get(f"{url}/patients", auth=(account.api_key, ""), headers=UA)
        assert forbidden.status_code == 403 and "message" in forbidden.json()


def test_unknown_path_and_id_are_404(client, account):
    assert client.get("/invoices").status_code == 404
    assert client.get("/patients/123").json() == {"message": "Not found"}
    deleted = account.deleted_patients[0]["id"]
    assert client.get(f"/patients/{deleted}").status_code == 404


# --- envelope, pagination ---


def test_envelope_links_keep_every_param_and_change_only_page(client, account):
    business = account.businesses[0]["id"]
    params = [
        ("q[]", f"business_id:={business}"),
        ("q[]", "cancelled_at:*"),
        ("sort", "starts_at"),
        ("per_page", 9),
    ]
    records, pages = _walk(client, "/individual_appointments", params)
    total = pages[0]["total_entries"]
    assert len(pages) == -(-total // 9) > 3
    assert len(records) == total == len({r["id"] for r in records})
    assert "previous" not in pages[0]["links"] and "next" not in pages[-1]["links"]
    middle = pages[1]["links"]
    for name, link in (("self", 2), ("previous", 1), ("next", 3)):
        split = urlsplit(middle[name])
        assert split.netloc == client.base_url.netloc.decode()
        query = parse_qsl(split.query)
        assert [kv for kv in query if kv[0] != "page"] == [(k, str(v)) for k, v in params]
        assert ("page", str(link)) in query
    assert all(p["total_entries"] == total for p in pages)


def test_per_page_default_max_and_past_the_end(client, account):
    body = client.get("/patients").json()
    assert len(body["patients"]) == 50
    assert client.get("/patients", params={"per_page": 100}).json()["patients"].__len__() == 100
    assert client.get("/patients", params={"per_page": 101}).status_code == 400
    assert client.get("/patients", params={"per_page": 0}).status_code == 400
    past = client.get("/patients", params={"page": 999}).json()
    assert past["patients"] == [] and past["total_entries"] == body["total_entries"]
    assert "next" not in past["links"] and "previous" in past["links"]


def test_per_page_over_max_can_be_clamped(account):
    with running_cliniko(ClinikoEmulatorConfig(accounts=[account], per_page_over_max="clamp")) as url:
        body = httpx.get(f"{url}/patients", params={"per_page": 500}, auth=(account.api_key, ""), headers=UA)
        assert len(body.json()["patients"]) == 100


def test_records_have_string_ids_utc_timestamps_and_link_objects(client, account):
    record = client.get("/individual_appointments", params={"per_page": 1}).json()["individual_appointments"][
        0
    ]
    assert isinstance(record["id"], str) and len(record["id"]) == 19
    assert record["starts_at"].endswith("Z") and record["archived_at"] is None
    patient_url = record["patient"]["links"]["self"]
    assert patient_url.startswith(str(client.base_url)) and patient_url.endswith(
        record["patient"]["links"]["self"][-19:]
    )
    assert record["links"]["self"].endswith(f"/individual_appointments/{record['id']}")
    single = client.get(f"/individual_appointments/{record['id']}").json()
    assert single == record


# --- filters used by ingestion ---


def _expected_window(account, businesses, lifted: set[str]) -> set[str]:
    out = set()
    for r in account.appointments.records():
        if r["business_id"] not in businesses or not (DAY_FROM <= r["ends_at"] < DAY_TO):
            continue
        if any(r[f] is not None and f not in lifted for f in ("archived_at", "cancelled_at", "deleted_at")):
            continue
        out.add(r["id"])
    return out


@pytest.mark.parametrize(
    "lifted",
    [set(), {"archived_at"}, {"cancelled_at"}, {"archived_at", "cancelled_at"}, {"deleted_at"}],
)
def test_business_and_ends_at_window_with_exclusions_lifted_by_star(client, account, lifted):
    businesses = {account.businesses[0]["id"], account.businesses[2]["id"]}
    params = [
        ("q[]", f"business_id:={','.join(sorted(businesses))}"),
        ("q[]", f"ends_at:>={DAY_FROM}"),
        ("q[]", f"ends_at:<{DAY_TO}"),
        *[("q[]", f"{f}:*") for f in sorted(lifted)],
        ("per_page", 100),
    ]
    records, _ = _walk(client, "/individual_appointments", params)
    expected = _expected_window(account, businesses, lifted)
    assert {r["id"] for r in records} == expected
    assert expected
    if lifted == {"archived_at", "cancelled_at"}:
        assert any(r["cancelled_at"] for r in records) and any(r["archived_at"] for r in records)


def test_patients_by_id_list_with_and_without_archived(client, account):
    archived = [p for p in account.patients if p["archived_at"]][:3]
    active = [p for p in account.patients if not p["archived_at"]][:3]
    deleted = account.deleted_patients[:1]
    ids = [p["id"] for p in archived + active + deleted]
    base = [("q[]", f"id:={','.join(ids)}"), ("per_page", 100)]
    shown = {p["id"] for p in client.get("/patients", params=base).json()["patients"]}
    assert shown == {p["id"] for p in active}
    with_archived = client.get("/patients", params=[*base, ("q[]", "archived_at:*")]).json()["patients"]
    assert {p["id"] for p in with_archived} == {p["id"] for p in archived + active}
    merged = next(p for p in account.patients if p["merged_at"])
    body = client.get(f"/patients/{merged['id']}").json()
    assert body["merged_with_patient"]["links"]["self"].endswith(merged["merged_with_patient_id"])


def test_appointment_types_hide_archived_ones_unless_asked_and_cannot_be_searched_by_name(client, account):
    """What the ingestion relies on: `/appointment_types` lists an account's types (appointments reference
    them by link), archived ones only with `archived_at:*`, and Cliniko has no filter on `name`."""
    live = [t for t in account.appointment_types if not t["archived_at"]]
    archived = [t for t in account.appointment_types if t["archived_at"]]
    assert archived and any(t["name"] == "Free Consult" for t in live)
    assert any(t["max_attendees"] > 1 for t in live)  # a class type
    listed, _ = _walk(client, "/appointment_types", [("per_page", 100)])
    assert {t["id"] for t in listed} == {t["id"] for t in live}
    everything, _ = _walk(client, "/appointment_types", [("per_page", 100), ("q[]", "archived_at:*")])
    assert {t["id"]: t["name"] for t in everything} == {t["id"]: t["name"] for t in account.appointment_types}
    sample = everything[0]
    assert sample["links"]["self"].endswith(f"/appointment_types/{sample['id']}")
    assert isinstance(sample["id"], str) and sample["created_at"].endswith("Z")
    shown = client.get(f"/appointment_types/{archived[0]['id']}").json()  # one record: archived or not
    assert shown["archived_at"] == archived[0]["archived_at"]
    referenced = {r["appointment_type_id"] for r in account.appointments.records_at(range(200))}
    assert referenced <= {t["id"] for t in account.appointment_types}
    refused = client.get("/appointment_types", params={"q[]": "name:=Free Consult"})
    assert refused.status_code == 400 and refused.json() == {"message": "This column is not searchable."}


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("archived", [False, True])
def test_group_appointments_by_business_and_ends_at_window_archived_only_with_star(client, account, archived):
    businesses = {account.businesses[0]["id"], account.businesses[1]["id"]}
    since, until = "2026-01-05T00:00:00Z", "2026-02-10T00:00:00Z"  # wide enough to hold archived classes
    params = [
        ("q[]", f"business_id:={','.join(sorted(businesses))}"),
        ("q[]", f"ends_at:>={since}"),
        ("q[]", f"ends_at:<{until}"),
        *([("q[]", "archived_at:*")] if archived else []),
        ("sort", "ends_at,id"),
        ("per_page", 25),
    ]
    records, pages = _walk(client, "/group_appointments", params)
    expected = [
        c
        for c in account.group_appointments
        if c["business_id"] in businesses
        and _epoch(since) <= _epoch(c["ends_at"]) < _epoch(until)
        and c["deleted_at"] is None  # never listed
        and (archived or c["archived_at"] is None)
    ]
    assert [r["id"] for r in records] == [
        c["id"] for c in sorted(expected, key=lambda c: (c["ends_at"], int(c["id"])))
    ]
    assert len(pages) == -(-len(expected) // 25) and pages[0]["total_entries"] == len(expected)
    assert any(r["archived_at"] for r in records) == archived
    sample = records[0]
    assert sample["business"]["links"]["self"].endswith(f"/businesses/{sample_business(account, sample)}")
    assert sample["attendees"]["links"]["self"].endswith(f"/group_appointments/{sample['id']}/attendees")
    assert isinstance(sample["max_attendees"], int) and sample["links"]["self"].endswith(sample["id"])
    assert not any(
        c["deleted_at"] for c in account.group_appointments if c["id"] in {r["id"] for r in records}
    )
    assert any(c["deleted_at"] for c in account.group_appointments)  # the data has deleted classes


def sample_business(account, record: dict) -> str:
    return next(c["business_id"] for c in account.group_appointments if c["id"] == record["id"])


@pytest.mark.parametrize(
    "lifted", [set(), {"archived_at"}, {"cancelled_at"}, {"archived_at", "cancelled_at"}]
)
def test_attendees_by_booking_id_list_with_exclusions_lifted_by_star(client, account, lifted):
    classes = [c for c in account.group_appointments if c["deleted_at"] is None][:12]
    booking_ids = [c["id"] for c in classes]
    params = [
        ("q[]", f"booking_id:={','.join(booking_ids)}"),
        *[("q[]", f"{f}:*") for f in sorted(lifted)],
        ("sort", "id"),
        ("per_page", 100),
    ]
    records, pages = _walk(client, "/attendees", params)
    expected = [
        a
        for a in account.attendees
        if a["booking_id"] in booking_ids
        and all(a[f] is None for f in {"archived_at", "cancelled_at"} - lifted)
    ]
    assert [r["id"] for r in records] == sorted((a["id"] for a in expected), key=int)
    assert len(expected) > 100 and len(pages) == -(-len(expected) // 100)  # more than a page
    by_id = {a["id"]: a for a in account.attendees}
    for record in records:
        attendee = by_id[record["id"]]
        assert record["booking"]["links"]["self"].endswith(f"/bookings/{attendee['booking_id']}")
        assert record["patient"]["links"]["self"].endswith(f"/patients/{attendee['patient_id']}")
        assert record["arrived"] is attendee["arrived"]
    for field in ("archived_at", "cancelled_at"):
        assert any(r[field] for r in records) == (field in lifted)
    assert {r["arrived"] for r in records} >= {True, None}


def test_attendees_of_a_deleted_class_are_never_listed(client, account):
    deleted = [c["id"] for c in account.group_appointments if c["deleted_at"]][:3]
    assert deleted and any(a["booking_id"] in deleted for a in account.attendees)
    params = [
        ("q[]", f"booking_id:={','.join(deleted)}"),
        ("q[]", "archived_at:*"),
        ("q[]", "cancelled_at:*"),
    ]
    assert client.get("/attendees", params=params).json()["attendees"] == []
    assert client.get(f"/group_appointments/{deleted[0]}").status_code == 404


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/group_appointments", "cancelled_at:*"),  # a class is archived or deleted, not cancelled
        ("/group_appointments", "deleted_at:*"),
        ("/group_appointments", "patient_id:=1"),
        ("/attendees", "business_id:=1"),  # attendees cannot be filtered by business or time
        ("/attendees", "ends_at:>=2026-01-01T00:00:00Z"),
        ("/attendees", "arrived:=true"),
    ],
)
def test_class_filters_the_reference_does_not_list_are_400(client, path, query):
    response = client.get(path, params={"q[]": query})
    assert response.status_code == 400
    assert response.json() == {"message": "This column is not searchable."}


def test_nested_attendees_route_is_not_served(client, account):
    class_id = account.group_appointments[0]["id"]
    assert client.get(f"/group_appointments/{class_id}/attendees").status_code == 404


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ("first_name:=Zoë", lambda p: p["first_name"] == "Zoë"),
        ("last_name:!=Smith", lambda p: p["last_name"] != "Smith"),
        ("last_name:~brien", lambda p: "brien" in p["last_name"].lower()),
        (
            "last_name:~~m%r",
            lambda p: p["last_name"].lower().startswith("m") and p["last_name"].endswith("r"),
        ),
        ("email:!?", lambda p: p["email"] is None),
        ("old_reference_id:?", lambda p: p["old_reference_id"] is not None),
        ("date_of_birth:=****-05-**", lambda p: (p["date_of_birth"] or "")[5:7] == "05"),
        (
            "date_of_birth:<1950-01-01",
            lambda p: p["date_of_birth"] is not None and p["date_of_birth"] < "1950",
        ),
        ("created_at:>=2025-12-01T00:00:00Z", lambda p: p["created_at"] >= "2025-12-01T00:00:00Z"),
    ],
)
def test_patient_filter_operators(client, account, query, predicate):
    records, _ = _walk(client, "/patients", [("q[]", query), ("q[]", "archived_at:*"), ("per_page", 100)])
    expected = {p["id"] for p in account.patients if predicate(p)}
    assert {r["id"] for r in records} == expected
    assert expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("notes:~pain", "This column is not searchable."),
        ("business_name:=x", "This column is not searchable."),
        ("updated_at:>2026-01-01T00:00:00+00:00", "UTC"),
        ("updated_at:>2026-01-01", "UTC"),
        ("updated_at:=2026-01-01T00:00:00Z", "does not apply"),
        ("id:~12", "does not apply"),
        ("id:=abc", "not a number"),
    ],
)
def test_bad_filters_are_400(client, query, message):
    response = client.get("/patients", params={"q[]": query})
    assert response.status_code == 400
    assert message in response.json()["message"]
    if message.startswith("This column"):
        assert response.json() == {"message": message}


def test_sort_desc_default_created_at_and_unsortable(client, account):
    business = account.businesses[1]["id"]
    params = [("q[]", f"business_id:={business}"), ("per_page", 100)]
    records, _ = _walk(client, "/individual_appointments", [*params, ("sort", "ends_at:desc,id")])
    keys = [(r["ends_at"], r["id"]) for r in records]
    assert keys == sorted(keys, key=lambda k: (k[0], -int(k[1])), reverse=True)
    default, _ = _walk(client, "/individual_appointments", params)
    assert [(r["created_at"], int(r["id"])) for r in default] == sorted(
        (r["created_at"], int(r["id"])) for r in default
    )
    assert client.get("/individual_appointments", params={"sort": "patient_name"}).status_code == 400


# --- rate limit ---


def test_429_with_reset_header_after_limit_in_window(account):
    emulator = ClinikoEmulator(
        ClinikoEmulatorConfig(accounts=[account], rate_limit=5, rate_window_seconds=1.0)
    )
    with running_cliniko(emulator) as url, httpx.Client(auth=(account.api_key, ""), headers=UA) as c:
        time.sleep(1 - time.time() % 1 + 0.01)
        statuses = [c.get(f"{url}/businesses") for _ in range(8)]
        assert [r.status_code for r in statuses] == [200] * 5 + [429] * 3
        throttled = statuses[-1]
        assert throttled.json() == {"message": "Too many requests"}
        reset = int(throttled.headers["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 1.5
        assert "retry-after" not in throttled.headers
        time.sleep(max(0.0, reset - time.time()) + 0.01)
        assert c.get(f"{url}/businesses").status_code == 200
    assert [e["status"] for e in emulator.request_log][:8] == [200] * 5 + [429] * 3


# --- faults and request log ---


def _outcomes(account, faults: FaultConfig) -> list[str]:
    out = []
    config = ClinikoEmulatorConfig(accounts=[account], faults=faults)
    with running_cliniko(config) as url, httpx.Client(auth=(account.api_key, ""), headers=UA, timeout=5) as c:
        for page in [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 1, 2, 3]:
            try:
                response = c.get(f"{url}/patients", params={"page": page, "per_page": 5})
            except httpx.TransportError:
                out.append("dropped")
                continue
            try:
                response.json()
                out.append(str(response.status_code))
            except json.JSONDecodeError:
                out.append(f"{response.status_code}-malformed")
    return out


def test_faults_are_reproducible_from_the_seed(account):
    faults = FaultConfig(seed=7, error_rate=0.3, drop_rate=0.15, malformed_json_rate=0.15)
    first, second = _outcomes(account, faults), _outcomes(account, faults)
    other = _outcomes(account, FaultConfig(seed=8, error_rate=0.3, drop_rate=0.15, malformed_json_rate=0.15))
    assert first == second
    assert first != other
    kinds = set(first)
    assert "200" in kinds and "dropped" in kinds and "200-malformed" in kinds
    assert kinds & {"500", "502-malformed", "503-malformed", "504-malformed"}


def test_malformed_records_blank_nulls_and_slow_responses(account):
    faults = FaultConfig(
        seed=3, malformed_record_rate=1.0, empty_string_null_rate=1.0, slow_rate=1.0, slow_seconds=0.2
    )
    with running_cliniko(ClinikoEmulatorConfig(accounts=[account], faults=faults)) as url:
        started = time.monotonic()
        response = httpx.get(
            f"{url}/individual_appointments", params={"per_page": 40}, auth=(account.api_key, ""), headers=UA
        )
        assert time.monotonic() - started >= 0.2
    rows = response.json()["individual_appointments"]
    assert all(r.get("archived_at") == "" for r in rows if "archived_at" in r)
    broken = [
        r
        for r in rows
        if isinstance(r["id"], int)
        or "patient" not in r
        or r["did_not_arrive"] == "no"
        or "/" in r["ends_at"]
    ]
    assert len(broken) == len(rows) == 40


def test_request_log_masks_keys_and_writes_jsonl(account, tmp_path):
    log_path = tmp_path / "requests.jsonl"
    emulator = ClinikoEmulator(ClinikoEmulatorConfig(accounts=[account], request_log_path=log_path))
    with running_cliniko(emulator) as url:
        httpx.get(
            f"{url}/patients",
            params=[("q[]", "id:=1,2"), ("per_page", 5)],
            auth=(account.api_key, ""),
            headers=UA,
        )
        httpx.get(f"{url}/patients", auth=("bogus-key", ""), headers=UA)
    emulator.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines == emulator.request_log
    assert [e["status"] for e in lines] == [200, 401]
    assert lines[0]["path"] == "/v1/patients" and "q[]=id:=1,2" in lines[0]["query"]
    assert lines[0]["key"] == "****-au4"
    assert [e["account"] for e in lines] == [account.name, None]  # who spent the budget; no key in it
    assert account.api_key not in log_path.read_text()
    assert {"time", "method", "status"} <= set(lines[0])


# --- rendering: the cached, orjson-encoded pages are the bytes json.dumps gave ---


def test_pages_are_the_same_bytes_as_json_dumps_and_stay_so_when_served_from_the_render_cache(
    account,
) -> None:
    faults = FaultConfig(seed=5, malformed_record_rate=0.2, empty_string_null_rate=0.2)
    emulator = ClinikoEmulator(ClinikoEmulatorConfig(accounts=[account], rate_limit=100_000, faults=faults))
    with (
        running_cliniko(emulator) as url,
        httpx.Client(base_url=url, auth=(account.api_key, ""), headers=UA, timeout=10) as c,
    ):
        params = [("q[]", "archived_at:*"), ("q[]", "cancelled_at:*"), ("per_page", 100), ("page", 2)]
        first = c.get("/individual_appointments", params=params).content
        again = c.get("/individual_appointments", params=params).content
        patients = c.get("/patients", params=[("per_page", 100)]).content
    for body in (first, patients):
        assert body == json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    assert again == first
    page = json.loads(first)
    assert len(page["individual_appointments"]) == 100
    assert any(r["did_not_arrive"] == "no" or "patient" not in r for r in page["individual_appointments"])
    assert any(r["archived_at"] == "" for r in page["individual_appointments"])
