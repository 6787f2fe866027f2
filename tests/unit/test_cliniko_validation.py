"""Validation of raw Cliniko rows: good rows typed for the raw tables, bad rows quarantined with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cliniko import APPOINTMENT_COLUMNS, PATIENT_COLUMNS, validate
from pipeline.warehouse import connect, run_sql_file


def appointment(i: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(APPOINTMENT_COLUMNS)
    row.update(
        appointment_id=str(1000000000000000000 + i),
        cliniko_business_id="11",
        patient_id=str(500 + i),
        practitioner_id="33",
        appointment_type_id="44",
        starts_at="2026-11-24T04:00:00Z",
        ends_at="2026-11-24T04:30:00Z",
        did_not_arrive=False,
        patient_arrived=True,
        created_at="2026-11-01T00:00:00Z",
        updated_at="2026-11-02T00:00:00Z",
    )
    row.update(overrides)
    return row


def patient(i: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(PATIENT_COLUMNS)
    row.update(
        patient_id=str(500 + i),
        is_missing=False,
        first_name="Zoë",
        last_name="Ng",
        email="zoe@example.com",
        reminder_type="SMS & Email",
        phone_numbers=[{"phone_type": "Mobile", "number": "61444444444"}],
        created_at="2026-11-01T00:00:00Z",
        updated_at="2026-11-02T00:00:00Z",
    )
    row.update(overrides)
    return row


def test_good_rows_come_out_typed_as_the_raw_table() -> None:
    frame, quarantine = validate(
        "appointments", [appointment(1), appointment(2, cancelled_at="2026-11-23T01:02:03Z")]
    )
    assert quarantine == []
    assert list(frame.columns) == list(APPOINTMENT_COLUMNS)
    assert str(frame["ends_at"].dtype) == "datetime64[us, UTC]"
    assert str(frame["did_not_arrive"].dtype) == "boolean"
    assert frame["appointment_id"].dtype == "str"
    assert frame.loc[1, "cancelled_at"] == pd.Timestamp("2026-11-23T01:02:03Z")
    assert pd.isna(frame.loc[0, "cancelled_at"])


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"appointment_id": None}, "appointment_id: missing"),
        ({"ends_at": None}, "ends_at: missing"),
        ({"starts_at": "24/11/2026 4pm"}, "starts_at: unparsable timestamp"),
        ({"updated_at": 1732420800}, "updated_at: unparsable timestamp"),
        ({"did_not_arrive": "yes"}, "did_not_arrive: expected true/false"),
        ({"patient_id": "abc"}, "patient_id: not a Cliniko id"),
        ({"practitioner_id": 33}, "practitioner_id: expected text"),
    ],
)
def test_a_broken_row_is_quarantined_and_the_rest_goes_on(overrides: dict[str, object], reason: str) -> None:
    rows = [appointment(1), appointment(2, **overrides), appointment(3)]
    frame, quarantine = validate("appointments", rows)
    assert frame["appointment_id"].tolist() == [rows[0]["appointment_id"], rows[2]["appointment_id"]]
    assert len(quarantine) == 1
    assert reason in quarantine[0]["reason"]
    assert quarantine[0]["record_id"] == rows[1]["appointment_id"]
    assert json.loads(quarantine[0]["record_json"])["ends_at"] == rows[1]["ends_at"]


def test_every_reason_of_a_row_is_reported_and_duplicates_keep_the_first() -> None:
    rows = [appointment(1), appointment(1, did_not_arrive=1, ends_at="never"), appointment(2)]
    frame, quarantine = validate("appointments", rows)
    assert len(frame) == 2
    reason = quarantine[0]["reason"]
    assert "duplicate id" in reason and "did_not_arrive" in reason and "ends_at" in reason


def test_patient_phone_numbers_must_be_a_list_of_type_and_number() -> None:
    rows = [patient(1), patient(2, phone_numbers="0400 000 000"), patient(3, phone_numbers=None)]
    frame, quarantine = validate("patients", rows)
    assert frame["patient_id"].tolist() == ["501", "503"]
    assert "phone_numbers" in quarantine[0]["reason"]


def test_empty_input_gives_an_empty_typed_frame() -> None:
    frame, quarantine = validate("businesses", [])
    assert len(frame) == 0 and quarantine == []
    with pytest.raises(ValueError, match="unknown resource"):
        validate("invoices", [])


def test_valid_frames_load_into_the_raw_tables(tmp_path: Path) -> None:
    appointments, _ = validate("appointments", [appointment(1)])
    patients, _ = validate("patients", [patient(1), patient(2, phone_numbers=None)])
    with connect(tmp_path / "w.duckdb") as con:
        run_sql_file(con, "raw/cliniko_appointments.sql")
        run_sql_file(con, "raw/cliniko_patients.sql")
        con.register("a", appointments)
        con.register("p", patients)
        con.execute("insert into raw.cliniko_appointments select 'b1', date '2026-11-24', *, now() from a")
        con.execute(
            "insert into raw.cliniko_patients (business_number, partition_date, "
            + ", ".join(PATIENT_COLUMNS)
            + ", loaded_at) select 'b1', date '2026-11-24', *, now() from p"
        )
        ends = con.execute("select ends_at at time zone 'UTC' from raw.cliniko_appointments").fetchone()
        phones = con.execute("select phone_numbers from raw.cliniko_patients order by patient_id").fetchall()
    assert str(ends[0]) == "2026-11-24 04:30:00"
    assert phones == [([{"phone_type": "Mobile", "number": "61444444444"}],), (None,)]
