"""The bulk path (raw pages typed by DuckDB) stores and quarantines exactly what the record path does."""

from __future__ import annotations

from datetime import date

import numpy as np
import orjson
import pandas as pd
import pytest

from pipeline.cliniko import validate
from pipeline.cliniko.pages import type_pages
from pipeline.cliniko.pagination import MalformedPage, raw_page
from pipeline.cliniko.records import (
    APPOINTMENT_COLUMNS,
    PATIENT_COLUMNS,
    appointment_row,
    normalise,
    patient_row,
)
from pipeline.sandbox.cliniko_emulator import _account_tables
from pipeline.sandbox.generator import generate_account

BASE = "https://api.au4.cliniko.com/v1"
KEYS = {"appointments": "individual_appointments", "patients": "patients"}
ROWS = {"appointments": (appointment_row, APPOINTMENT_COLUMNS), "patients": (patient_row, PATIENT_COLUMNS)}


@pytest.fixture(scope="module")
def records() -> dict[str, list[dict]]:
    account = generate_account(3, appointments=300, start=date(2026, 1, 1), end=date(2026, 1, 20))
    tables = _account_tables(account)
    return {
        resource: tables[key].render(np.arange(min(100, len(tables[key]))), BASE)
        for resource, key in KEYS.items()
    }


def body(resource: str, records: list, next_url: str | None = None) -> bytes:
    links = {"self": f"{BASE}/{KEYS[resource]}?page=1", **({"next": next_url} if next_url else {})}
    return orjson.dumps({KEYS[resource]: records, "total_entries": len(records), "links": links})


def both_paths(resource: str, pages: list[list]) -> None:
    """Validate `pages` both ways; the valid frames and the quarantines must be equal."""
    row, columns = ROWS[resource]
    flat = [r for page in pages for r in page]
    expected_frame, expected_quarantine = validate(resource, normalise(flat, row, columns))
    frame, quarantine = validate(resource, type_pages(resource, [body(resource, p) for p in pages]))
    pd.testing.assert_frame_equal(frame, expected_frame, check_dtype=True)
    assert [q["record_id"] for q in quarantine] == [q["record_id"] for q in expected_quarantine]
    for got, want in zip(quarantine, expected_quarantine, strict=True):
        fields = lambda reason: sorted(part.split(":")[0] for part in reason.split("; "))  # noqa: E731
        assert fields(got["reason"]) == fields(want["reason"]), (got, want)
        assert orjson.loads(got["record_json"]) in flat  # the record as Cliniko sent it


def test_clean_pages_give_the_same_rows(records) -> None:
    both_paths("appointments", [records["appointments"][:60], records["appointments"][60:]])
    both_paths("patients", [records["patients"][:40], records["patients"][40:]])


@pytest.mark.parametrize(
    "breakage",
    [
        {"id": 123},
        {"id": ""},
        {"id": "abc"},
        {"patient": None},
        {"business": {"links": {"self": "https://x/v1/businesses/7?page=1"}}},
        {"practitioner": {"links": {"self": "no-slash"}}},
        {"appointment_type": {"links": {"self": "https://x/v1/appointment_types/"}}},
        {"ends_at": ""},
        {"ends_at": None},
        {"starts_at": "24/11/2026 4pm"},
        {"updated_at": 1732420800},
        {"cancelled_at": ""},
        {"did_not_arrive": "no"},
        {"did_not_arrive": ""},
        {"patient_arrived": 1},
    ],
)
def test_a_broken_appointment_is_treated_alike(records, breakage) -> None:
    page = [dict(r) for r in records["appointments"][:5]]
    page[2].update(breakage)
    if breakage == {"patient": None}:
        del page[2]["patient"]
    both_paths("appointments", [page])
    both_paths("appointments", [[*page, "not an object"]])


@pytest.mark.parametrize(
    "breakage",
    [
        {"patient_phone_numbers": "0412 345 678"},
        {"patient_phone_numbers": ""},
        {"patient_phone_numbers": []},
        {"patient_phone_numbers": [{"phone_type": "Mobile", "number": 412}]},
        {"patient_phone_numbers": ["0412"]},
        {"email": ""},
        {"first_name": 5},
        {"first_name": 'O"Brien \u00e9'},
        {"id": 9},
        {"created_at": 1_700_000_000},
    ],
)
def test_a_broken_patient_is_treated_alike(records, breakage) -> None:
    page = [dict(r) for r in records["patients"][:5]]
    page[1].update(breakage)
    both_paths("patients", [page])


def test_a_repeated_id_keeps_its_first_position_and_last_version(records) -> None:
    first = [dict(r) for r in records["appointments"][:3]]
    second = [
        dict(first[0], updated_at="2026-02-01T00:00:00Z"),
        *[dict(r) for r in records["appointments"][3:5]],
    ]
    typed = type_pages("appointments", [body("appointments", first), body("appointments", second)])
    frame, quarantine = validate("appointments", typed)
    assert quarantine == []
    assert frame["appointment_id"].tolist()[:3] == [r["id"] for r in first]
    assert len(frame) == 5
    assert frame["updated_at"].iat[0] == pd.Timestamp("2026-02-01T00:00:00Z")


