"""The one ingest path: raw Cliniko pages typed by DuckDB, malformed records quarantined with reasons."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from pipeline.cliniko.pagination import MalformedPage, raw_page
from pipeline.sandbox.cliniko_emulator import _account_tables
from pipeline.sandbox.generator import generate_account
from pipeline.warehouse import connect
from pipeline.warehouse.pages import PAGE_RESOURCES, UnreadablePage, type_pages
from pipeline.warehouse.raw_store import store_records

BASE = "https://api.au4.cliniko.com/v1"
KEYS = {"appointments": "individual_appointments", "patients": "patients"}


@pytest.fixture(scope="module")
def records() -> dict[str, list[dict]]:
    account = generate_account(3, appointments=300, start=date(2026, 1, 1), end=date(2026, 1, 20))
    tables = _account_tables(account)
    return {
        resource: tables[key].render(np.arange(min(100, len(tables[key]))), BASE)
        for resource, key in KEYS.items()
    }


def body(resource: str, records: list, next_url: str | None = None) -> bytes:
    key = KEYS.get(resource, PAGE_RESOURCES.get(resource, resource))
    links = {"self": f"{BASE}/{key}?page=1", **({"next": next_url} if next_url else {})}
    return orjson.dumps({key: records, "total_entries": len(records), "links": links})


def split(resource: str, pages: list[list]) -> tuple[pd.DataFrame, list[dict]]:
    return type_pages(resource, [body(resource, p) for p in pages]).split()


def link(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_clean_pages_type_every_field(records) -> None:
    sent = records["appointments"]
    frame, quarantine = split("appointments", [sent[:60], sent[60:]])
    assert quarantine == []
    assert list(frame["appointment_id"]) == [r["id"] for r in sent]
    assert list(frame["cliniko_business_id"]) == [link(r["business"]["links"]["self"]) for r in sent]
    assert list(frame["patient_id"]) == [link(r["patient"]["links"]["self"]) for r in sent]
    assert list(frame["ends_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")) == [r["ends_at"] for r in sent]
    assert list(frame["cancelled_at"].notna()) == [bool(r["cancelled_at"]) for r in sent]
    assert str(frame["ends_at"].dtype).startswith("datetime64[us, ")
    patients = records["patients"]
    frame, quarantine = split("patients", [patients[:40], patients[40:]])
    assert quarantine == [] and list(frame["patient_id"]) == [p["id"] for p in patients]
    assert not frame["is_missing"].any()
    phones = [
        None
        if not p["patient_phone_numbers"]
        else [
            {"phone_type": n["phone_type"] or None, "number": n["number"] or None}
            for n in p["patient_phone_numbers"]
        ]
        for p in patients
    ]
    got = [None if v is None else list(v) for v in frame["phone_numbers"]]
    assert [g or None for g in got] == [p or None for p in phones]


def test_links_blanks_and_numeric_ids_are_read_as_cliniko_means_them() -> None:
    record = {
        "id": 1234567890123456789,
        "starts_at": "2026-11-24T04:00:00Z",
        "ends_at": "2026-11-24T04:30:00Z",
        "did_not_arrive": False,
        "patient_arrived": True,
        "cancelled_at": "",
        "archived_at": None,
        "business": {"links": {"self": "https://x/v1/businesses/70644/?page=1"}},
        "patient": {"links": {"self": "https://api.au1.cliniko.com/v1/patients/22"}},
        "practitioner": {"links": {}},
        "appointment_type": {"links": {"self": "https://api.au1.cliniko.com/v1/appointment_types/44"}},
    }
    frame, quarantine = split("appointments", [[record]])
    assert quarantine == []
    row = frame.iloc[0]
    assert row["appointment_id"] == "1234567890123456789"
    assert (row["cliniko_business_id"], row["patient_id"], row["appointment_type_id"]) == (
        "70644",
        "22",
        "44",
    )
    assert row["practitioner_id"] is None and pd.isna(row["cancelled_at"]) and row["patient_arrived"]


APPOINTMENT_BREAKAGES = [
    ({"id": 123}, None),
    ({"id": ""}, "appointment_id: missing"),
    ({"id": "abc"}, "appointment_id: not a Cliniko id"),
    ({"patient": None}, None),
    ({"business": {"links": {"self": "https://x/v1/businesses/7?page=1"}}}, None),
    ({"practitioner": {"links": {"self": "no-slash"}}}, None),
    (
        {"appointment_type": {"links": {"self": "https://x/v1/appointment_types/"}}},
        "appointment_type_id: not a",
    ),
    ({"ends_at": ""}, "ends_at: missing"),
    ({"ends_at": None}, "ends_at: missing"),
    ({"starts_at": "24/11/2026 4pm"}, "starts_at: unparsable timestamp"),
    ({"updated_at": 1732420800}, "updated_at: unparsable timestamp"),
    ({"cancelled_at": ""}, None),
    ({"did_not_arrive": "no"}, "did_not_arrive: expected true/false"),
    ({"did_not_arrive": ""}, None),
    ({"patient_arrived": 1}, "patient_arrived: expected true/false"),
]


@pytest.mark.parametrize(("breakage", "reason"), APPOINTMENT_BREAKAGES)
def test_a_broken_appointment_is_quarantined_with_its_reason_and_the_rest_goes_on(
    records, breakage, reason
) -> None:
    page = [dict(r) for r in records["appointments"][:5]]
    page[2].update(breakage)
    if breakage == {"patient": None}:
        del page[2]["patient"]
    frame, quarantine = split("appointments", [page])
    if reason is None:
        assert quarantine == [] and len(frame) == 5
        return
    assert [q["reason"] for q in quarantine] == [quarantine[0]["reason"]] and reason in quarantine[0][
        "reason"
    ]
    assert orjson.loads(quarantine[0]["record_json"]) == page[2]  # the record as Cliniko sent it
    assert list(frame["appointment_id"]) == [r["id"] for i, r in enumerate(page) if i != 2]
    if isinstance(page[2]["id"], str) and page[2]["id"]:
        assert quarantine[0]["record_id"] == page[2]["id"]


def test_a_record_that_is_not_an_object_is_quarantined(records) -> None:
    page = [dict(r) for r in records["appointments"][:3]]
    frame, quarantine = split("appointments", [[*page, "not an object"]])
    assert len(frame) == 3
    assert [q["record_id"] for q in quarantine] == [None]
    assert "appointment_id: missing" in quarantine[0]["reason"]


def test_every_reason_of_a_record_is_reported(records) -> None:
    page = [dict(records["appointments"][0], did_not_arrive=1, ends_at="never", id="x1")]
    _, (quarantine,) = split("appointments", [page])
    assert {part.split(":")[0] for part in quarantine["reason"].split("; ")} == {
        "appointment_id",
        "ends_at",
        "did_not_arrive",
    }


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ({"patient_phone_numbers": "0412 345 678"}, "phone_numbers: expected a list"),
        ({"patient_phone_numbers": ""}, None),
        ({"patient_phone_numbers": []}, None),
        ({"patient_phone_numbers": [{"phone_type": "Mobile", "number": 412}]}, "phone_numbers"),
        ({"patient_phone_numbers": ["0412"]}, "phone_numbers"),
        ({"email": ""}, None),
        ({"first_name": 5}, "first_name: expected text"),
        ({"first_name": 'O"Brien \u00e9'}, None),
        ({"id": 9}, None),
        ({"created_at": 1_700_000_000}, "created_at: unparsable timestamp"),
    ],
)
def test_a_broken_patient_is_quarantined_with_its_reason(records, breakage, reason) -> None:
    page = [dict(r) for r in records["patients"][:5]]
    page[1].update(breakage)
    frame, quarantine = split("patients", [page])
    if reason is None:
        assert quarantine == [] and len(frame) == 5
    else:
        assert len(frame) == 4 and len(quarantine) == 1 and reason in quarantine[0]["reason"]


def test_a_patients_phone_numbers_keep_type_and_number_only() -> None:
    record = {
        "id": "9",
        "first_name": "Zoë",
        "email": "",
        "patient_phone_numbers": [{"phone_type": "Mobile", "number": "61444444444", "extra": 1}],
    }
    frame, quarantine = split("patients", [[record]])
    assert quarantine == []
    assert frame["email"].iat[0] is None and frame["first_name"].iat[0] == "Zoë"
    assert list(frame["phone_numbers"].iat[0]) == [{"phone_type": "Mobile", "number": "61444444444"}]


@pytest.mark.parametrize(
    ("resource", "good", "bad", "reason"),
    [
        (
            "businesses",
            {"id": "11", "business_name": "Sydney"},
            {"id": "x", "business_name": 3},
            "cliniko_business_id",
        ),
        (
            "appointment_types",
            {"id": "44", "name": "Initial"},
            {"id": "45", "name": ["x"]},
            "appointment_type_name",
        ),
        (
            "practitioners",
            {"id": "33", "user": {"links": {"self": f"{BASE}/users/7"}}, "first_name": "Ann"},
            {"id": "34", "user": {"links": {"self": f"{BASE}/users/me"}}},
            "user_id: not a Cliniko id",
        ),
        ("users", {"id": "7", "email": "ann@example.com"}, {"id": "8", "email": 5}, "email: expected text"),
    ],
)
def test_every_resource_quarantines_what_breaks_its_table(resource, good, bad, reason) -> None:
    frame, quarantine = split(resource, [[good, bad]])
    assert len(frame) == 1 and len(quarantine) == 1 and reason in quarantine[0]["reason"]
    assert orjson.loads(quarantine[0]["record_json"]) == bad


def test_a_repeated_id_keeps_its_first_position_and_last_version(records) -> None:
    first = [dict(r) for r in records["appointments"][:3]]
    second = [
        dict(first[0], updated_at="2026-02-01T00:00:00Z"),
        *[dict(r) for r in records["appointments"][3:5]],
    ]
    frame, quarantine = split("appointments", [first, second])
    assert quarantine == []
    assert frame["appointment_id"].tolist()[:3] == [r["id"] for r in first]
    assert len(frame) == 5
    assert frame["updated_at"].iat[0] == pd.Timestamp("2026-02-01T00:00:00Z")


def test_a_page_that_is_not_json_fails_loudly() -> None:
    with pytest.raises(UnreadablePage, match="not valid JSON"):
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


@pytest.mark.parametrize("resource", list(PAGE_RESOURCES))
def test_no_pages_give_an_empty_frame(resource) -> None:
    frame, quarantine = type_pages(resource, []).split()
    assert quarantine == [] and len(frame) == 0 and "_reason" not in frame.columns


@pytest.mark.parametrize("resource", list(PAGE_RESOURCES))
def test_no_pages_type_like_a_page_without_records(resource) -> None:
    """No page is typed once per process (not planned again each time); its columns and types are those of
    a page whose records list is empty, and a caller changing it changes no later one."""
    typed = type_pages(resource, [body(resource, [])]).frame
    first = type_pages(resource, []).frame
    del first["_reason"]
    again = type_pages(resource, []).frame
    assert list(again.columns) == list(typed.columns) and again.dtypes.equals(typed.dtypes)
    assert len(again) == 0


def test_pages_typed_in_batches_give_the_same_rows(records) -> None:
    pages = [body("appointments", records["appointments"][i : i + 20]) for i in range(0, 100, 20)]
    pages.append(body("appointments", [dict(records["appointments"][0], did_not_arrive="no")]))
    whole = type_pages("appointments", pages, batch_pages=100)
    batched = type_pages("appointments", iter(pages), batch_pages=2)
    (frame, quarantine), (expected, expected_quarantine) = (t.split() for t in (batched, whole))
    pd.testing.assert_frame_equal(frame, expected)
    assert quarantine == expected_quarantine and len(quarantine) == 1


def test_typed_pages_load_into_the_raw_tables_and_the_quarantine(records, tmp_path: Path) -> None:
    patients = [dict(p) for p in records["patients"][:3]]
    patients[1]["first_name"] = 5
    typed = type_pages("patients", [body("patients", patients)])
    warehouse = tmp_path / "w.duckdb"
    stored, quarantined = store_records(
        warehouse, "b1", date(2026, 11, 24), "patients", "raw.cliniko_patients", typed, missing_ids=["404"]
    )
    assert (stored, quarantined) == (3, 1)
    with connect(warehouse) as con:
        rows = con.execute("select patient_id, is_missing from raw.cliniko_patients order by 1").fetchall()
        held = con.execute("select record_id, reason, record from raw.cliniko_quarantine").fetchall()
    assert rows == sorted([(patients[0]["id"], False), (patients[2]["id"], False), ("404", True)])
    assert held[0][:2] == (patients[1]["id"], "first_name: expected text, got 5")
    assert orjson.loads(held[0][2]) == patients[1]


# -- classes ------------------------------------------------------------------------------------------------


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
    frame, quarantine = type_pages("attendees", class_pages("attendees", class_records["attendees"])).split()
    assert quarantine == []
    sent = class_records["attendees"]
    assert list(frame["attendee_id"]) == [a["id"] for a in sent]
    assert list(frame["booking_id"]) == [link(a["booking"]["links"]["self"]) for a in sent]
    assert list(frame["patient_id"]) == [link(a["patient"]["links"]["self"]) for a in sent]
    assert [None if pd.isna(v) else bool(v) for v in frame["arrived"]] == [a["arrived"] for a in sent]
    assert list(frame["cancelled_at"].notna()) == [a["cancelled_at"] is not None for a in sent]
    classes = class_records["group_appointments"]
    frame, quarantine = type_pages("group_appointments", class_pages("group_appointments", classes)).split()
    assert quarantine == []
    assert list(frame["group_appointment_id"]) == [c["id"] for c in classes]
    assert list(frame["appointment_type_id"]) == [
        link(c["appointment_type"]["links"]["self"]) for c in classes
    ]
    assert list(frame["ends_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")) == [c["ends_at"] for c in classes]


def test_broken_class_records_are_quarantined_with_their_reasons(class_records) -> None:
    attendees = [dict(a) for a in class_records["attendees"][:4]]
    attendees[0]["arrived"] = "yes"
    attendees[1]["booking"] = None  # an attendee of no class cannot be placed
    attendees[2]["cancelled_at"] = "31/02/2026 25:61"
    frame, quarantine = type_pages("attendees", class_pages("attendees", attendees)).split()
    reasons = {q["record_id"]: q["reason"] for q in quarantine}
    assert reasons == {
        attendees[0]["id"]: 'arrived: expected true/false, got "yes"',
        attendees[1]["id"]: "booking_id: missing",
        attendees[2]["id"]: "cancelled_at: unparsable timestamp, got 31/02/2026 25:61",
    }
    assert list(frame["attendee_id"]) == [attendees[3]["id"]]
    classes = [dict(c) for c in class_records["group_appointments"][:2]]
    classes[0]["ends_at"] = None
    frame, quarantine = type_pages("group_appointments", class_pages("group_appointments", classes)).split()
    assert [(q["record_id"], q["reason"]) for q in quarantine] == [(classes[0]["id"], "ends_at: missing")]
