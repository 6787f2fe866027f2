"""The SQL models of one partition on hand-built raw rows: candidates, channels, restriction codes, checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from models_fixtures import PARTITION_DATE, Warehouse

from pipeline.warehouse.models import (
    CHECKS,
    build_partition,
    run_check,
    unknown_appointment_type_names,
)

ALL_CODES = [
    "integration_beta",
    "customer_inactive",
    "invalid_record",
    "did_not_arrive",
    "excluded_type",
    "opted_out",
    "no_contact",
    "duplicate_patient",
    "cooled_off",
]


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    warehouse = Warehouse(con)
    warehouse.business("1001", "b1", "Main Street Clinic")
    yield warehouse
    built = con.execute(
        "select distinct business_number, partition_date from marts.appointment_eligibility"
        if con.execute(
            "select 1 from duckdb_tables() where table_name = 'appointment_eligibility'"
        ).fetchall()
        else "select null, null where false"
    ).fetchall()
    for business_number, partition_date in built:
        params = {"business_number": business_number, "partition_date": partition_date}
        assert {name: run_check(con, name, params) for name in CHECKS} == {name: [] for name in CHECKS}
    con.close()


def test_every_code_once_with_counts_texts_and_channels(wh: Warehouse) -> None:
    wh.patient("1001", "p-ok", preferred_first_name="Kit", first_name="Katherine", last_name="Lee")
    wh.appointment("1001", "a-ok", patient_id="p-ok", ends_at="2026-11-24 10:00")
    wh.patient("1001", "p-archived", archived=True)
    wh.appointment("1001", "a-archived", patient_id="p-archived", ends_at="2026-11-24 10:00")
    wh.appointment("1001", "a-unknown-patient", patient_id="p-never-fetched", ends_at="2026-11-24 10:00")
    wh.quarantine("1001", "patients", "p-broken")  # Cliniko returned it, but it failed validation
    wh.appointment("1001", "a-broken", patient_id="p-broken", ends_at="2026-11-24 10:00")
    wh.patient("1001", "p-dna")
    wh.appointment("1001", "a-dna", patient_id="p-dna", ends_at="2026-11-24 10:00", did_not_arrive=True)
    wh.patient("1001", "p-none", reminder_type="None")
    wh.appointment("1001", "a-none", patient_id="p-none", ends_at="2026-11-24 10:00")
    wh.patient("1001", "p-nocontact", email="not-an-email", phones=[("Home", "02 9876 5432")])
    wh.appointment("1001", "a-nocontact", patient_id="p-nocontact", ends_at="2026-11-24 10:00")
    wh.patient("1001", "p-twice")
    wh.appointment("1001", "a-twice-early", patient_id="p-twice", ends_at="2026-11-24 09:00")
    wh.appointment("1001", "a-twice-late", patient_id="p-twice", ends_at="2026-11-24 17:00")
    wh.patient("1001", "p-asked")
    wh.appointment("1001", "a-asked", patient_id="p-asked", ends_at="2026-11-24 10:00")
    wh.ledger("1001", "old-appointment", patient_id="p-asked", target_date=date(2026, 11, 20), group_id=7)

    counts = wh.build("1001", cooloff_days=30)

    assert wh.outcomes("1001") == {
        "a-archived": "customer_inactive",
        "a-asked": "cooled_off",
        "a-broken": "invalid_record",
        "a-dna": "did_not_arrive",
        "a-nocontact": "no_contact",
        "a-none": "opted_out",
        "a-ok": "eligible",
        "a-twice-early": "duplicate_patient",
        "a-twice-late": "eligible",
        "a-unknown-patient": "customer_inactive",
    }
    assert counts == {
        "candidates": 10,
        "eligible": 2,
        "integration_beta": 0,
        "customer_inactive": 2,
        "invalid_record": 1,
        "did_not_arrive": 1,
        "excluded_type": 0,
        "opted_out": 1,
        "no_contact": 1,
        "duplicate_patient": 1,
        "cooled_off": 1,
    }
    rows = wh.rows("1001")
    assert {
        key: rows["a-ok"][key]
        for key in (
            "is_eligible",
            "restriction_reason",
            "channels",
            "sms_phone",
            "email",
            "patient_name",
            "is_test",
        )
    } == {
        "is_eligible": True,
        "restriction_reason": None,
        "channels": "sms,email",
        "sms_phone": "+61412345678",
        "email": "pat@example.com",
        "patient_name": "Kit Lee",
        "is_test": False,
    }
    assert rows["a-dna"]["restriction_reason"] == "The patient did not arrive for an appointment."
    assert rows["a-archived"]["restriction_reason"] == "The customer is inactive"
    assert rows["a-asked"]["restriction_reason"] == "The customer was asked recently"


def test_beta_mapping_restricts_every_candidate_first(wh: Warehouse) -> None:
    wh.patient("1001", "p1", archived=True)
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00", did_not_arrive=True)
    wh.patient("1001", "p2")
    wh.appointment("1001", "a2", patient_id="p2", ends_at="2026-11-24 10:00")

    counts = wh.build("1001", beta=True)

    assert wh.outcomes("1001") == {"a1": "integration_beta", "a2": "integration_beta"}
    assert counts["integration_beta"] == 2 and counts["eligible"] == 0
    assert wh.rows("1001")["a1"]["restriction_reason"] == "Integration is beta"


@pytest.mark.parametrize(
    ("patient", "appointment", "expected"),
    [
        ({"merged": True}, {"did_not_arrive": True}, "customer_inactive"),
        ({"deleted": True, "reminder_type": "None"}, {}, "customer_inactive"),
        (
            {"missing": True, "first_name": None, "last_name": None},
            {"did_not_arrive": True},
            "customer_inactive",
        ),
        ({"reminder_type": "None"}, {"did_not_arrive": True}, "did_not_arrive"),
        ({"reminder_type": None, "email": None, "phones": None}, {}, "opted_out"),
        ({"reminder_type": "SMS", "phones": [("Home", "0412 345 678")]}, {}, "no_contact"),
    ],
)
def test_precedence_between_codes(wh: Warehouse, patient: dict, appointment: dict, expected: str) -> None:
    wh.patient("1001", "p1", **patient)
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00", **appointment)
    wh.build("1001")
    assert wh.outcomes("1001") == {"a1": expected}


# -- appointment types excluded by `cliniko.appointment.types.excluded` --------------------------------------


def _types(wh: Warehouse) -> None:
    wh.appointment_type("1001", "t-free", "  Free Consult ")  # Cliniko's own name, with stray spaces
    wh.appointment_type("1001", "t-standard", "Standard Consultation")
    wh.appointment_type("1001", "t-promo", "Winter Promo", archived=True)  # archived since it was booked
    wh.appointment_type("1002", "t-other", "Pilates Class")  # another mapping's account


def test_excluded_types_match_trimmed_and_case_insensitively(wh: Warehouse) -> None:
    _types(wh)
    for patient, appointment, appointment_type in (
        ("p1", "a-free", "t-free"),
        ("p2", "a-standard", "t-standard"),
        ("p3", "a-promo", "t-promo"),
        ("p4", "a-untyped", None),
    ):
        wh.patient("1001", patient)
        wh.appointment(
            "1001",
            appointment,
            patient_id=patient,
            ends_at="2026-11-24 10:00",
            appointment_type_id=appointment_type,
        )

    counts = wh.build("1001", excluded_appointment_types=["FREE consult  ", " winter PROMO", "pilates class"])

    assert wh.outcomes("1001") == {
        "a-free": "excluded_type",
        "a-promo": "excluded_type",
        "a-standard": "eligible",
        "a-untyped": "eligible",
    }
    assert counts["excluded_type"] == 2 and counts["eligible"] == 2
    assert wh.rows("1001")["a-free"]["restriction_reason"] == "The appointment type is excluded"


def test_no_excluded_types_exclude_nothing(wh: Warehouse) -> None:
    _types(wh)
    wh.patient("1001", "p1")
    wh.appointment(
        "1001", "a-free", patient_id="p1", ends_at="2026-11-24 10:00", appointment_type_id="t-free"
    )

    assert wh.build("1001")["excluded_type"] == 0
    assert wh.outcomes("1001") == {"a-free": "eligible"}
    wh.build("1001", excluded_appointment_types=["Free Consult"])
    assert wh.outcomes("1001") == {"a-free": "excluded_type"}
    wh.build("1001", excluded_appointment_types=[])  # the property removed: the next build sends again
    assert wh.outcomes("1001") == {"a-free": "eligible"}


@pytest.mark.parametrize(
    ("patient", "appointment", "expected"),
    [
        ({"archived": True}, {}, "customer_inactive"),
        ({}, {"did_not_arrive": True}, "did_not_arrive"),
        ({"reminder_type": "None"}, {}, "excluded_type"),
        ({"reminder_type": "SMS", "phones": [("Home", "0412 345 678")]}, {}, "excluded_type"),
    ],
)
def test_excluded_type_comes_after_did_not_arrive_and_before_opted_out(
    wh: Warehouse, patient: dict, appointment: dict, expected: str
) -> None:
    _types(wh)
    wh.patient("1001", "p1", **patient)
    wh.appointment(
        "1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00", appointment_type_id="t-free", **appointment
    )
    wh.build("1001", excluded_appointment_types=["Free Consult"])
    assert wh.outcomes("1001") == {"a1": expected}


def test_an_excluded_visit_never_makes_the_patients_other_visit_a_duplicate(wh: Warehouse) -> None:
    """SPEC §4: duplicate_patient means a later-ending *eligible* appointment was selected. The free consult
    ends later the same day, but it is not eligible, so the treatment before it is the one that is asked
    about; the consult keeps its own reason. (The fixture's teardown runs every data check too.)"""
    _types(wh)
    wh.patient("1001", "p1")
    wh.appointment(
        "1001", "a-treatment", patient_id="p1", ends_at="2026-11-24 09:00", appointment_type_id="t-standard"
    )
    wh.appointment(
        "1001", "a-consult", patient_id="p1", ends_at="2026-11-24 17:00", appointment_type_id="t-free"
    )

    wh.build("1001", excluded_appointment_types=["free consult"])

    assert wh.outcomes("1001") == {"a-consult": "excluded_type", "a-treatment": "eligible"}
    assert wh.claims() == {("1001", "a-treatment"): "pending"}


def test_unknown_type_names_are_found_by_the_models_own_rule(wh: Warehouse) -> None:
    _types(wh)
    wh.appointment_type("1001", "t-foot", "Fußpflege")
    unknown, existing = unknown_appointment_type_names(
        wh.con, "1001", ["free CONSULT", "Free Consul", "Pilates Class", "FUSSPFLEGE", "fußPFLEGE"]
    )
    # SQL lower() keeps "ß" (Python's casefold would make it "ss"): the check agrees with the model, which
    # would exclude nothing for "FUSSPFLEGE". Another mapping's types are not this account's.
    assert unknown == ["Free Consul", "Pilates Class", "FUSSPFLEGE"]
    assert existing == ["  Free Consult ", "Fußpflege", "Standard Consultation", "Winter Promo"]
    assert unknown_appointment_type_names(wh.con, "1001", []) == ([], [])


@pytest.mark.parametrize(
    ("reminder_type", "channels", "sms_phone", "email"),
    [
        ("SMS & Email", "sms,email", "+61412345678", "pat@example.com"),
        ("SMS", "sms", "+61412345678", None),
        ("Email", "email", None, "pat@example.com"),
        (" sms & email ", "sms,email", "+61412345678", "pat@example.com"),
        ("None", None, None, None),
        (None, None, None, None),
        ("Carrier pigeon", None, None, None),
    ],
)
def test_channels_follow_reminder_type(
    wh: Warehouse, reminder_type: str | None, channels: str | None, sms_phone: str | None, email: str | None
) -> None:
    wh.patient("1001", "p1", reminder_type=reminder_type)
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.build("1001")
    row = wh.rows("1001")["a1"]
    assert (row["channels"], row["sms_phone"], row["email"]) == (channels, sms_phone, email)
    assert row["restriction_code"] == (None if channels else "opted_out")


EMAIL_40 = "a" * 28 + "@example.com"
EMAIL_41 = "a" * 29 + "@example.com"
DEFAULT = ("sms,email", "+61412345678", "pat@example.com")


@pytest.mark.parametrize(
    ("patient", "expected"),
    [
        (
            {"phones": [("Home", "0298765432"), ("Mobile", "61444444444")]},
            ("sms,email", "+61444444444", DEFAULT[2]),
        ),
        (
            {"phones": [("Mobile", "garbage"), ("Mobile", "+64 21 123 4567")]},
            ("sms,email", "+64211234567", DEFAULT[2]),
        ),
        ({"phones": [("Mobile", "02 9876 5432")]}, ("email", None, DEFAULT[2])),  # a landline typed as Mobile
        ({"phones": [("Work", "0412 345 678")]}, ("email", None, DEFAULT[2])),
        ({"phones": None}, ("email", None, DEFAULT[2])),
        ({"email": EMAIL_40}, ("sms,email", DEFAULT[1], EMAIL_40)),
        ({"email": EMAIL_41}, ("sms", DEFAULT[1], None)),
        ({"email": "two@@example.com"}, ("sms", DEFAULT[1], None)),
        ({"email": "no-domain@"}, ("sms", DEFAULT[1], None)),
        ({"email": "  spaced@example.com  "}, ("sms,email", DEFAULT[1], "spaced@example.com")),
    ],
)
def test_unusable_addresses_drop_their_channel(wh: Warehouse, patient: dict, expected: tuple) -> None:
    wh.patient("1001", "p1", **patient)
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.build("1001")
    row = wh.rows("1001")["a1"]
    assert (row["channels"], row["sms_phone"], row["email"]) == expected
    assert row["is_eligible"]


def test_mobile_numbers_are_read_in_the_business_country(wh: Warehouse) -> None:
    wh.business("2002", "us1", "Bay Clinic", tz="America/Los_Angeles", country_code="US")
    wh.patient("2002", "p1", phones=[("Mobile", "(415) 555-2671")])
    wh.appointment(
        "2002",
        "a1",
        patient_id="p1",
        ends_at="2026-11-24 10:00",
        tz="America/Los_Angeles",
        cliniko_business_id="us1",
    )
    wh.build("2002", location_names=["Bay Clinic"])
    assert wh.rows("2002")["a1"]["sms_phone"] == "+14155552671"


@pytest.mark.parametrize("fetch_delay_days", [0, 1, 2])
def test_fetch_delay_moves_the_target_day(wh: Warehouse, fetch_delay_days: int) -> None:
    wh.patient("1001", "p1")
    for days_before in (0, 1, 2, 3):
        day = PARTITION_DATE - timedelta(days=days_before)
        wh.appointment("1001", f"a-{days_before}", patient_id="p1", ends_at=f"{day} 12:00")

    wh.build("1001", fetch_delay_days=fetch_delay_days)

    assert wh.outcomes("1001") == {f"a-{fetch_delay_days}": "eligible"}
    assert wh.rows("1001")[f"a-{fetch_delay_days}"]["target_date"] == PARTITION_DATE - timedelta(
        days=fetch_delay_days
    )


@pytest.mark.parametrize(
    ("tz", "inside", "outside"),
    [
        # UTC+14: local 00:00..23:59 of 24 November is 10:00 on the 23rd .. 09:59 on the 24th in UTC.
        (
            "Pacific/Kiritimati",
            ["2026-11-24 00:00:01", "2026-11-24 23:59:59"],
            ["2026-11-23 23:59:59", "2026-11-25 00:00:00"],
        ),
        # UTC-10: local 24 November runs until 09:59:59 UTC on the 25th.
        (
            "Pacific/Honolulu",
            ["2026-11-24 00:00:00", "2026-11-24 23:59:59"],
            ["2026-11-23 23:59:59", "2026-11-25 00:00:01"],
        ),
        # UTC+13 in November (daylight saving).
        (
            "Pacific/Auckland",
            ["2026-11-24 00:00:00", "2026-11-24 23:59:00"],
            ["2026-11-23 23:59:00", "2026-11-25 00:00:00"],
        ),
        (
            None,
            ["2026-11-24 00:00:00", "2026-11-24 23:59:59"],
            ["2026-11-23 23:59:59", "2026-11-25 00:00:00"],
        ),
    ],
)
def test_target_day_is_local_to_the_business(
    wh: Warehouse, tz: str | None, inside: list[str], outside: list[str]
) -> None:
    wh.business("3003", "far", "Far Clinic", tz=tz)
    wh.patient("3003", "p1")
    for i, local in enumerate(inside + outside):
        wh.appointment(
            "3003",
            f"{'in' if local in inside else 'out'}-{i}",
            patient_id="p1",
            ends_at=local,
            tz=tz or "UTC",
            cliniko_business_id="far",
        )
    # A run far enough after the day everywhere, so only the local day decides.
    wh.build("3003", location_names=["Far Clinic"], run_started_at=datetime(2026, 11, 27, tzinfo=UTC))
    assert sorted(wh.outcomes("3003")) == ["in-0", "in-1"]


def test_appointments_not_yet_ended_when_the_run_started_are_not_candidates(wh: Warehouse) -> None:
    wh.business("4004", "hnl", "Honolulu Clinic", tz="Pacific/Honolulu")
    wh.patient("4004", "p1")
    wh.patient("4004", "p2")
    wh.appointment(
        "4004",
        "ended",
        patient_id="p1",
        ends_at="2026-11-24 13:00",
        tz="Pacific/Honolulu",
        cliniko_business_id="hnl",
    )
    wh.appointment(
        "4004",
        "later",
        patient_id="p2",
        ends_at="2026-11-24 23:30",
        tz="Pacific/Honolulu",
        cliniko_business_id="hnl",
    )
    # 14:00 in Honolulu on the target day itself (a fetch delay of 0 run late in the local day).
    wh.build("4004", location_names=["Honolulu Clinic"], run_started_at=datetime(2026, 11, 25, 0, tzinfo=UTC))
    assert wh.outcomes("4004") == {"ended": "eligible"}


def test_cancelled_archived_and_deleted_appointments_are_not_candidates(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "kept", patient_id="p1", ends_at="2026-11-24 08:00")
    wh.appointment("1001", "cancelled", patient_id="p1", ends_at="2026-11-24 09:00", cancelled=True)
    wh.appointment("1001", "archived", patient_id="p1", ends_at="2026-11-24 10:00", archived=True)
    wh.appointment("1001", "deleted", patient_id="p1", ends_at="2026-11-24 11:00", deleted=True)
    counts = wh.build("1001")
    assert wh.outcomes("1001") == {"kept": "eligible"}
    assert counts["candidates"] == 1


def test_location_names_match_trimmed_and_case_insensitively(wh: Warehouse) -> None:
    wh.business("5005", "x1", "  North  Side Physio ")
    wh.business("5005", "x2", "SOUTH clinic")
    wh.business("5005", "x3", "West Clinic")
    wh.patient("5005", "p1")
    wh.patient("5005", "p2")
    wh.patient("5005", "p3")
    for appointment_id, business_id, patient_id in (("n", "x1", "p1"), ("s", "x2", "p2"), ("w", "x3", "p3")):
        wh.appointment(
            "5005",
            appointment_id,
            patient_id=patient_id,
            ends_at="2026-11-24 10:00",
            cliniko_business_id=business_id,
        )
    wh.build("5005", location_names=["north  side physio", "  South Clinic  ", "East Clinic"])
    assert wh.outcomes("5005") == {"n": "eligible", "s": "eligible"}
    assert wh.rows("5005")["s"]["location_name"] == "SOUTH clinic"


def test_latest_ending_appointment_of_a_patient_wins(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-morning", patient_id="p1", ends_at="2026-11-24 09:00")
    wh.appointment("1001", "a-evening-dna", patient_id="p1", ends_at="2026-11-24 19:00", did_not_arrive=True)
    wh.appointment("1001", "a-afternoon", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.build("1001")
    # The did-not-arrive appointment is not eligible, so it cannot take the patient's one request.
    assert wh.outcomes("1001") == {
        "a-morning": "duplicate_patient",
        "a-afternoon": "eligible",
        "a-evening-dna": "did_not_arrive",
    }


def test_duplicate_is_decided_before_cool_off(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-early", patient_id="p1", ends_at="2026-11-24 09:00")
    wh.appointment("1001", "a-late", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.ledger("9009", "elsewhere", patient_id="p1", target_date=date(2026, 11, 22), group_id=7)
    wh.build("1001", cooloff_days=7)
    assert wh.outcomes("1001") == {"a-early": "duplicate_patient", "a-late": "cooled_off"}


def test_re_run_after_the_sink_keeps_the_sent_appointment_selected(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-first", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.build("1001", cooloff_days=30)
    assert wh.claims() == {("1001", "a-first"): "pending"}  # the build claimed it; the sink posts it
    wh.con.execute("update sink.review_request_ledger set status = 'sent'")
    # Cliniko later reports a later appointment of the same patient on that day; the partition is re-run.
    wh.appointment("1001", "a-later", patient_id="p1", ends_at="2026-11-24 18:00")
    wh.build("1001", cooloff_days=30)
    assert wh.outcomes("1001") == {"a-first": "eligible", "a-later": "duplicate_patient"}
    assert wh.claims() == {("1001", "a-first"): "sent"}


def test_re_run_of_a_test_mapping_keeps_its_dry_run(wh: Warehouse) -> None:
    # A test mapping's dry run is what a real mapping's sent request is: the appointment's settled outcome.
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-first", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.build("1001", cooloff_days=30, test=True)
    assert wh.claims() == {("1001", "a-first"): "dry_run"}
    # Later, another mapping of the group asks the same patient about a day inside the cool-off (a dry run
    # never cools anyone off, so it could); then the test mapping's partition is re-run.
    wh.ledger("1002", "elsewhere", patient_id="p1", target_date=date(2026, 11, 25), group_id=7)
    wh.build("1001", cooloff_days=30, test=True)
    assert wh.outcomes("1001") == {"a-first": "eligible"}
    # And a later appointment of the patient that day, reported since, does not take their one request.
    wh.appointment("1001", "a-later", patient_id="p1", ends_at="2026-11-24 18:00")
    wh.build("1001", cooloff_days=30, test=True)
    assert wh.outcomes("1001") == {"a-first": "eligible", "a-later": "duplicate_patient"}
    assert wh.claims() == {("1001", "a-first"): "dry_run", ("1002", "elsewhere"): "sent"}


def test_of_two_dry_runs_of_a_patient_the_re_run_keeps_one(wh: Warehouse) -> None:
    # A partition built before dry runs kept their outcome: a run before the day closed dry-ran a-first, a
    # later one a-later too. Its re-run keeps the later one and withdraws the other: one request a patient.
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-first", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.appointment("1001", "a-later", patient_id="p1", ends_at="2026-11-24 18:00")
    for appointment in ("a-first", "a-later"):
        wh.ledger(
            "1001", appointment, patient_id="p1", target_date=PARTITION_DATE, group_id=7, status="dry_run"
        )
    wh.build("1001", cooloff_days=30, test=True)
    assert wh.outcomes("1001") == {"a-first": "duplicate_patient", "a-later": "eligible"}
    assert wh.claims() == {("1001", "a-later"): "dry_run"}


def test_re_run_after_birdeye_refused_a_request_keeps_that_outcome(wh: Warehouse) -> None:
    # `failed` is settled (SPEC §5: not retried by itself; an operator's `requeue` can): a re-run neither
    # turns it into another outcome nor asks the patient again about a later appointment of the day.
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-first", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.build("1001", cooloff_days=30)
    wh.con.execute("update sink.review_request_ledger set status = 'failed'")
    wh.ledger("1002", "elsewhere", patient_id="p1", target_date=date(2026, 11, 25), group_id=7)
    wh.appointment("1001", "a-later", patient_id="p1", ends_at="2026-11-24 18:00")
    wh.build("1001", cooloff_days=30)
    assert wh.outcomes("1001") == {"a-first": "eligible", "a-later": "duplicate_patient"}
    assert wh.claims() == {("1001", "a-first"): "failed", ("1002", "elsewhere"): "sent"}


@pytest.mark.parametrize(
    ("ledger", "cooloff_days", "expected"),
    [
        ({"business_number": "1002", "target_date": date(2026, 11, 20)}, 5, "cooled_off"),  # other mapping
        ({"business_number": "1002", "target_date": date(2026, 11, 28)}, 5, "cooled_off"),  # either side
        ({"business_number": "1002", "target_date": date(2026, 11, 20)}, 4, "eligible"),  # exactly 4 days
        ({"business_number": "1002", "target_date": date(2026, 11, 20)}, 0, "eligible"),  # cool-off off
        ({"business_number": "1002", "target_date": date(2026, 11, 20), "group_id": 8}, 5, "eligible"),
        ({"business_number": "1002", "target_date": date(2026, 11, 20), "status": "failed"}, 5, "eligible"),
        ({"business_number": "1002", "target_date": date(2026, 11, 20), "status": "dry_run"}, 5, "eligible"),
        (
            {"business_number": "1002", "target_date": date(2026, 11, 20), "status": "pending"},
            5,
            "cooled_off",
        ),
        (
            {"business_number": "1002", "target_date": date(2026, 11, 20), "status": "sending"},
            5,
            "cooled_off",
        ),
        (
            {"business_number": "1002", "target_date": date(2026, 11, 20), "status": "uncertain"},
            5,
            "cooled_off",
        ),
        (
            {"business_number": "1001", "target_date": date(2026, 11, 24), "appointment_id": "a1"},
            5,
            "eligible",
        ),
        (
            {"business_number": "1002", "target_date": date(2026, 11, 24), "appointment_id": "a1"},
            5,
            "cooled_off",
        ),
        ({"business_number": "1001", "target_date": date(2026, 11, 23), "patient_id": "p2"}, 5, "eligible"),
    ],
)
def test_cool_off_across_the_mappings_of_a_group(
    wh: Warehouse, ledger: dict, cooloff_days: int, expected: str
) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.ledger(
        ledger["business_number"],
        ledger.get("appointment_id", "earlier"),
        patient_id=ledger.get("patient_id", "p1"),
        target_date=ledger["target_date"],
        group_id=ledger.get("group_id", 7),
        status=ledger.get("status", "sent"),
    )
    wh.build("1001", group_id=7, cooloff_days=cooloff_days)
    assert wh.outcomes("1001") == {"a1": expected}


def test_cool_off_between_two_mappings_built_in_turn(wh: Warehouse) -> None:
    wh.business("1002", "b1", "Main Street Clinic")
    wh.patient("1001", "p1")
    wh.patient("1002", "p1", partition_date=date(2026, 11, 26))
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.appointment(
        "1002", "a2", patient_id="p1", ends_at="2026-11-24 10:00", partition_date=date(2026, 11, 26)
    )
    wh.build("1001", cooloff_days=3)
    wh.build("1002", partition_date=date(2026, 11, 26), fetch_delay_days=2, cooloff_days=3)
    assert wh.outcomes("1001") == {"a1": "eligible"}
    assert wh.outcomes("1002", date(2026, 11, 26)) == {"a2": "cooled_off"}
    # The first build's claim (pending, not yet posted) is what cooled the second one off.
    assert wh.claims() == {("1001", "a1"): "pending"}


def test_test_mapping_is_evaluated_and_marked(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.patient("1001", "p2", reminder_type="None")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.appointment("1001", "a2", patient_id="p2", ends_at="2026-11-24 10:00")
    wh.build("1001", test=True)
    assert wh.outcomes("1001") == {"a1": "eligible", "a2": "opted_out"}
    assert {row["is_test"] for row in wh.rows("1001").values()} == {True}


def test_build_replaces_only_its_own_partition_and_is_idempotent(wh: Warehouse) -> None:
    wh.business("1002", "b1", "Main Street Clinic")
    for business_number, partition_date in (
        ("1001", PARTITION_DATE),
        ("1002", PARTITION_DATE),
        ("1001", date(2026, 11, 25)),
    ):
        wh.patient(business_number, "p1", partition_date=partition_date)
        wh.appointment(
            business_number,
            "a1",
            patient_id="p1",
            partition_date=partition_date,
            ends_at=f"{partition_date} 10:00",
        )
        wh.build(business_number, partition_date=partition_date)
    before = wh.con.execute("select * from marts.appointment_eligibility order by all").fetchall()

    first = wh.build("1001")
    second = wh.build("1001")

    assert first == second
    assert wh.con.execute("select * from marts.appointment_eligibility order by all").fetchall() == before
    wh.con.execute("update raw.cliniko_patients set reminder_type = 'None' where business_number = '1001'")
    wh.build("1001")
    assert wh.outcomes("1001") == {"a1": "opted_out"}
    assert wh.outcomes("1001", date(2026, 11, 25)) == {"a1": "eligible"}
    assert wh.outcomes("1002") == {"a1": "eligible"}


def test_failed_build_leaves_the_previous_rows(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.build("1001")
    # A view the build reads, gone (ensure_models recreates what changed, not what was dropped): it fails.
    wh.con.execute("drop view staging.stg_cliniko__patients")
    with pytest.raises(duckdb.Error):
        wh.build("1001")
    assert wh.outcomes("1001") == {"a1": "eligible"}


def test_parameters_are_checked(wh: Warehouse) -> None:
    with pytest.raises(TypeError, match="location_names"):
        wh.build("1001", location_names="Main Street Clinic")
    with pytest.raises(ValueError, match="timezone-aware"):
        wh.build("1001", run_started_at=datetime(2026, 11, 26))
    with pytest.raises(ValueError, match="unknown check"):
        run_check(wh.con, "no_such_check", {})


def test_a_location_name_is_data_not_sql(wh: Warehouse) -> None:
    wh.business("1001", "b2", "O'Brien's Clinic'); drop table raw.cliniko_patients; --")
    wh.patient("1001", "p1")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00", cliniko_business_id="b2")
    wh.build("1001", location_names=["o'brien's clinic'); drop table raw.cliniko_patients; --"])
    assert wh.outcomes("1001") == {"a1": "eligible"}


BROKEN_ROWS = {
    "candidate_has_one_outcome": "insert into marts.appointment_eligibility "
    "select * replace (true as is_eligible) from marts.appointment_eligibility "
    "where appointment_id = 'a-dna'",
    "restriction_codes_known": "update marts.appointment_eligibility set restriction_code = 'made_up' "
    "where appointment_id = 'a-dna'",
    "one_eligible_row_per_patient": "update marts.appointment_eligibility set restriction_code = null, "
    "restriction_reason = null, is_eligible = true where appointment_id = 'a-dup'",
    "counts_reconcile": "update marts.appointment_eligibility set restriction_code = null "
    "where appointment_id = 'a-dna'",
    # 60 eligible candidates the day before, then 25 more opted out today: opted_out jumps from 0 % to 89 %.
    "restriction_shares_stable": "insert into marts.appointment_eligibility "
    "select e.* replace (partition_date - 1 as partition_date, appointment_id || r.range as appointment_id) "
    "from marts.appointment_eligibility as e, range(60) as r where appointment_id = 'a-ok'; "
    "insert into marts.appointment_eligibility "
    "select e.* replace (appointment_id || r.range as appointment_id, "
    "'opted_out' as restriction_code, 'The customer opted out of email and SMS' as restriction_reason) "
    "from marts.appointment_eligibility as e, range(25) as r where appointment_id = 'a-dna'",
}


@pytest.mark.parametrize("check", sorted(BROKEN_ROWS))
def test_each_check_catches_its_breakage(tmp_path: Path, check: str) -> None:
    con = duckdb.connect(str(tmp_path / "broken.duckdb"))
    wh = Warehouse(con)
    wh.business("1001", "b1", "Main Street Clinic")
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-ok", patient_id="p1", ends_at="2026-11-24 15:00")
    wh.appointment("1001", "a-dup", patient_id="p1", ends_at="2026-11-24 09:00")
    wh.appointment("1001", "a-dna", patient_id="p1", ends_at="2026-11-24 10:00", did_not_arrive=True)
    wh.build("1001")
    params = {"business_number": "1001", "partition_date": PARTITION_DATE}
    assert all(run_check(con, name, params) == [] for name in CHECKS)

    con.execute(BROKEN_ROWS[check])

    assert run_check(con, check, params) != []
    assert set(CHECKS) == set(BROKEN_ROWS)


def test_build_partition_accepts_an_iso_date_string(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    counts = build_partition(
        wh.con,
        business_number="1001",
        partition_date="2026-11-24",
        group_id=7,
        target_date=date(2026, 11, 24),
        cooloff_days=0,
        location_names=("Main Street Clinic",),
        beta=False,
        test=False,
        run_id="run-1",
        run_started_at=datetime(2026, 11, 26, tzinfo=UTC),
        close_at=datetime(2026, 11, 25, 13, tzinfo=UTC),
    )
    assert counts["eligible"] == 1


def test_a_pending_claim_the_new_decision_no_longer_makes_is_withdrawn(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.patient("1001", "p2")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.appointment("1001", "a2", patient_id="p2", ends_at="2026-11-24 10:00")
    wh.build("1001")
    assert wh.claims() == {("1001", "a1"): "pending", ("1001", "a2"): "pending"}
    wh.con.execute("update sink.review_request_ledger set status = 'sent' where appointment_id = 'a2'")
    # Posting failed before anything reached Birdeye; by the re-run both patients were archived in Cliniko.
    wh.con.execute("update raw.cliniko_patients set archived_at = now()")
    wh.build("1001")
    # a1 is now restricted and its claim withdrawn; a2's request went out, and that outcome stands.
    assert wh.outcomes("1001") == {"a1": "customer_inactive", "a2": "eligible"}
    assert wh.claims() == {("1001", "a2"): "sent"}


# -- classes: group appointments and their attendees ---------------------------------------------------------


def test_attendees_arrived_did_not_arrive_unmarked_cancelled_and_archived(wh: Warehouse) -> None:
    wh.group_appointment("1001", "g1", ends_at="2026-11-24 18:00")
    for name, options in {
        "arrived": {"arrived": True},
        "dna": {"arrived": False},
        "unmarked": {"arrived": None},
        "cancelled": {"arrived": None, "cancelled": True},
        "archived": {"arrived": True, "archived": True},
    }.items():
        wh.patient("1001", f"p-{name}")
        wh.attendee("1001", name, group_appointment_id="g1", patient_id=f"p-{name}", **options)

    counts = wh.build("1001")

    # Cancelled and archived attendees are no candidates; attendance never recorded counts as attended.
    assert wh.outcomes("1001") == {
        "attendee-arrived": "eligible",
        "attendee-dna": "did_not_arrive",
        "attendee-unmarked": "eligible",
    }
    assert counts["candidates"] == 3 and counts["did_not_arrive"] == 1
    rows = wh.rows("1001")
    assert {row["appointment_kind"] for row in rows.values()} == {"group"}
    assert (
        rows["attendee-arrived"]["appointment_ends_at"]
        == wh.con.execute(
            "select ends_at from raw.cliniko_group_appointments where group_appointment_id = 'g1'"
        ).fetchone()[0]
    )
    assert wh.claims() == {("1001", "attendee-arrived"): "pending", ("1001", "attendee-unmarked"): "pending"}
    views = wh.con.execute(
        "select r.appointment_id, r.appointment_kind, q.appointment_kind "
        "from analytics.restriction_reasons r left join analytics.review_requests q using (appointment_id) "
        "order by 1"
    ).fetchall()
    assert views == [
        ("attendee-arrived", "group", "group"),
        ("attendee-dna", "group", None),
        ("attendee-unmarked", "group", "group"),
    ]


@pytest.mark.parametrize("class_state", ["archived", "deleted"])
def test_attendees_of_an_archived_or_deleted_class_are_not_candidates(
    wh: Warehouse, class_state: str
) -> None:
    wh.group_appointment("1001", "g-gone", ends_at="2026-11-24 18:00", **{class_state: True})
    wh.group_appointment("1001", "g-on", ends_at="2026-11-24 19:00")
    wh.patient("1001", "p1")
    wh.patient("1001", "p2")
    wh.attendee("1001", "in-gone", group_appointment_id="g-gone", patient_id="p1")
    wh.attendee("1001", "in-on", group_appointment_id="g-on", patient_id="p2")

    wh.build("1001")

    assert wh.outcomes("1001") == {"attendee-in-on": "eligible"}


def test_a_class_takes_the_business_day_and_run_start_rules_of_appointments(wh: Warehouse) -> None:
    wh.business("1001", "b-other", "Another Clinic")
    wh.group_appointment("1001", "g-other", ends_at="2026-11-24 10:00", cliniko_business_id="b-other")
    wh.group_appointment("1001", "g-next-day", ends_at="2026-11-25 00:30")
    wh.group_appointment("1001", "g-late", ends_at=datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    wh.group_appointment("1001", "g-ok", ends_at="2026-11-24 23:30")
    for group in ("g-other", "g-next-day", "g-late", "g-ok"):
        wh.patient("1001", f"p-{group}")
        wh.attendee("1001", group, group_appointment_id=group, patient_id=f"p-{group}")

    wh.build("1001")

    assert wh.outcomes("1001") == {"attendee-g-ok": "eligible"}


def test_a_patient_with_an_individual_and_a_group_visit_the_same_day_is_asked_once(wh: Warehouse) -> None:
    wh.patient("1001", "p-both")
    wh.appointment("1001", "a-morning", patient_id="p-both", ends_at="2026-11-24 09:00")
    wh.group_appointment("1001", "g-evening", ends_at="2026-11-24 18:00")
    wh.attendee("1001", "evening", group_appointment_id="g-evening", patient_id="p-both")
    wh.patient("1001", "p-class-first")
    wh.group_appointment("1001", "g-morning", ends_at="2026-11-24 08:00")
    wh.attendee("1001", "morning", group_appointment_id="g-morning", patient_id="p-class-first")
    wh.appointment("1001", "a-evening", patient_id="p-class-first", ends_at="2026-11-24 19:00")

    counts = wh.build("1001")

    # The latest-ending visit wins, whatever its kind; one request per patient (check one_eligible_row_...).
    assert wh.outcomes("1001") == {
        "a-evening": "eligible",
        "a-morning": "duplicate_patient",
        "attendee-evening": "eligible",
        "attendee-morning": "duplicate_patient",
    }
    assert counts["eligible"] == 2 and counts["duplicate_patient"] == 2
    kinds = {key: row["appointment_kind"] for key, row in wh.rows("1001").items()}
    assert kinds == {
        "a-evening": "individual",
        "a-morning": "individual",
        "attendee-evening": "group",
        "attendee-morning": "group",
    }


def test_a_class_attendee_asked_yesterday_is_cooled_off_today_and_vice_versa(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.group_appointment("1001", "g1", ends_at="2026-11-24 18:00")
    wh.attendee("1001", "x1", group_appointment_id="g1", patient_id="p1")
    wh.ledger("1001", "a-yesterday", patient_id="p1", target_date=date(2026, 11, 23), group_id=7)

    wh.build("1001", cooloff_days=7)

    assert wh.outcomes("1001") == {"attendee-x1": "cooled_off"}


def test_an_excluded_type_applies_to_a_class(wh: Warehouse) -> None:
    wh.appointment_type("1001", "t-pilates", "Pilates Class")
    wh.appointment_type("1001", "t-standard", "Standard Consultation")
    wh.group_appointment("1001", "g-pilates", ends_at="2026-11-24 18:00", appointment_type_id="t-pilates")
    wh.patient("1001", "p-class")
    wh.attendee("1001", "in-class", group_appointment_id="g-pilates", patient_id="p-class")
    wh.patient("1001", "p-both")
    wh.attendee("1001", "both-class", group_appointment_id="g-pilates", patient_id="p-both")
    wh.attendee("1001", "dna", group_appointment_id="g-pilates", patient_id="p-class", arrived=False)
    wh.appointment(
        "1001", "a-both", patient_id="p-both", ends_at="2026-11-24 09:00", appointment_type_id="t-standard"
    )

    counts = wh.build("1001", excluded_appointment_types=["  PILATES class"])

    # The excluded class is screened out like a did-not-arrive visit: it never makes the earlier individual
    # appointment of the same patient a duplicate, and did_not_arrive comes first.
    assert wh.outcomes("1001") == {
        "a-both": "eligible",
        "attendee-both-class": "excluded_type",
        "attendee-dna": "did_not_arrive",
        "attendee-in-class": "excluded_type",
    }
    assert counts["excluded_type"] == 2


def test_a_warehouse_built_before_classes_gets_appointment_kind_individual(wh: Warehouse) -> None:
    wh.patient("1001", "p1")
    wh.appointment("1001", "a-old", patient_id="p1", ends_at="2026-11-24 10:00")
    wh.build("1001")
    wh.con.execute("alter table marts.appointment_eligibility drop column appointment_kind")  # as it was
    assert "appointment_kind" not in wh.rows("1001")["a-old"]
    wh.con.execute("create or replace view analytics.restriction_reasons as select 1 as x")  # the old view

    wh.build("1001", partition_date=PARTITION_DATE + timedelta(days=1))

    # The earlier partition's rows, all individual appointments, read `individual`; the new build has its own.
    assert wh.rows("1001")["a-old"]["appointment_kind"] == "individual"
    assert wh.con.execute(
        "select distinct appointment_kind from analytics.restriction_reasons"
    ).fetchall() == [("individual",)]
