"""The sandbox data generator: deterministic from a seed, and covering every case the pipeline must handle."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pipeline.sandbox.generator import (
    REMINDER_TYPES,
    SIZES,
    generate_account,
    generate_accounts,
    generate_preset,
)

START, END = date(2026, 1, 1), date(2026, 3, 1)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def account():
    return generate_account(11, appointments=4_000, start=START, end=END)


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_same_seed_gives_identical_data_and_another_seed_does_not():
    a = generate_account(5, appointments=500, start=START, end=END)
    b = generate_account(5, appointments=500, start=START, end=END)
    c = generate_account(6, appointments=500, start=START, end=END)
    assert a.api_key == b.api_key
    assert a.businesses == b.businesses and a.patients == b.patients
    assert list(a.appointments.records()) == list(b.appointments.records())
    assert a.api_key != c.api_key
    assert list(a.appointments.records()) != list(c.appointments.records())


def test_ids_are_19_digit_strings_and_timestamps_are_utc_z(account):
    record = account.appointments.record(0)
    for value in (record["id"], record["patient_id"], record["business_id"], account.patients[0]["id"]):
        assert isinstance(value, str) and re.fullmatch(r"\d{19}", value)
    for value in (
        record["starts_at"],
        record["ends_at"],
        record["created_at"],
        account.patients[0]["created_at"],
    ):
        assert TIMESTAMP.match(value)
    assert len(set(account.appointments.id.tolist())) == len(account.appointments)


def test_businesses_span_time_zones_including_null_and_an_archived_one(account):
    zones = {b["time_zone_identifier"] for b in account.businesses}
    assert {"Australia/Sydney", "Pacific/Auckland", "Europe/London", "America/Los_Angeles"} <= zones
    assert {"Pacific/Honolulu", None} <= zones
    assert all(b["business_name"] and b["country_code"] for b in account.businesses)
    assert sum(b["archived_at"] is not None for b in account.businesses) == 1


def test_patients_cover_names_reminders_phones_and_emails(account):
    patients = account.patients + account.deleted_patients
    assert any(not p["first_name"].isascii() or not p["last_name"].isascii() for p in patients)
    assert {p["reminder_type"] for p in patients} == set(REMINDER_TYPES)
    numbers = [n["number"] for p in patients for n in p["patient_phone_numbers"]]
    assert any(n.startswith("04") for n in numbers)
    assert any(n.startswith("+61") for n in numbers)
    assert any(n.startswith("+64") or n.startswith("021") for n in numbers)
    assert any(n.startswith("07") or n.startswith("+44") for n in numbers)
    assert any(re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", n) for n in numbers)
    assert any(re.fullmatch(r"61\d{9}", n) for n in numbers)
    assert any(n in ("call reception", "12", "n/a", "") for n in numbers)
    assert any(not p["patient_phone_numbers"] for p in patients)
    assert {n["phone_type"] for p in patients for n in p["patient_phone_numbers"]} >= {"Mobile", "Home"}
    emails = [p["email"] for p in patients]
    assert None in emails
    assert any(e and "@" not in e for e in emails)
    assert any(e and len(e) > 40 and "@" in e for e in emails)


def test_archived_merged_and_deleted_patients(account):
    by_id = {p["id"]: p for p in account.patients}
    merged = [p for p in account.patients if p["merged_at"]]
    assert merged and all(p["archived_at"] and p["merged_with_patient_id"] in by_id for p in merged)
    assert any(p["archived_at"] and not p["merged_at"] for p in account.patients)
    deleted_ids = {p["id"] for p in account.deleted_patients}
    assert deleted_ids and not deleted_ids & set(by_id)
    referenced = {str(v) for v in account.appointments.patient_id.tolist()}
    assert deleted_ids & referenced


def test_appointment_states(account):
    records = list(account.appointments.records())
    now = account.now
    assert any(
        r["cancelled_at"] and r["cancellation_reason"] in (10, 20, 30, 31, 40, 50, 60) for r in records
    )
    assert all(r["cancellation_reason_description"] for r in records if r["cancelled_at"])
    assert any(r["archived_at"] for r in records)
    assert any(r["deleted_at"] for r in records)
    assert any(r["did_not_arrive"] for r in records)
    assert any(r["patient_arrived"] for r in records)
    assert any(_parse(r["starts_at"]) > now for r in records)
    assert not any(r["patient_arrived"] or r["did_not_arrive"] for r in records if _parse(r["ends_at"]) > now)
    for r in records:
        assert _parse(r["ends_at"]) > _parse(r["starts_at"])
        assert _parse(r["created_at"]) <= _parse(r["updated_at"]) <= max(now, _parse(r["created_at"]))


def test_repeat_patients_and_appointments_spanning_local_midnight(account):
    zones = {b["id"]: b["time_zone_identifier"] for b in account.businesses}
    per_day = Counter()
    days_per_patient: dict[str, set] = {}
    spanning = 0
    for r in account.appointments.records():
        zone = ZoneInfo(zones[r["business_id"]] or "UTC")
        start_local = _parse(r["starts_at"]).astimezone(zone)
        end_local = _parse(r["ends_at"]).astimezone(zone)
        spanning += start_local.date() != end_local.date()
        assert start_local.hour >= 7
        per_day[(r["patient_id"], r["business_id"], start_local.date())] += 1
        days_per_patient.setdefault(r["patient_id"], set()).add(start_local.date())
    assert spanning > 0
    assert max(per_day.values()) >= 2
    assert max(len(days) for days in days_per_patient.values()) >= 3


def test_several_accounts_have_distinct_keys_businesses_and_ids():
    accounts = generate_accounts(3, 2, appointments=200, start=START, end=END)
    assert accounts[0].api_key != accounts[1].api_key
    assert all(a.api_key.endswith("-au4") for a in accounts)
    names = [{b["business_name"] for b in a.businesses} for a in accounts]
    assert not names[0] & names[1]
    ids = [set(a.appointments.id.tolist()) for a in accounts]
    assert not ids[0] & ids[1]


def test_presets_and_bad_arguments():
    now = datetime(2026, 5, 10, 12, tzinfo=UTC)
    tiny = generate_preset(1, "tiny", today=now.date(), now=now)
    assert len(tiny) == SIZES["tiny"].accounts
    assert len(tiny[0].appointments) == SIZES["tiny"].appointments
    starts = tiny[0].appointments.starts_at
    assert starts.min() < now.timestamp() < starts.max()
    with pytest.raises(ValueError, match="unknown size"):
        generate_preset(1, "huge", today=now.date(), now=now)
    with pytest.raises(ValueError, match="after start"):
        generate_account(1, start=START, end=START)


def test_a_handful_of_appointments_still_builds():
    account = generate_account(2, businesses=1, appointments=3, start=START, end=START + timedelta(days=1))
    assert len(account.appointments) == 3
    assert np.all(account.appointments.business_id == int(account.businesses[0]["id"]))
