"""The practitioner of each candidate on hand-built raw rows: who is named, whose email Birdeye is sent, and
that a practitioner never changes whether a patient is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from models_fixtures import PARTITION_DATE, Warehouse

from pipeline.warehouse.models import CHECKS, run_check

PRACTITIONER_COLUMNS = (
    "practitioner_id",
    "practitioner_name",
    "practitioner_first_name",
    "practitioner_last_name",
    "practitioner_email",
)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    warehouse = Warehouse(con)
    warehouse.business("1001", "b1", "Main Street Clinic")
    yield warehouse
    params = {"business_number": "1001", "partition_date": PARTITION_DATE}
    assert {name: run_check(con, name, params) for name in CHECKS} == {name: [] for name in CHECKS}
    con.close()


def practitioners_of(wh: Warehouse) -> dict[str, tuple]:
    """appointment_id -> (practitioner_id, name, first name, last name, email) of the mart."""
    return {
        appointment: tuple(row[c] for c in PRACTITIONER_COLUMNS)
        for appointment, row in wh.rows("1001").items()
    }


def visit(wh: Warehouse, appointment_id: str, practitioner_id: str | None, **patient: object) -> None:
    patient_id = f"p-{appointment_id}"
    wh.patient("1001", patient_id, **patient)  # type: ignore[arg-type]
    wh.appointment(
        "1001",
        appointment_id,
        patient_id=patient_id,
        ends_at="2026-11-24 10:00",
        practitioner_id=practitioner_id,
    )


def test_each_candidate_names_its_practitioner_and_only_a_usable_email_is_kept(wh: Warehouse) -> None:
    wh.practitioner(
        "1001", "pr-mail", first_name=" Hannah ", last_name="Ng", email=" hannah@clinic.example.com "
    )
    wh.practitioner("1001", "pr-none", first_name="Tomás", last_name="Ruiz", email=None)
    wh.practitioner("1001", "pr-blank", first_name="Sam", last_name="Oduya", email="   ")
    wh.practitioner(
        "1001",
        "pr-long",
        first_name="Ben",
        last_name="Carter",
        email="ben.carter.physiotherapy.team@clinic.example.com",
    )
    wh.practitioner("1001", "pr-bad", first_name="Mere", last_name="Parata", email="mere@clinic")
    wh.practitioner("1001", "pr-first-only", first_name="Kai", last_name=None, email="kai@clinic.example.com")
    for appointment, practitioner in [
        ("a-mail", "pr-mail"),
        ("a-none", "pr-none"),
        ("a-blank", "pr-blank"),
        ("a-long", "pr-long"),
        ("a-bad", "pr-bad"),
        ("a-first-only", "pr-first-only"),
    ]:
        visit(wh, appointment, practitioner)
    wh.build("1001")
    assert practitioners_of(wh) == {
        "a-mail": ("pr-mail", "Hannah Ng", "Hannah", "Ng", "hannah@clinic.example.com"),
        "a-none": ("pr-none", "Tomás Ruiz", "Tomás", "Ruiz", None),
        "a-blank": ("pr-blank", "Sam Oduya", "Sam", "Oduya", None),
        "a-long": ("pr-long", "Ben Carter", "Ben", "Carter", None),  # 48 characters: over Birdeye's 40
        "a-bad": ("pr-bad", "Mere Parata", "Mere", "Parata", None),
        "a-first-only": ("pr-first-only", "Kai", "Kai", None, "kai@clinic.example.com"),
    }
    assert set(wh.outcomes("1001").values()) == {"eligible"}


def test_an_inactive_practitioner_is_still_named_and_sent(wh: Warehouse) -> None:
    """A practitioner who left the clinic saw the patient: the visit names them, as Cliniko still does."""
    wh.practitioner(
        "1001",
        "pr-gone",
        first_name="Aisha",
        last_name="Khan",
        email="aisha@clinic.example.com",
        active=False,
    )
    visit(wh, "a1", "pr-gone")
    wh.build("1001")
    assert practitioners_of(wh)["a1"] == (
        "pr-gone",
        "Aisha Khan",
        "Aisha",
        "Khan",
        "aisha@clinic.example.com",
    )


def test_a_class_attendees_visit_names_the_classs_practitioner(wh: Warehouse) -> None:
    """A class has one practitioner (Cliniko's `practitioner_id` on the group appointment): each attendee's
    visit names them, as an individual appointment names its own."""
    wh.practitioner("1001", "pr-class", first_name="Kai", last_name="Akana", email="kai@clinic.example.com")
    wh.practitioner("1001", "pr-solo", first_name="Hannah", last_name="Ng", email=None)
    wh.group_appointment("1001", "g1", ends_at="2026-11-24 18:00", practitioner_id="pr-class")
    wh.patient("1001", "p-1")
    wh.patient("1001", "p-2")
    wh.attendee("1001", "t1", group_appointment_id="g1", patient_id="p-1")
    wh.attendee("1001", "t2", group_appointment_id="g1", patient_id="p-2", arrived=False)
    visit(wh, "a1", "pr-solo")
    wh.build("1001")
    named = practitioners_of(wh)
    class_practitioner = ("pr-class", "Kai Akana", "Kai", "Akana", "kai@clinic.example.com")
    assert named["attendee-t1"] == named["attendee-t2"] == class_practitioner
    assert named["a1"] == ("pr-solo", "Hannah Ng", "Hannah", "Ng", None)
    assert wh.outcomes("1001")["attendee-t2"] == "did_not_arrive"  # named whatever the outcome


def test_a_practitioner_missing_from_cliniko_or_absent_keeps_the_visit_and_its_outcome(wh: Warehouse) -> None:
    wh.practitioner("1001", "pr-deleted", missing=True)
    visit(wh, "a-deleted", "pr-deleted")
    visit(wh, "a-unfetched", "pr-never-stored")  # e.g. a warehouse from before practitioners were ingested
    visit(wh, "a-nobody", None)
    visit(wh, "a-opted-out", "pr-deleted", reminder_type="None")
    wh.build("1001")
    assert practitioners_of(wh) == {
        "a-deleted": ("pr-deleted", None, None, None, None),
        "a-unfetched": ("pr-never-stored", None, None, None, None),
        "a-nobody": (None, None, None, None, None),
        "a-opted-out": ("pr-deleted", None, None, None, None),
    }
    assert wh.outcomes("1001") == {
        "a-deleted": "eligible",
        "a-unfetched": "eligible",
        "a-nobody": "eligible",
        "a-opted-out": "opted_out",
    }


def test_analysts_see_the_practitioner_in_both_views_and_no_email(wh: Warehouse) -> None:
    wh.practitioner("1001", "pr-mail", email="hannah@clinic.example.com")
    wh.practitioner("1001", "pr-none", first_name="Tomás", last_name="Ruiz", email=None)
    visit(wh, "a-mail", "pr-mail")
    visit(wh, "a-none", "pr-none")
    visit(wh, "a-dna", "pr-mail")
    wh.con.execute("update raw.cliniko_appointments set did_not_arrive = true where appointment_id = 'a-dna'")
    wh.build("1001")
    reasons = wh.con.execute(
        "select appointment_id, practitioner_id, practitioner_name, restriction_code "
        "from analytics.restriction_reasons order by appointment_id"
    ).fetchall()
    assert reasons == [
        ("a-dna", "pr-mail", "Hannah Ng", "did_not_arrive"),
        ("a-mail", "pr-mail", "Hannah Ng", None),
        ("a-none", "pr-none", "Tomás Ruiz", None),
    ]
    requests = wh.con.execute(
        "select appointment_id, practitioner_id, practitioner_name, employee_sent "
        "from analytics.review_requests order by appointment_id"
    ).fetchall()
    assert requests == [("a-mail", "pr-mail", "Hannah Ng", True), ("a-none", "pr-none", "Tomás Ruiz", False)]
    for view in ("restriction_reasons", "review_requests"):
        columns = {c[0] for c in wh.con.execute(f"describe analytics.{view}").fetchall()}
        assert not {c for c in columns if "email" in c or "phone" in c}, view


def test_a_warehouse_whose_mart_predates_practitioners_and_classes_gains_the_columns(wh: Warehouse) -> None:
    wh.practitioner("1001", "pr-mail")
    visit(wh, "a1", "pr-mail")
    wh.build("1001")
    wh.con.execute("drop view analytics.restriction_reasons")
    wh.con.execute("drop view analytics.review_requests")
    for column in ("appointment_kind", *PRACTITIONER_COLUMNS):
        wh.con.execute(f"alter table marts.appointment_eligibility drop column {column}")
    wh.build("1001")  # the columns come back last, in another order than a new mart's: rows go in by name
    assert wh.rows("1001")["a1"]["appointment_kind"] == "individual"
    assert practitioners_of(wh)["a1"] == (
        "pr-mail",
        "Hannah Ng",
        "Hannah",
        "Ng",
        "hannah.ng@clinic.example.com",
    )
