"""Cliniko JSON records -> flat rows with exactly the columns of the raw tables (`sql/raw/cliniko_*.sql`).

Cliniko gives ids as strings (old accounts: numbers), related records as `{"links": {"self": url}}` and, in
old payloads, `""` for null. Rows here carry ids as `str`, related ids taken from the last path segment of the
link, `None` for `""`, and timestamps still as Cliniko's ISO strings: parsing them is vectorised in
`validation.py`, which is also where a wrongly typed value is caught. The loader adds business_number,
partition_date, loaded_at.

They serve the client's record API (`businesses`, `appointment_types`, `individual_appointments`,
`patients`, `practitioners`, `users`) and are the reference that the assets' bulk path, raw pages typed in
DuckDB (`pages.py`), is tested against. They are written as flat dict literals with no per-field function
calls on the common path.
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
# Classes come only through the raw-page path (`pages.py`), so they have columns here but no row function.
GROUP_APPOINTMENT_COLUMNS: tuple[str, ...] = (
    "group_appointment_id",
    "cliniko_business_id",
    "practitioner_id",
    "appointment_type_id",
    "starts_at",
    "ends_at",
    "archived_at",
    "deleted_at",
    "created_at",
    "updated_at",
)
ATTENDEE_COLUMNS: tuple[str, ...] = (
    "attendee_id",
    "booking_id",
    "patient_id",
    "arrived",
    "cancelled_at",
    "archived_at",
    "deleted_at",
    "created_at",
    "updated_at",
)
APPOINTMENT_TYPE_COLUMNS: tuple[str, ...] = (
    "appointment_type_id",
    "appointment_type_name",
    "category",
    "archived_at",
    "created_at",
    "updated_at",
)
PRACTITIONER_COLUMNS: tuple[str, ...] = (
    "practitioner_id",
    "is_missing",
    "is_active",
    "user_id",
    "first_name",
    "last_name",
    "email",
    "created_at",
    "updated_at",
)
USER_COLUMNS: tuple[str, ...] = ("user_id", "email")
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
        tail = url[url.rindex("/") + 1 :]
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    if tail and "?" not in tail:
        return tail
    segment = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return segment or None


def _id(value: Any) -> str | None:
    if value.__class__ is str:
        return value or None
    return None if value is None else str(value)


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


def appointment_type_row(r: dict[str, Any]) -> dict[str, Any]:
    g = r.get
    return {
        "appointment_type_id": _id(g("id")),
        "appointment_type_name": _nz(g("name")),
        "category": _nz(g("category")),
        "archived_at": _nz(g("archived_at")),
        "created_at": _nz(g("created_at")),
        "updated_at": _nz(g("updated_at")),
    }


def practitioner_row(r: dict[str, Any]) -> dict[str, Any]:
    """A practitioner without its email (that is on its Cliniko user) and with `is_active` from the portal's
    `active` field; the client sets both from where it found the record (`ClinikoClient.practitioners`)."""
    g = r.get
    return {
        "practitioner_id": _id(g("id")),
        "is_missing": False,
        "is_active": _nz(g("active")),
        "user_id": link_id(g("user")),
        "first_name": _nz(g("first_name")),
        "last_name": _nz(g("last_name")),
        "email": None,
        "created_at": _nz(g("created_at")),
        "updated_at": _nz(g("updated_at")),
    }


def user_row(r: dict[str, Any]) -> dict[str, Any]:
    g = r.get
    return {"user_id": _id(g("id")), "email": _nz(g("email"))}


def appointment_row(r: dict[str, Any]) -> dict[str, Any]:
    # The walrus form inlines `_nz`: a function call per field costs a third of the time at 100k rows.
    g = r.get
    return {
        "appointment_id": _id(g("id")),
        "cliniko_business_id": link_id(g("business")),
        "patient_id": link_id(g("patient")),
        "practitioner_id": link_id(g("practitioner")),
        "appointment_type_id": link_id(g("appointment_type")),
        "starts_at": None if (v := g("starts_at")) == "" else v,
        "ends_at": None if (v := g("ends_at")) == "" else v,
        "did_not_arrive": None if (v := g("did_not_arrive")) == "" else v,
        "patient_arrived": None if (v := g("patient_arrived")) == "" else v,
        "cancelled_at": None if (v := g("cancelled_at")) == "" else v,
        "archived_at": None if (v := g("archived_at")) == "" else v,
        "deleted_at": None if (v := g("deleted_at")) == "" else v,
        "created_at": None if (v := g("created_at")) == "" else v,
        "updated_at": None if (v := g("updated_at")) == "" else v,
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
        "first_name": None if (v := g("first_name")) == "" else v,
        "last_name": None if (v := g("last_name")) == "" else v,
        "preferred_first_name": None if (v := g("preferred_first_name")) == "" else v,
        "email": None if (v := g("email")) == "" else v,
        "reminder_type": None if (v := g("reminder_type")) == "" else v,
        "phone_numbers": _phones(g("patient_phone_numbers")),
        "archived_at": None if (v := g("archived_at")) == "" else v,
        "deleted_at": None if (v := g("deleted_at")) == "" else v,
        "merged_at": None if (v := g("merged_at")) == "" else v,
        "created_at": None if (v := g("created_at")) == "" else v,
        "updated_at": None if (v := g("updated_at")) == "" else v,
    }


def normalise(
    rows: Iterable[Any], row: Callable[[dict[str, Any]], dict[str, Any]], columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Normalise a page; a record that is not even a JSON object becomes an all-null row (validation rejects
    it for its missing id) instead of stopping the partition."""
    empty = dict.fromkeys(columns)
    return [row(r) if isinstance(r, dict) else dict(empty) for r in rows]


