"""The Cliniko ingest assets end to end: registry -> Dagster -> real HTTP to the emulator -> DuckDB file.

Every test materializes real partitions in process against an emulator on a free loopback port and reads the
warehouse file back. The account is small (600 appointments over two weeks, seven businesses in six time
zones), and runs that only compare against a fault-free run share one (`baseline`).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
from ingest_support import INGEST_ASSETS, cliniko_sandbox, event_log_text

from pipeline.assets.ingest import cliniko_appointments, cliniko_businesses
from pipeline.assets.models import appointment_eligibility
from pipeline.ratelimit import SharedRateLimiter
from pipeline.registry.inputs import MappingPatch, PropertyInput
from pipeline.sandbox.cliniko_emulator import FaultConfig
from pipeline.sandbox.generator import NULL, Account, generate_account
from pipeline.settings import load_settings

DAY = date(2026, 1, 6)
BASELINE_MAPPING = "5001"
BASELINE_LOCATIONS = "Sydney CBD Physio, Auckland Central Clinic"


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account(11, appointments=600, start=date(2026, 1, 1), end=date(2026, 1, 15))


@dataclass(frozen=True)
class Baseline:
    """A fault-free run of (DAY, BASELINE_MAPPING): what faulty and throttled runs must reproduce."""

    tables: dict[str, list[dict]]
    metadata: dict[str, dict]
    requests: int


@pytest.fixture(scope="module")
def baseline(account: Account, tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        cliniko_sandbox(tmp_path_factory.mktemp("baseline"), monkeypatch, account) as sandbox,
    ):
        sandbox.map(BASELINE_MAPPING, BASELINE_LOCATIONS)
        result = sandbox.materialize(dg.DagsterInstance.ephemeral(), BASELINE_MAPPING, DAY)
        return Baseline(sandbox.snapshot(), metadata(result), len(sandbox.emulator.request_log))


def business_ids(account: Account, *names: str) -> dict[str, str | None]:
    """Cliniko business id -> time zone of the businesses with these (trimmed) names."""
    return {
        b["id"]: b["time_zone_identifier"] for b in account.businesses if b["business_name"].strip() in names
    }


def expected_appointment_ids(account: Account, zones: dict[str, str | None], local_day: date) -> set[str]:
    """The generator's own answer: visible appointments of these businesses ending on `local_day` there."""
    table = account.appointments
    out: set[str] = set()
    for business_id, zone_name in zones.items():
        zone = ZoneInfo(zone_name or "UTC")
        start = datetime.combine(local_day, clock.min, tzinfo=zone).timestamp()
        end = datetime.combine(local_day + timedelta(days=1), clock.min, tzinfo=zone).timestamp()
        rows = (
            (table.business_id == int(business_id))
            & (table.deleted_at == NULL)
            & (table.ends_at >= start)
            & (table.ends_at < end)
        )
        out |= {str(i) for i in table.id[rows]}
    return out


