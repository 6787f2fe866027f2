"""The column-wise page normalisers give exactly what the row functions give, for clean and broken pages."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from pipeline.cliniko.records import (
    APPOINTMENT_COLUMNS,
    PATIENT_COLUMNS,
    appointment_columns,
    appointment_row,
    columns_of_rows,
    normalise,
    patient_columns,
    patient_row,
    rows_of_columns,
)
from pipeline.sandbox.cliniko_emulator import _account_tables
from pipeline.sandbox.generator import generate_account

BASE = "https://api.au4.cliniko.com/v1"


@pytest.fixture(scope="module")
def pages() -> dict[str, list[dict]]:
    account = generate_account(3, appointments=300, start=date(2026, 1, 1), end=date(2026, 1, 20))
    tables = _account_tables(account)
    return {
        name: tables[name].render(np.arange(min(100, len(tables[name]))), BASE)
        for name in ("individual_appointments", "patients")
    }


def _same(records: list, columns_fn, row_fn, columns: tuple[str, ...]) -> None:
    expected = normalise(records, row_fn, columns)
    got = columns_fn(records)
    assert tuple(got) == columns
    assert got == columns_of_rows(expected, columns)
    assert rows_of_columns(got) == expected


def test_clean_pages_match_the_row_functions(pages) -> None:
    _same(pages["individual_appointments"], appointment_columns, appointment_row, APPOINTMENT_COLUMNS)
    _same(pages["patients"], patient_columns, patient_row, PATIENT_COLUMNS)


@pytest.mark.parametrize(
    "breakage",
    [
        {"id": 123},
        {"id": ""},
        {"patient": None},
        {"business": {"links": {"self": "https://x/v1/businesses/7?page=1"}}},
        {"practitioner": {"links": {"self": "no-slash"}}},
        {"appointment_type": {"links": {"self": "https://x/v1/appointment_types/"}}},
        {"ends_at": ""},
        {"did_not_arrive": "no"},
    ],
)
def test_a_broken_record_gives_the_row_functions_values(pages, breakage) -> None:
    records = [dict(r) for r in pages["individual_appointments"][:5]]
    records[2].update(breakage)
    if breakage == {"patient": None}:
        del records[2]["patient"]
    _same(records, appointment_columns, appointment_row, APPOINTMENT_COLUMNS)
    _same([*records, "not an object"], appointment_columns, appointment_row, APPOINTMENT_COLUMNS)


def test_broken_patients_give_the_row_functions_values(pages) -> None:
    records = [dict(r) for r in pages["patients"][:5]]
    records[0]["patient_phone_numbers"] = "0412 345 678"
    records[1]["email"] = ""
    records[2]["id"] = 9
    _same(records, patient_columns, patient_row, PATIENT_COLUMNS)