# -- column-wise: one list per column and page, no dict per row ---------------------------------------------
#
# For the record API's longer walks: 200,000 rows as dicts are 200,000 objects the garbage collector walks
# again and again, and validation has to transpose them back into columns anyway. These functions give, for
# one page, exactly the values `normalise` would (a test holds them to that), one list per column. Each
# column is one comprehension over the page under the assumption that the page has the documented shape;
# when a page breaks it (a missing link object, a number for an id, a record that is not an object), that
# column, or the whole page, falls back to the row functions above.

Columns = dict[str, list[Any]]


def _page_column(records: list[dict[str, Any]], name: str) -> list[Any]:
    """Plain field, `""` -> None. Modern Cliniko sends null, so the `""` scan (in C) rarely finds anything."""
    values = [r.get(name) for r in records]
    if "" in values:
        return [None if v == "" else v for v in values]
    return values


def _page_links(records: list[dict[str, Any]], name: str) -> list[str | None]:
    """Related ids from link objects; `link_id` per value only if a value is not a plain `.../<id>` link."""
    try:
        tails = [(u := r[name]["links"]["self"])[u.rindex("/") + 1 :] for r in records]
    except (TypeError, KeyError, ValueError, AttributeError):
        return [link_id(r.get(name)) for r in records]
    if "" in tails or "?" in "".join(tails):
        return [link_id(r.get(name)) for r in records]
    return tails


def _page_ids(records: list[dict[str, Any]], name: str) -> list[str | None]:
    values = [r.get(name) for r in records]
    if "" in values or not all(v.__class__ is str for v in values):
        return [_id(v) for v in values]
    return values


def columns_of_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Columns:
    """Rows (as `normalise` makes them) -> columns."""
    return {c: [r[c] for r in rows] for c in columns}


def rows_of_columns(columns: Columns) -> list[dict[str, Any]]:
    """Columns -> rows (dicts in column order), for callers that want records."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _generic_columns(
    records: list[Any], row: Callable[[dict[str, Any]], dict[str, Any]], columns: tuple[str, ...]
) -> Columns:
    return columns_of_rows(normalise(records, row, columns), columns)


def appointment_columns(records: list[Any]) -> Columns:
    if not all(r.__class__ is dict for r in records):
        return _generic_columns(records, appointment_row, APPOINTMENT_COLUMNS)
    out: Columns = {
        "appointment_id": _page_ids(records, "id"),
        "cliniko_business_id": _page_links(records, "business"),
        "patient_id": _page_links(records, "patient"),
        "practitioner_id": _page_links(records, "practitioner"),
        "appointment_type_id": _page_links(records, "appointment_type"),
    }
    for name in APPOINTMENT_COLUMNS[5:]:
        out[name] = _page_column(records, name)
    return out


def patient_columns(records: list[Any]) -> Columns:
    if not all(r.__class__ is dict for r in records):
        return _generic_columns(records, patient_row, PATIENT_COLUMNS)
    out: Columns = {"patient_id": _page_ids(records, "id"), "is_missing": [False] * len(records)}
    for name in PATIENT_COLUMNS[2:]:
        if name == "phone_numbers":
            out[name] = [_phones(r.get("patient_phone_numbers")) for r in records]
        else:
            out[name] = _page_column(records, name)
    return out


def business_columns(records: list[Any]) -> Columns:
    return _generic_columns(records, business_row, BUSINESS_COLUMNS)


def appointment_type_columns(records: list[Any]) -> Columns:
    return _generic_columns(records, appointment_type_row, APPOINTMENT_TYPE_COLUMNS)


def practitioner_columns(records: list[Any]) -> Columns:
    return _generic_columns(records, practitioner_row, PRACTITIONER_COLUMNS)


def user_columns(records: list[Any]) -> Columns:
    return _generic_columns(records, user_row, USER_COLUMNS)


COLUMNS_OF: dict[Callable[[dict[str, Any]], dict[str, Any]], Callable[[list[Any]], Columns]] = {
    appointment_row: appointment_columns,
    patient_row: patient_columns,
    business_row: business_columns,
    appointment_type_row: appointment_type_columns,
    practitioner_row: practitioner_columns,
    user_row: user_columns,
}
