"""Cliniko JSON records -> flat rows with exactly the columns of the raw tables (`sql/raw/cliniko_*.sql`).

Cliniko gives ids as strings (old accounts: numbers), related records as `{"links": {"self": url}}` and, in
old payloads, `""` for null. Rows here carry ids as `str`, related ids taken from the last path segment of the
link, `None` for `""`, and timestamps still as Cliniko's ISO strings: parsing them is vectorised in
`validation.py`, which is also where a wrongly typed value is caught. The loader adds business_number,
partition_date, loaded_at.

These functions run once per row of a 200,000-row backfill, so they are written as flat dict literals with no
per-field function calls on the common path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BUSINESS_COLUMNS: tuple[str, ...] = (
    "cliniko_business_id",
    "business_name",
    "display_name",
    "time_zone_identifier",
    "country_code",
    "archived_at",
    "deleted_at",
    "created_at",
    "updated_at",
)
APPOINTMENT_COLUMNS: tuple[str, ...] = (
    "appointment_id",
    "cliniko_business_id",
    "patient_id",
    "practitioner_id",
    "appointment_type_id",
    "starts_at",
    "ends_at",
    "did_not_arrive",
    "patient_arrived",
    "cancelled_at",
    "archived_at",
    "deleted_at",
    "created_at",
    "updated_at",
)
PATIENT_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "is_missing",
    "first_name",
    "last_name",
    "preferred_first_name",
    "email",
    "reminder_type",
    "phone_numbers",
    "archived_at",
    "deleted_at",
    "merged_at",
    "created_at",
    "updated_at",
)


def link_id(related: Any) -> str | None:
    """Id of a related record from its `{"links": {"self": ".../patients/123"}}` object, else None."""
    try:
        url = related["links"]["self"]
    except (TypeError, KeyError):
        return None
    if not isinstance(url, str) or not url:
        return None
    segment = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return segment or None


def _id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _nz(value: Any) -> Any:
    """`""` -> None; anything else unchanged (a wrong type is left for validation to report)."""
    return None if value == "" else value


def business_row(r: dict[str, Any]) -> dict[str, Any]:
    g = r.get
    return {
        "cliniko_business_id": _id(g("id")),
        "business_name": _nz(g("business_name")),
        "display_name": _nz(g("display_name")),
        "time_zone_identifier": _nz(g("time_zone_identifier")),
        "country_code": _nz(g("country_code")),
        "archived_at": _nz(g("archived_at")),
        "deleted_at": _nz(g("deleted_at")),
        "created_at": _nz(g("created_at")),
        "updated_at": _nz(g("updated_at")),
    }


def appointment_row(r: dict[str, Any]) -> dict[str, Any]:
    g = r.get
    return {
        "appointment_id": _id(g("id")),
        "cliniko_business_id": link_id(g("business")),
        "patient_id": link_id(g("patient")),
        "practitioner_id": link_id(g("practitioner")),
        "appointment_type_id": link_id(g("appointment_type")),
        "starts_at": _nz(g("starts_at")),
        "ends_at": _nz(g("ends_at")),
        "did_not_arrive": _nz(g("did_not_arrive")),
        "patient_arrived": _nz(g("patient_arrived")),
        "cancelled_at": _nz(g("cancelled_at")),
        "archived_at": _nz(g("archived_at")),
        "deleted_at": _nz(g("deleted_at")),
        "created_at": _nz(g("created_at")),
        "updated_at": _nz(g("updated_at")),
    }


def _phones(value: Any) -> Any:
    if not isinstance(value, list):
        return _nz(value)
    return [
        {"phone_type": _nz(p.get("phone_type")), "number": _nz(p.get("number"))} if isinstance(p, dict) else p
        for p in value
    ]


def patient_row(r: dict[str, Any]) -> dict[str, Any]:
    g = r.get
    return {
        "patient_id": _id(g("id")),
        "is_missing": False,
        "first_name": _nz(g("first_name")),
        "last_name": _nz(g("last_name")),
        "preferred_first_name": _nz(g("preferred_first_name")),
        "email": _nz(g("email")),
        "reminder_type": _nz(g("reminder_type")),
        "phone_numbers": _phones(g("patient_phone_numbers")),
        "archived_at": _nz(g("archived_at")),
        "deleted_at": _nz(g("deleted_at")),
        "merged_at": _nz(g("merged_at")),
        "created_at": _nz(g("created_at")),
        "updated_at": _nz(g("updated_at")),
    }


def normalise(
    rows: Iterable[Any], row: Callable[[dict[str, Any]], dict[str, Any]], columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Normalise a page; a record that is not even a JSON object becomes an all-null row (validation rejects
    it for its missing id) instead of stopping the partition."""
    empty = dict.fromkeys(columns)
    return [row(r) if isinstance(r, dict) else dict(empty) for r in rows]