def test_a_page_that_is_not_json_fails_loudly() -> None:
    with pytest.raises(Exception, match="not valid JSON"):
        type_pages("patients", [b'{"patients": [{"id": "1"}, {"id": ], "total_entries": 2, "links": {}}'])


def test_raw_page_reads_the_envelope_and_refuses_a_cut_body(records) -> None:
    whole = body("patients", records["patients"][:3], next_url=f"{BASE}/patients?page=2")
    page = raw_page(whole, "patients")
    assert (page.empty, page.next_url, page.total_entries) == (False, f"{BASE}/patients?page=2", 3)
    assert raw_page(body("patients", []), "patients").empty
    for cut in (len(whole) // 2, len(whole) - 3):
        with pytest.raises(MalformedPage):
            raw_page(whole[:cut], "patients")
    # Another member order takes the full parse and still finds the envelope.
    reordered = orjson.dumps({"total_entries": 1, "links": {}, "patients": records["patients"][:1]})
    assert raw_page(reordered, "patients").total_entries == 1
    with pytest.raises(MalformedPage):
        raw_page(b'{"appointments": []}', "patients")


def test_no_pages_give_an_empty_typed_frame() -> None:
    frame, quarantine = validate("patients", type_pages("patients", []))
    expected, _ = validate("patients", [])
    assert quarantine == [] and len(frame) == 0
    pd.testing.assert_frame_equal(frame, expected)


def test_pages_typed_in_batches_give_the_same_rows(records) -> None:
    pages = [body("appointments", records["appointments"][i : i + 20]) for i in range(0, 100, 20)]
    pages.append(body("appointments", [dict(records["appointments"][0], did_not_arrive="no")]))
    whole = type_pages("appointments", pages, batch_pages=100)
    batched = type_pages("appointments", iter(pages), batch_pages=2)
    (frame, quarantine), (expected, expected_quarantine) = (
        validate("appointments", t) for t in (batched, whole)
    )
    pd.testing.assert_frame_equal(frame, expected)
    assert quarantine == expected_quarantine and len(quarantine) == 1


# -- classes: only the raw-page path exists for them --------------------------------------------------------


def class_pages(resource: str, records: list[dict]) -> list[bytes]:
    links = {"self": f"{BASE}/{resource}?page=1"}
    return [orjson.dumps({resource: records, "total_entries": len(records), "links": links})]


@pytest.fixture(scope="module")
def class_records() -> dict[str, list[dict]]:
    account = generate_account(3, appointments=300, start=date(2026, 1, 1), end=date(2026, 1, 20))
    tables = _account_tables(account)
    return {key: tables[key].render(np.arange(min(60, len(tables[key]))), BASE) for key in KEYS_OF_CLASSES}


KEYS_OF_CLASSES = ("group_appointments", "attendees")


def test_class_pages_type_ids_from_links_and_keep_every_field(class_records) -> None:
    frame, quarantine = validate(
        "attendees", type_pages("attendees", class_pages("attendees", class_records["attendees"]))
    )
    assert quarantine == []
    sent = class_records["attendees"]
    assert list(frame["attendee_id"]) == [a["id"] for a in sent]
    assert list(frame["booking_id"]) == [a["booking"]["links"]["self"].rsplit("/", 1)[1] for a in sent]
    assert list(frame["patient_id"]) == [a["patient"]["links"]["self"].rsplit("/", 1)[1] for a in sent]
    assert [None if pd.isna(v) else bool(v) for v in frame["arrived"]] == [a["arrived"] for a in sent]
    assert list(frame["cancelled_at"].notna()) == [a["cancelled_at"] is not None for a in sent]
    frame, quarantine = validate(
        "group_appointments",
        type_pages(
            "group_appointments", class_pages("group_appointments", class_records["group_appointments"])
        ),
    )
    assert quarantine == []
    sent = class_records["group_appointments"]
    assert list(frame["group_appointment_id"]) == [c["id"] for c in sent]
    assert list(frame["appointment_type_id"]) == [
        c["appointment_type"]["links"]["self"].rsplit("/", 1)[1] for c in sent
    ]
    assert list(frame["ends_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")) == [c["ends_at"] for c in sent]


def test_broken_class_records_are_quarantined_with_their_reasons(class_records) -> None:
    attendees = [dict(a) for a in class_records["attendees"][:4]]
    attendees[0]["arrived"] = "yes"
    attendees[1]["booking"] = None  # an attendee of no class cannot be placed
    attendees[2]["cancelled_at"] = "31/02/2026 25:61"
    frame, quarantine = validate("attendees", type_pages("attendees", class_pages("attendees", attendees)))
    reasons = {q["record_id"]: q["reason"] for q in quarantine}
    assert reasons == {
        attendees[0]["id"]: 'arrived: expected true/false, got "yes"',
        attendees[1]["id"]: "booking_id: missing",
        attendees[2]["id"]: "cancelled_at: unparsable timestamp, got 31/02/2026 25:61",
    }
    assert list(frame["attendee_id"]) == [attendees[3]["id"]]
    classes = [dict(c) for c in class_records["group_appointments"][:2]]
    classes[0]["ends_at"] = None
    frame, quarantine = validate(
        "group_appointments", type_pages("group_appointments", class_pages("group_appointments", classes))
    )
    assert [(q["record_id"], q["reason"]) for q in quarantine] == [(classes[0]["id"], "ends_at: missing")]
