"""The visit's practitioner reaches Birdeye as the check-in's `employees` when it has an email, and only then:
through the sink to the emulator over HTTP, and the emulator's own check of the field's shape."""

from __future__ import annotations

import math

import httpx
import pytest
from birdeye_sink_support import KEY, claim, eligible_rows, ledger_rows

from pipeline.sandbox.birdeye_emulator import EMPLOYEES_INVALID, BirdeyeEmulatorConfig, running_birdeye
from pipeline.sink import post_review_requests

FAST = {"backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05, "rate_per_second": 500.0, "burst": 8}
VALID = {"name": "Ann", "emailId": "ann@example.com", "smsEnabled": 0}


def test_the_emulator_receives_employees_for_a_practitioner_with_an_email_and_none_without(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    named = {"practitioner_first_name": "Hannah", "practitioner_last_name": "Ng"}
    rows = [
        *eligible_rows(1, practitioner_email="hannah.ng@clinic.example.com", **named),
        *eligible_rows(1, start=1, practitioner_email=None, **named),  # no email on file
        *eligible_rows(1, start=2, practitioner_email=math.nan, **named),  # null as a DataFrame row has it
        *eligible_rows(1, start=3),  # no practitioner columns at all
        *eligible_rows(
            1, start=4, practitioner_email="kai@clinic.example.com", practitioner_first_name="Kai"
        ),
    ]
    claim(warehouse, rows)
    with running_birdeye(BirdeyeEmulatorConfig(keys={KEY: None})) as birdeye:
        counts = post_review_requests(
            warehouse,
            rows,
            api_key=KEY,
            base_url=birdeye.base_url,
            rate_limit_dir=tmp_path / "rate_limits",
            **FAST,
        )
        received = {r.appointment_id: r for r in birdeye.records()}
    assert counts["sent"] == 5
    assert received["1000"].employees == [
        {"emailId": "hannah.ng@clinic.example.com", "firstName": "Hannah", "lastName": "Ng"}
    ]
    assert received["1004"].employees == [{"emailId": "kai@clinic.example.com", "firstName": "Kai"}]
    for appointment in ("1001", "1002", "1003"):
        assert "employees" not in received[appointment].body, appointment
    assert {row["status"] for row in ledger_rows(warehouse, None).values()} == {"sent"}


@pytest.mark.parametrize(
    ("employees", "accepted"),
    [
        ([{"emailId": "hannah@clinic.example.com", "firstName": "Hannah", "lastName": "Ng"}], True),
        ([{"emailId": "hannah@clinic.example.com"}], True),
        ([], True),
        ({"emailId": "hannah@clinic.example.com"}, False),  # not a list
        (["hannah@clinic.example.com"], False),  # not objects
        ([{"firstName": "Hannah"}], False),  # no emailId
        ([{"emailId": "hannah@clinic"}], False),
        ([{"emailId": "hannah@clinic.example.com", "firstName": 5}], False),
        ([{"emailId": "hannah@clinic.example.com", "role": "physio"}], False),
    ],
)
def test_the_emulator_checks_the_shape_of_employees(employees, accepted):
    with running_birdeye(BirdeyeEmulatorConfig(keys={KEY: None})) as birdeye:
        response = httpx.post(
            f"{birdeye.base_url}/v1/customer/checkin",
            json={**VALID, "employees": employees},
            headers={"x-api-key": KEY},
            params={"bid": "100"},
        )
        (record,) = birdeye.records()
    if accepted:
        assert response.status_code == 200 and record.delivered and record.employees == employees
    else:
        assert response.status_code == 400 and not record.delivered
        assert response.json()["code"] == EMPLOYEES_INVALID
