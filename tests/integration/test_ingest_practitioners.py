"""Practitioners of a mapping-day: the emulator's practitioner and user routes, the client's lookup by id at
the least request count, and the `cliniko_practitioners` asset (materialized in the patients' step).

Expected rows and request counts are derived from the generator's records in plain Python: which appointments
of the mapped businesses end on the local day, which practitioners they name, which of those are inactive.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest
from ingest_support import cliniko_sandbox, event_log_text

from pipeline.assets.practitioners import practitioner_lookup
from pipeline.cliniko import ClinikoClient
from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig
from pipeline.sandbox.generator import NULL, Account, generate_account
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import load_settings

DAY = date(2026, 1, 6)
MAPPING = "5101"
LOCATIONS = "Sydney CBD Physio, Auckland Central Clinic"
UA = {"User-Agent": "cliniko-reviews tests (tests@example.com)"}


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account(11, appointments=600, start=date(2026, 1, 1), end=date(2026, 1, 15))


def referenced_practitioners(account: Account, names: str, local_day: date) -> set[str]:
    """The generator's answer: practitioners of the listable appointments and classes of `names` ending on
    `local_day` in each business's time zone (cancelled and archived ones are listed too; deleted ones are
    not)."""
    wanted = {n.strip() for n in names.split(",")}
    table = account.appointments
    out: set[str] = set()
    for business in account.businesses:
        if business["business_name"].strip() not in wanted:
            continue
        zone = ZoneInfo(business["time_zone_identifier"] or "UTC")
        start = datetime.combine(local_day, clock.min, tzinfo=zone).timestamp()
        end = datetime.combine(local_day + timedelta(days=1), clock.min, tzinfo=zone).timestamp()
        rows = (
            (table.business_id == int(business["id"]))
            & (table.deleted_at == NULL)
            & (table.ends_at >= start)
            & (table.ends_at < end)
        )
        out |= {str(i) for i in table.practitioner_id[rows]}
        out |= {
            c["practitioner_id"]
            for c in account.group_appointments
            if c["business_id"] == business["id"]
            and c["deleted_at"] is None
            and start <= datetime.fromisoformat(c["ends_at"].replace("Z", "+00:00")).timestamp() < end
        }
    return out


def user_email(account: Account, practitioner: dict) -> str | None:
    (user,) = [u for u in account.users if u["id"] == practitioner["user_id"]]
    return user["email"]


# -- the generator and the emulator --------------------------------------------------------------------------


def test_the_generator_has_practitioners_without_email_inactive_and_with_overlong_emails(account):
    practitioners = account.practitioners
    assert any(not p["active"] for p in practitioners)
    emails = [user_email(account, p) for p in practitioners]
    assert None in emails
    assert any(e is not None and len(e) > 40 for e in emails)
    assert any(e is not None and len(e) <= 40 for e in emails)
    practitioner_users = {p["user_id"] for p in practitioners}
    assert any(u["id"] not in practitioner_users for u in account.users)  # a receptionist
    inactive = {int(p["id"]) for p in practitioners if not p["active"]}
    assert inactive & set(account.appointments.practitioner_id.tolist())  # past visits name them


def test_emulator_lists_active_and_inactive_practitioners_apart_and_by_id(account):
    active = [p for p in account.practitioners if p["active"]]
    inactive = [p for p in account.practitioners if not p["active"]]
    every_id = ",".join(p["id"] for p in account.practitioners)
    app = ClinikoEmulator(ClinikoEmulatorConfig([account]))
    with (
        running_cliniko(app) as url,
        httpx.Client(base_url=url, auth=(account.api_key, ""), headers=UA) as http,
    ):
        listed = http.get("/practitioners", params={"q[]": f"id:={every_id}", "per_page": 100}).json()
        gone = http.get("/practitioners/inactive", params={"q[]": f"id:={every_id}"}).json()
        one_inactive = http.get(f"/practitioners/{inactive[0]['id']}")
        users = http.get("/users", params={"q[]": f"id:={active[0]['user_id']}"}).json()["users"]
        by_name = http.get("/practitioners", params={"q[]": "first_name:=Hannah"})
        by_email = http.get("/users", params={"q[]": "email:=a@b.co"})
    app.close()
    assert {p["id"] for p in listed["practitioners"]} == {p["id"] for p in active}
    assert listed["total_entries"] == len(active)
    assert {p["id"] for p in gone["practitioners"]} == {p["id"] for p in inactive}
    assert one_inactive.status_code == 200 and one_inactive.json()["active"] is False
    assert one_inactive.json()["user"]["links"]["self"].endswith(f"/users/{inactive[0]['user_id']}")
    assert "email" not in one_inactive.json()  # a practitioner's email is its user's
    assert [u["email"] for u in users] == [user_email(account, active[0])]
    for refused in (by_name, by_email):  # not searchable on the real API either (reference §4.2)
        assert refused.status_code == 400
        assert refused.json() == {"message": "This column is not searchable."}


# -- the client: by id, active then inactive, then users; 100 ids a request ----------------------------------


def test_client_asks_inactive_ones_only_for_ids_the_active_list_did_not_return(account, tmp_path: Path):
    settings = dataclasses.replace(load_settings(), data_dir=tmp_path, cliniko_base_url=None)
    real = [p["id"] for p in account.practitioners]
    unknown = [str(9_000_000_000_000_000_000 + k) for k in range(245)]  # deleted: in neither list
    app = ClinikoEmulator(ClinikoEmulatorConfig([account]))
    with (
        running_cliniko(app) as url,
        ClinikoClient(account.api_key, settings=settings, base_url=url, rate_limit_per_minute=0) as client,
    ):
        lookup = practitioner_lookup(client, real + unknown + real[:3])
        log = [e for e in app.request_log if e["path"] != "/v1/users"]
        app.clear_log()
        all_active = practitioner_lookup(client, [p["id"] for p in account.practitioners if p["active"]])
        active_only_log = [e for e in app.request_log if e["path"] != "/v1/users"]
    app.close()
    by_id = {r["practitioner_id"]: r for r in lookup.pages.frame.to_dict("records")}
    assert set(by_id) == set(real)
    assert sorted(lookup.missing_ids) == sorted(unknown)
    assert all(by_id[p["id"]]["email"] == user_email(account, p) for p in account.practitioners)
    assert all(by_id[p["id"]]["is_active"] is p["active"] for p in account.practitioners)
    assert all(by_id[p["id"]]["user_id"] == p["user_id"] for p in account.practitioners)
    inactive = sum(1 for p in account.practitioners if not p["active"])
    paths = [e["path"] for e in log]
    distinct = len(real) + len(unknown)
    assert paths.count("/v1/practitioners") == math.ceil(distinct / 100)
    assert paths.count("/v1/practitioners/inactive") == math.ceil((distinct - (len(real) - inactive)) / 100)
    assert len(all_active.pages.frame) == len(real) - inactive
    assert [e["path"] for e in active_only_log] == ["/v1/practitioners"]  # no inactive request at all


# -- the asset -----------------------------------------------------------------------------------------------


def test_a_mapping_day_stores_its_practitioners_with_emails_at_the_least_request_count(
    account, tmp_path, monkeypatch
):
    referenced = referenced_practitioners(account, LOCATIONS, DAY)
    practitioners = {p["id"]: p for p in account.practitioners}
    inactive = {pid for pid in referenced if not practitioners[pid]["active"]}
    assert inactive and referenced - inactive  # the day covers both lists
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map(MAPPING, LOCATIONS)
        instance = dg.DagsterInstance.ephemeral()
        result = sandbox.materialize(instance, MAPPING, DAY)
        log = sandbox.emulator.request_log
        rows = sandbox.rows("raw.cliniko_practitioners", MAPPING, DAY)
    paths = [e["path"] for e in log]
    # One request per 100 ids and listing: the active list, the inactive one for the ids it lacked, the users.
    assert paths.count("/v1/practitioners") == math.ceil(len(referenced) / 100) == 1
    assert paths.count("/v1/practitioners/inactive") == math.ceil(len(inactive) / 100) == 1
    assert paths.count("/v1/users") == 1
    assert {r["practitioner_id"] for r in rows} == referenced
    for row in rows:
        source = practitioners[row["practitioner_id"]]
        assert (row["is_active"], row["is_missing"]) == (source["active"], False)
        assert (row["first_name"], row["last_name"]) == (source["first_name"], source["last_name"])
        assert row["email"] == user_email(account, source)
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "cliniko_practitioners"
    ]
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["rows"] == len(referenced) and meta["missing_practitioners"] == 0
    assert meta["requests"] == 3
    assert meta["with_email"] == sum(1 for pid in referenced if user_email(account, practitioners[pid]))
    # businesses, appointment types, appointments, then patients and practitioners in one step
    assert len(result.get_step_success_events()) == 4
    key = account.api_key
    assert key not in event_log_text(instance, result.run_id)
    assert key.rsplit("-", 1)[0] not in event_log_text(instance, result.run_id)


def test_a_practitioner_cliniko_no_longer_returns_is_stored_as_missing(account, tmp_path, monkeypatch):
    referenced = sorted(referenced_practitioners(account, LOCATIONS, DAY))
    gone = referenced[0]
    without = dataclasses.replace(
        account, practitioners=[p for p in account.practitioners if p["id"] != gone]
    )
    with cliniko_sandbox(tmp_path, monkeypatch, without) as sandbox:
        sandbox.map(MAPPING, LOCATIONS)
        sandbox.materialize(dg.DagsterInstance.ephemeral(), MAPPING, DAY)
        rows = {r["practitioner_id"]: r for r in sandbox.rows("raw.cliniko_practitioners", MAPPING, DAY)}
    assert set(rows) == set(referenced)
    assert rows[gone]["is_missing"] and rows[gone]["first_name"] is None and rows[gone]["is_active"] is None
    assert not any(r["is_missing"] for pid, r in rows.items() if pid != gone)


@pytest.mark.parametrize("forbidden", ["users", "practitioners"])
def test_a_key_that_may_not_read_practitioners_or_users_still_ingests_the_day(
    account, tmp_path, monkeypatch, forbidden
):
    """Attribution is extra: a 403 on it leaves the partition green, says so, and stores what it could."""
    referenced = referenced_practitioners(account, LOCATIONS, DAY)
    with cliniko_sandbox(
        tmp_path, monkeypatch, account, forbidden={account.api_key: frozenset({forbidden})}
    ) as sandbox:
        sandbox.map(MAPPING, LOCATIONS)
        result = sandbox.materialize(dg.DagsterInstance.ephemeral(), MAPPING, DAY)
        rows = sandbox.rows("raw.cliniko_practitioners", MAPPING, DAY)
        patients = sandbox.rows("raw.cliniko_patients", MAPPING, DAY)
    assert result.success and patients
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "cliniko_practitioners"
    ]
    refused = event.materialization.metadata["refused_by_cliniko"].value
    assert f"403 Forbidden for /{forbidden} " in refused
    if forbidden == "users":
        assert {r["practitioner_id"] for r in rows} == referenced
        assert all(r["email"] is None and r["first_name"] for r in rows)
    else:
        assert rows == []