def ids(rows: list[dict], column: str) -> set[str]:
    return {r[column] for r in rows}


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        event.asset_key.to_user_string(): {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error with its causes: what an operator reads in the UI."""
    (failure,) = result.get_step_failure_events()
    parts, error = [], failure.step_failure_data.error
    while error is not None:
        parts.append(error.message)
        error = error.cause
    user = failure.step_failure_data.user_failure_data
    return " ".join(parts + ([user.description] if user and user.description else []))


# -- idempotence and isolation -------------------------------------------------------------------------------


def test_rerun_stores_the_same_rows_and_other_partitions_leave_each_other_alone(
    account, tmp_path, monkeypatch, dagster_instance
):
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map("5001", "Sydney CBD Physio")
        sandbox.map("5002", "London Bridge Physiotherapy")

        sandbox.materialize(dagster_instance, "5001", DAY)
        first = sandbox.snapshot()
        sandbox.materialize(dagster_instance, "5001", DAY)
        assert sandbox.snapshot() == first
        assert first["raw.cliniko_appointments"] and first["raw.cliniko_patients"]

        sandbox.materialize(dagster_instance, "5001", DAY + timedelta(days=1))
        sandbox.materialize(dagster_instance, "5002", DAY)
        for table in ("raw.cliniko_appointments", "raw.cliniko_patients", "raw.cliniko_quarantine"):
            assert sandbox.rows(table, "5001", DAY) == first[table]
        assert sandbox.rows("raw.cliniko_businesses", "5001") == first["raw.cliniko_businesses"]
        other_day = ids(
            sandbox.rows("raw.cliniko_appointments", "5001", DAY + timedelta(days=1)), "appointment_id"
        )
        other_mapping = ids(sandbox.rows("raw.cliniko_appointments", "5002", DAY), "appointment_id")
        sydney = business_ids(account, "Sydney CBD Physio")
        london = business_ids(account, "London Bridge Physiotherapy")
        assert other_day == expected_appointment_ids(account, sydney, DAY + timedelta(days=1))
        assert other_mapping == expected_appointment_ids(account, london, DAY)
        assert (
            other_day
            and other_mapping
            and not other_day & ids(first["raw.cliniko_appointments"], "appointment_id")
        )


# -- the target day ------------------------------------------------------------------------------------------


def test_fetch_delay_fetches_the_local_target_day_of_each_business(
    account, tmp_path, monkeypatch, dagster_instance
):
    """Auckland is UTC+13 and Honolulu UTC-10 in January; Mobile Visits has no time zone (so UTC). Each
    business's window is its own local day, D - delay."""
    names = ("Auckland Central Clinic", "Honolulu Sports Medicine", "Mobile Visits")
    zones = business_ids(account, *names)
    assert len(zones) == 3 and None in zones.values()
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        for delay in (0, 1, 2):
            number = f"600{delay}"
            sandbox.map(number, ", ".join(names), fetch_delay=delay)
            sandbox.materialize(
                dagster_instance, number, DAY, assets=[cliniko_businesses, cliniko_appointments]
            )
            target = DAY - timedelta(days=delay)
            stored = sandbox.rows("raw.cliniko_appointments", number, DAY)

            assert ids(stored, "appointment_id") == expected_appointment_ids(account, zones, target)
            for row in stored:
                zone = ZoneInfo(zones[row["cliniko_business_id"]] or "UTC")
                assert row["ends_at"].astimezone(zone).date() == target, row


# -- bad input -----------------------------------------------------------------------------------------------


def test_unknown_location_name_fails_listing_the_existing_names_and_fetches_nothing_more(
    account, tmp_path, monkeypatch, dagster_instance
):
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map("7001", "Sydney CBD Physio, Bondi Beach Physio")
        result = sandbox.materialize(dagster_instance, "7001", DAY, raise_on_error=False)

        assert not result.success
        message = failure_message(result)
        assert "Bondi Beach Physio" in message
        for business in account.businesses:
            assert business["business_name"].strip() in message
        for table in ("raw.cliniko_appointments", "raw.cliniko_patients"):
            assert sandbox.rows(table, "7001") == []
        # The businesses Cliniko returned are kept: the calendar holds the mapping back while its names
        # match none of them (and reads their zones).
        assert len(sandbox.rows("raw.cliniko_businesses", "7001")) == len(account.businesses)


# -- appointment types -------------------------------------------------------------------------------------


# -- classes, and what a mapping-day costs in requests -------------------------------------------------------


def pages(rows: int) -> int:
    """Requests for one filtered query of `rows` rows: a page per 100, and one (empty) page when none."""
    return max(1, -(-rows // 100))


def test_a_mapping_day_with_classes_costs_one_page_per_100_rows_of_each_resource(tmp_path, monkeypatch):
    """The minimum, derived from the generator's data: a query per resource (per time zone for the
    windowed ones), a page per 100 rows, attendees asked for by the classes' ids, 100 classes a query, so
    never a request per class, and the patients of appointments and attendees in one walk, 100 ids a query."""
    day = date(2026, 1, 8)
    account = generate_account(
        12,
        appointments=900,
        start=date(2026, 1, 1),
        end=date(2026, 1, 15),
        hot_day=day,
        hot_day_appointments=150,
        hot_day_classes=12,
    )
    (business,) = business_ids(account, "Sydney CBD Physio")
    zone = ZoneInfo("Australia/Sydney")
    since = datetime.combine(day, clock.min, tzinfo=zone).timestamp()
    until = datetime.combine(day + timedelta(days=1), clock.min, tzinfo=zone).timestamp()

    def in_day(text: str) -> bool:
        return since <= datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() < until

    appointments = expected_appointment_ids(account, {business: "Australia/Sydney"}, day)
    classes = {
        c["id"]
        for c in account.group_appointments
        if c["business_id"] == business and in_day(c["ends_at"]) and c["deleted_at"] is None
    }
    attendees = [a for a in account.attendees if a["booking_id"] in classes]
    table = account.appointments
    patients = {str(p) for i, p in zip(table.id, table.patient_id, strict=True) if str(i) in appointments}
    patients |= {a["patient_id"] for a in attendees}
    # Practitioners by id, of appointments and classes alike: the active list, the inactive one for the rest,
    # and their users (for the emails).
    practitioners = {
        str(p) for i, p in zip(table.id, table.practitioner_id, strict=True) if str(i) in appointments
    }
    practitioners |= {c["practitioner_id"] for c in account.group_appointments if c["id"] in classes}
    known = {p["id"]: p for p in account.practitioners}
    inactive = [i for i in practitioners if i not in known or not known[i]["active"]]
    users = {known[i]["user_id"] for i in practitioners if i in known}
    assert len(appointments) > 100 and len(attendees) > 100 and len(classes) > 12  # paging is exercised

    with cliniko_sandbox(tmp_path, monkeypatch, account, rate_limit=10_000) as sandbox:
        sandbox.map("8100", "Sydney CBD Physio")
        result = sandbox.materialize(dg.DagsterInstance.ephemeral(), "8100", day)
        made = Counter(e["path"].rsplit("/", 1)[-1] for e in sandbox.emulator.request_log)
        stored = {
            table: sandbox.rows(f"raw.cliniko_{table}", "8100", day)
            for table in ("appointments", "group_appointments", "attendees", "patients")
        }

    assert dict(made) == {
        "businesses": 1,
        "appointment_types": 1,
        "individual_appointments": pages(len(appointments)),
        "group_appointments": pages(len(classes)),
        "attendees": pages(len(attendees)),
        "patients": pages(len(patients)),
        "practitioners": pages(len(practitioners)),
        **({"inactive": pages(len(inactive))} if inactive else {}),
        "users": pages(len(users)),
    }
    assert made["attendees"] < len(classes)
    assert ids(stored["appointments"], "appointment_id") == appointments
    assert ids(stored["group_appointments"], "group_appointment_id") == classes
    assert ids(stored["attendees"], "attendee_id") == {a["id"] for a in attendees}
    assert ids(stored["patients"], "patient_id") == patients
    archived_classes = {c["id"] for c in account.group_appointments if c["archived_at"]}
    assert {a["booking_id"] for a in attendees} & archived_classes, "an archived class's attendees count too"
    assert {(a["cancelled_at"] is not None, a["archived_at"] is not None) for a in attendees} >= {
        (True, False),
        (False, True),
        (False, False),
    }
    meta = metadata(result)["cliniko_appointments"]
    assert (meta["rows"], meta["group_appointments"], meta["attendees"]) == (
        len(appointments),
        len(classes),
        len(attendees),
    )
    assert (
        meta["requests"] == made["individual_appointments"] + made["group_appointments"] + made["attendees"]
    )


def test_appointment_types_are_stored_archived_included_with_one_request(
    account, tmp_path, monkeypatch, dagster_instance
):
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map("8001", "Sydney CBD Physio", excluded_types=" free CONSULT ")
        result = sandbox.materialize(dagster_instance, "8001", DAY)

        stored = sandbox.rows("raw.cliniko_appointment_types", "8001")
        assert {(t["appointment_type_id"], t["appointment_type_name"]) for t in stored} == {
            (t["id"], t["name"]) for t in account.appointment_types
        }
        assert any(t["archived_at"] is not None for t in stored)  # hidden by default, asked for
        assert all(isinstance(t["appointment_type_id"], str) for t in stored)
        meta = metadata(result)["cliniko_appointment_types"]
        assert (meta["rows"], meta["requests"], meta["excluded_names"]) == (len(stored), 1, 1)
        [request] = [e for e in sandbox.emulator.request_log if e["path"].endswith("/appointment_types")]
        assert "archived_at:*" in request["query"] and "per_page=100" in request["query"]
        # Appointments carry the type id the models join on.
        appointments = sandbox.rows("raw.cliniko_appointments", "8001")
        assert appointments and {a["appointment_type_id"] for a in appointments} <= ids(
            stored, "appointment_type_id"
        )


def test_an_unknown_excluded_type_name_fails_the_partition_listing_the_real_ones(
    account, tmp_path, monkeypatch, dagster_instance
):
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        # Set on the group, inherited by the mapping: the failure says where to fix it.
        sandbox.store.update_group(
            sandbox.group_id,
            triggers=None,
            replace_triggers=False,
            properties=[
                PropertyInput(
                    "cliniko.appointment.types.excluded", "Free Consult, Free Consultation", False, "g"
                )
            ],
        )
        sandbox.map("8002", "Mobile Visits, Parramatta Physio, Honolulu Sports Medicine")
        day = date(2026, 1, 5)  # the day of this account with the most free consults at these locations
        result = sandbox.materialize(
            dagster_instance,
            "8002",
            day,
            assets=[*INGEST_ASSETS, appointment_eligibility],
            raise_on_error=False,
        )

        assert not result.success
        message = failure_message(result)
        assert "['Free Consultation']" in message and "match no Cliniko appointment type" in message
        for appointment_type in account.appointment_types:  # archived ones included: they may be named
            assert repr(appointment_type["name"]) in message
        assert f"cliniko.appointment.types.excluded on integration group {sandbox.group_id}" in message
        # The types are kept, and nothing is decided on a typo: the models never ran.
        assert len(sandbox.rows("raw.cliniko_appointment_types", "8002")) == len(account.appointment_types)
        assert not result.asset_materializations_for_node("appointment_eligibility")

        # Overridden on the mapping with names Cliniko has (odd case and spaces): the partition goes through,
        # and the free consults of the day get their reason.
        sandbox.store.update_mapping(
            "8002",
            MappingPatch(
                properties=[PropertyInput("cliniko.appointment.types.excluded", "  FREE consult", False, "m")]
            ),
        )
        assert sandbox.materialize(
            dagster_instance, "8002", day, assets=[*INGEST_ASSETS, appointment_eligibility]
        ).success
        free = {t["id"] for t in account.appointment_types if t["name"] == "Free Consult"}
        with duckdb.connect(str(sandbox.warehouse), read_only=True) as con:
            outcomes = con.execute(
                "select a.appointment_type_id, e.restriction_code from marts.appointment_eligibility e "
                "join raw.cliniko_appointments a using (business_number, partition_date, appointment_id) "
                "where e.business_number = '8002'"
            ).fetchall()
        earlier = ("customer_inactive", "invalid_record", "did_not_arrive")  # codes that come first
        assert any(type_id in free for type_id, _ in outcomes)
        for type_id, code in outcomes:
            assert code in ("excluded_type", *earlier) if type_id in free else code != "excluded_type"


def _force_group_key(sandbox, api_key: str) -> None:
    """Put a key into the registry as an old registry (before it checked shard suffixes) would have."""
    con = sqlite3.connect(sandbox.store.path)
    try:
        con.execute(
            "update group_property set property_value = ? where group_id = ? and property_key = ?",
            (sandbox.store._box.encrypt(api_key), sandbox.group_id, "cliniko.api.key"),
        )
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("case", "key_suffix", "expected"),
    [
        ("revoked", "-au4", ["401", "au4", "revoked"]),
        ("wrong shard", "-uk1", ["401", "uk1"]),
        ("unknown shard", "-zz9", ["zz9", "not a Cliniko shard"]),
    ],
)
def test_bad_key_fails_clearly_and_never_shows_the_key(
    account, tmp_path, monkeypatch, dagster_instance, case, key_suffix, expected
):
    secret = "Revoked" + "k3yMaterial" * 3 + "Q9zX"
    bad_key = secret + key_suffix  # shown as its mask, `****-au4`: the last 4 characters are the shard
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map("7101", "Sydney CBD Physio")
        _force_group_key(sandbox, bad_key)
        result = sandbox.materialize(dagster_instance, "7101", DAY, raise_on_error=False)

        assert not result.success
        message = failure_message(result)
        assert f"Mapping 7101 (Sydney CBD Physio), partition {DAY}|7101: Cliniko" in message, message
        for part in expected:
            assert part in message, (case, message)
        logged = event_log_text(dagster_instance, result.run_id)
        assert secret not in logged and bad_key not in logged
        # The scan is not vacuous: the error is in the event log, with the mask the admin API shows too.
        assert f"****{key_suffix}" in message and f"****{key_suffix}" in logged
        assert sandbox.rows("raw.cliniko_businesses", "7101") == []


def test_5xx_bursts_and_dropped_connections_give_the_fault_free_tables(
    account, baseline, tmp_path, monkeypatch, dagster_instance
):
    faults = FaultConfig(seed=29, error_rate=0.35, drop_rate=0.2)
    with cliniko_sandbox(tmp_path, monkeypatch, account, faults=faults) as sandbox:
        sandbox.map(BASELINE_MAPPING, BASELINE_LOCATIONS)
        result = sandbox.materialize(dagster_instance, BASELINE_MAPPING, DAY)

        assert sandbox.snapshot() == baseline.tables
        seen = Counter(entry["fault"] for entry in sandbox.emulator.request_log)
        assert seen["error"] >= 1 and seen["drop"] >= 1, seen
        assert sum(m["retries"] for m in metadata(result).values()) == seen["error"] + seen["drop"]


def test_malformed_page_is_retried_and_malformed_records_are_quarantined(
    account, baseline, tmp_path, monkeypatch, dagster_instance
):
    faults = FaultConfig(seed=25, malformed_json_rate=0.3, malformed_record_rate=0.2)
    with cliniko_sandbox(tmp_path, monkeypatch, account, faults=faults) as sandbox:
        sandbox.map(BASELINE_MAPPING, BASELINE_LOCATIONS)
        result = sandbox.materialize(dagster_instance, BASELINE_MAPPING, DAY)

        truncated = sum(1 for e in sandbox.emulator.request_log if e["fault"] == "malformed_json")
        assert truncated >= 1
        meta = metadata(result)
        assert sum(m["retries"] for m in meta.values()) == truncated
        quarantine = sandbox.rows("raw.cliniko_quarantine", BASELINE_MAPPING, DAY)
        held = {
            r: {q["record_id"] for q in quarantine if q["resource"] == r}
            for r in ("appointments", "group_appointments", "attendees", "patients")
        }
        assert held["appointments"] and held["patients"], quarantine
        assert all(q["reason"] and q["record"] for q in quarantine)

        # Every appointment Cliniko returned is either stored or held with a reason, never both.
        appointments = ids(sandbox.rows("raw.cliniko_appointments", BASELINE_MAPPING, DAY), "appointment_id")
        assert not appointments & held["appointments"]
        assert appointments | held["appointments"] == ids(
            baseline.tables["raw.cliniko_appointments"], "appointment_id"
        )
        # Every patient the stored visits reference is stored (maybe as missing) or held.
        referenced = (
            ids(sandbox.rows("raw.cliniko_appointments", BASELINE_MAPPING, DAY), "patient_id")
            | ids(sandbox.rows("raw.cliniko_attendees", BASELINE_MAPPING, DAY), "patient_id")
        ) - {None}
        patients = ids(sandbox.rows("raw.cliniko_patients", BASELINE_MAPPING, DAY), "patient_id")
        assert not patients & held["patients"]
        assert patients | held["patients"] == referenced

        checks = {c.asset_key.to_user_string(): c for c in result.get_asset_check_evaluations()}
        visits = ("appointments", "group_appointments", "attendees")
        for asset, resources in (("cliniko_appointments", visits), ("cliniko_patients", ("patients",))):
            check = checks[asset]
            assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
            assert check.metadata["quarantined_rows"].value == sum(len(held[r]) for r in resources)
            assert meta[asset]["quarantined"] == sum(len(held[r]) for r in resources)
        assert checks["cliniko_businesses"].passed


def test_patient_cliniko_no_longer_returns_is_stored_as_missing(account, baseline):
    """The baseline day references a deleted patient (the generator's `deleted_patients`)."""
    deleted = {p["id"] for p in account.deleted_patients}
    referenced = ids(baseline.tables["raw.cliniko_appointments"], "patient_id") | ids(
        baseline.tables["raw.cliniko_attendees"], "patient_id"
    )
    assert referenced & deleted, "the baseline day must reference a deleted patient"
    patients = baseline.tables["raw.cliniko_patients"]

    missing = {p["patient_id"] for p in patients if p["is_missing"]}
    assert missing == referenced & deleted
    assert ids(patients, "patient_id") == referenced
    assert all(p["first_name"] is None and p["email"] is None for p in patients if p["is_missing"])
    assert baseline.metadata["cliniko_patients"]["missing_patients"] == len(missing)


# -- metadata and the rate limit -----------------------------------------------------------------------------

COUNTERS = ("rows", "requests", "rate_limited_429s", "retries", "rate_limit_wait_seconds")


def test_every_materialization_reports_rows_requests_429s_retries_and_waits(baseline):
    meta = baseline.metadata
    assert set(meta) == {key.to_user_string() for a in INGEST_ASSETS for key in a.keys}
    for asset, values in meta.items():
        assert set(COUNTERS) <= set(values), asset
        table = f"raw.{asset}"
        assert values["rows"] == len(baseline.tables[table])
        assert values["rate_limited_429s"] == 0 and values["retries"] == 0
    assert sum(m["requests"] for m in meta.values()) == baseline.requests


def test_a_key_another_run_blocked_after_a_429_makes_this_run_wait_without_429s(
    account, baseline, tmp_path, monkeypatch, dagster_instance
):
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map(BASELINE_MAPPING, BASELINE_LOCATIONS)
        settings = load_settings()
        limiter = SharedRateLimiter(
            account.api_key, settings.rate_limit_dir, settings.cliniko_rate_limit_per_minute
        )
        # Another run on this key met a 429: every user of the key holds back until the block ends (long
        # enough to outlast this run's start-up on a busy machine).
        blocked_until = time.time() + 3.0
        limiter.block_until(blocked_until)
        result = sandbox.materialize(dagster_instance, BASELINE_MAPPING, DAY)

        meta = metadata(result)
        assert sandbox.emulator.request_log[0]["epoch"] >= blocked_until - 0.05
        assert meta["cliniko_businesses"]["rate_limit_wait_seconds"] > 0
        assert sum(m["rate_limited_429s"] for m in meta.values()) == 0
        assert sandbox.snapshot() == baseline.tables


def test_a_tight_cliniko_rate_limit_is_waited_out_and_stores_the_same_rows(
    account, tmp_path, monkeypatch, dagster_instance
):
    """Five businesses in five time zones make five appointment requests in a burst; 2 per 2 s lets at most
    four through in any two windows, so at least one 429 is met, waited out, and the run goes on."""
    names = (
        "Sydney CBD Physio",
        "Auckland Central Clinic",
        "London Bridge Physiotherapy",
        "Santa Monica Wellness",
        "Honolulu Sports Medicine",
    )
    with cliniko_sandbox(tmp_path, monkeypatch, account, rate_limit=2, rate_window_seconds=2.0) as sandbox:
        sandbox.map(BASELINE_MAPPING, ", ".join(names))
        result = sandbox.materialize(dagster_instance, BASELINE_MAPPING, DAY)

        meta = metadata(result)
        throttled = sum(1 for e in sandbox.emulator.request_log if e["status"] == 429)
        assert throttled >= 1
        assert sum(m["rate_limited_429s"] for m in meta.values()) == throttled
        assert meta["cliniko_appointments"]["rate_limit_wait_seconds"] > 0
        stored = sandbox.rows("raw.cliniko_appointments", BASELINE_MAPPING, DAY)
        assert ids(stored, "appointment_id") == expected_appointment_ids(
            account, business_ids(account, *names), DAY
        )
