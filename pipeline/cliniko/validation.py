"""Raw Cliniko rows -> a typed DataFrame for the raw table, plus a quarantine of the rows that break it.

Two steps, both vectorised:
1. *Strict typing.* Each column is converted to its raw-table type (`str`, `boolean`, `datetime64[us, UTC]`,
   list of phone structs). A value of the wrong JSON type, or a timestamp that does not parse, is a failure
   for that row, never silently coerced: pandas' own coercion would turn `"yes"` into `True` and `5` into
   `"5"`. For raw pages, `pages.py` does this step in DuckDB, to the same outcome.
2. *The pandera schema* (lazy, so every failure is collected) checks what the table promises: ids present,
   unique and made of digits, `ends_at` present on appointments, the column types.

A failing row goes to the quarantine as `{record_id, reason, record_json}` with every reason it failed for,
and the partition goes on with the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pandera.pandas as pa

from pipeline.cliniko.pages import TypedPages
from pipeline.cliniko.records import (
    APPOINTMENT_COLUMNS,
    APPOINTMENT_TYPE_COLUMNS,
    ATTENDEE_COLUMNS,
    BUSINESS_COLUMNS,
    GROUP_APPOINTMENT_COLUMNS,
    PATIENT_COLUMNS,
    PRACTITIONER_COLUMNS,
)

UTC_TS = pd.DatetimeTZDtype("us", "UTC")
_ID = r"^\d+$"

# resource -> (columns, id column, {column: kind}); kind is one of id, str, ts, bool, phones, flag.
_LAYOUT: dict[str, tuple[tuple[str, ...], str, dict[str, str]]] = {
    "businesses": (
        BUSINESS_COLUMNS,
        "cliniko_business_id",
        {
            "cliniko_business_id": "id",
            "business_name": "str",
            "display_name": "str",
            "time_zone_identifier": "str",
            "country_code": "str",
            "archived_at": "ts",
            "deleted_at": "ts",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
    "appointment_types": (
        APPOINTMENT_TYPE_COLUMNS,
        "appointment_type_id",
        {
            "appointment_type_id": "id",
            "appointment_type_name": "str",
            "category": "str",
            "archived_at": "ts",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
    "appointments": (
        APPOINTMENT_COLUMNS,
        "appointment_id",
        {
            "appointment_id": "id",
            "cliniko_business_id": "id",
            "patient_id": "id",
            "practitioner_id": "id",
            "appointment_type_id": "id",
            "starts_at": "ts",
            "ends_at": "ts",
            "did_not_arrive": "bool",
            "patient_arrived": "bool",
            "cancelled_at": "ts",
            "archived_at": "ts",
            "deleted_at": "ts",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
    "practitioners": (
        PRACTITIONER_COLUMNS,
        "practitioner_id",
        {
            "practitioner_id": "id",
            "is_missing": "flag",
            "is_active": "bool",
            "user_id": "id",
            "first_name": "str",
            "last_name": "str",
            "email": "str",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
    "group_appointments": (
        GROUP_APPOINTMENT_COLUMNS,
        "group_appointment_id",
        {
            "group_appointment_id": "id",
            "cliniko_business_id": "id",
            "practitioner_id": "id",
            "appointment_type_id": "id",
            "starts_at": "ts",
            "ends_at": "ts",
            "archived_at": "ts",
            "deleted_at": "ts",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
    "attendees": (
        ATTENDEE_COLUMNS,
        "attendee_id",
        {
            "attendee_id": "id",
            "booking_id": "id",
            "patient_id": "id",
            "arrived": "bool",
            "cancelled_at": "ts",
            "archived_at": "ts",
            "deleted_at": "ts",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
    "patients": (
        PATIENT_COLUMNS,
        "patient_id",
        {
            "patient_id": "id",
            "is_missing": "flag",
            "first_name": "str",
            "last_name": "str",
            "preferred_first_name": "str",
            "email": "str",
            "reminder_type": "str",
            "phone_numbers": "phones",
            "archived_at": "ts",
            "deleted_at": "ts",
            "merged_at": "ts",
            "created_at": "ts",
            "updated_at": "ts",
        },
    ),
}
RESOURCES: tuple[str, ...] = tuple(_LAYOUT)


_REQUIRED = {"appointments": {"ends_at"}, "group_appointments": {"ends_at"}, "attendees": {"booking_id"}}


def _column(kind: str, required: bool, primary: bool) -> pa.Column:
    if kind == "id":
        return pa.Column(
            "str",
            nullable=not required,
            checks=pa.Check.str_matches(_ID),
            unique=primary,
            report_duplicates="exclude_first",
        )
    dtype = {"str": "str", "ts": UTC_TS, "bool": "boolean", "flag": "bool", "phones": object}[kind]
    return pa.Column(dtype, nullable=not required)


def _schema(resource: str) -> pa.DataFrameSchema:
    columns, id_column, kinds = _LAYOUT[resource]
    # A visit needs its end (to find its day) and an attendee its class; without them a row is quarantined.
    required = {id_column} | _REQUIRED.get(resource, set())
    return pa.DataFrameSchema(
        {c: _column(kinds[c], c in required, c == id_column) for c in columns},
        strict=True,
        ordered=True,
        name=f"raw.cliniko_{resource}",
    )


SCHEMAS: dict[str, pa.DataFrameSchema] = {resource: _schema(resource) for resource in _LAYOUT}


def validate(resource: str, records: Any) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """`(valid rows typed as raw.cliniko_<resource>, quarantine)` for `resource` in businesses,
    appointment_types, appointments, group_appointments, attendees, patients, practitioners. `records` is a
    list of rows, a dict of columns (one list per column, as `ClinikoClient.individual_appointment_columns`
    gives), or the `TypedPages` of the assets' bulk path (typed by DuckDB already; the only form classes come
    in). Quarantine items are `{"record_id", "reason", "record_json"}`; valid rows keep their order."""
    if resource not in _LAYOUT:
        raise ValueError(f"unknown resource {resource!r}; expected one of {', '.join(RESOURCES)}")
    columns, id_column, kinds = _LAYOUT[resource]
    if isinstance(records, TypedPages):
        return _validate_typed(resource, records)
    values = [records[c] for c in columns] if isinstance(records, dict) else _columnwise(records, columns)
    reasons: dict[int, list[str]] = defaultdict(list)
    typed: dict[str, Any] = {}
    for column, column_values in zip(columns, values, strict=True):
        typed[column] = _typed(column, kinds[column], pd.Series(column_values, dtype=object), reasons)
    frame = pd.DataFrame(typed, columns=list(columns))
    _check_schema(resource, frame, reasons)

    def record(i: int) -> tuple[Any, str]:
        row = records[i] if not isinstance(records, dict) else {c: records[c][i] for c in columns}
        return row.get(id_column), orjson.dumps(row, default=str).decode()

    return _split(frame, reasons, record)


def _validate_typed(resource: str, pages: TypedPages) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Step 2 for rows DuckDB typed (step 1 in `pages.py`): the same pandera schema, the same quarantine."""
    columns, id_column, kinds = _LAYOUT[resource]
    frame = pages.frame[list(columns)].copy()
    for column in columns:  # DuckDB's pandas types -> the schema's (e.g. an all-null column is object)
        kind = kinds[column]
        if kind in ("id", "str"):
            frame[column] = frame[column].astype("str")
        elif kind == "ts":
            frame[column] = frame[column].astype(UTC_TS)
        elif kind == "bool":
            frame[column] = frame[column].astype("boolean")
        elif kind == "flag":
            frame[column] = frame[column].astype(bool)
        else:  # phones: lists, and None (not pandas' NA) where there is none, as step 1 gives
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    reasons: dict[int, list[str]] = defaultdict(list)
    typing = pages.frame["_reason"]
    for i in np.flatnonzero(typing.notna().to_numpy()):
        reasons[int(i)].append(typing.iat[i])
    _check_schema(resource, frame, reasons)
    return _split(frame, reasons, lambda i: (frame[id_column].iat[i], pages.record_json(i)))


def _split(
    frame: pd.DataFrame, reasons: dict[int, list[str]], record: Callable[[int], tuple[Any, str]]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(valid rows, quarantine) from the reasons by row; `record(i)` gives row i's (id, record as JSON)."""
    if not reasons:
        return frame, []
    quarantine = []
    for i in sorted(reasons):
        record_id, record_json = record(i)
        quarantine.append(
            {
                "record_id": record_id if isinstance(record_id, str) else None,
                "reason": "; ".join(dict.fromkeys(reasons[i])),
                "record_json": record_json,
            }
        )
    return frame.drop(index=sorted(reasons)).reset_index(drop=True), quarantine


def _check_schema(resource: str, frame: pd.DataFrame, reasons: dict[int, list[str]]) -> None:
    """Step 2: the pandera schema (lazy: every failure of every row is noted in `reasons`)."""
    try:
        SCHEMAS[resource].validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        for case in exc.failure_cases.itertuples(index=False):
            if pd.isna(case.index):
                raise
            reasons[int(case.index)].append(_describe(case.column, case.check, case.failure_case))


def _columnwise(records: list[dict[str, Any]], columns: tuple[str, ...]) -> list[list[Any]]:
    """Records -> one list per column (a comprehension per column is the fastest transpose in CPython)."""
    try:
        return [[r[c] for r in records] for c in columns]
    except KeyError:
        return [[r.get(c) for r in records] for c in columns]


def _wrong_type(raw: pd.Series, present: pd.Series, expected: type, inferred: str) -> pd.Series:
    """Rows holding a value of another type than `expected`; the common all-good case is decided in C."""
    if pd.api.types.infer_dtype(raw, skipna=True) in (inferred, "empty"):
        return pd.Series(False, index=raw.index)
    return present & (raw.map(type) != expected)


def _typed(column: str, kind: str, raw: pd.Series, reasons: dict[int, list[str]]) -> Any:
    """Convert one column to its table type; note every row whose value has the wrong type."""
    present = raw.notna()
    if kind in ("id", "str"):
        wrong = _wrong_type(raw, present, str, "string")
        _note(reasons, raw, wrong, column, "expected text")
        return raw.where(~wrong).astype("str")
    if kind == "ts":
        wrong = _wrong_type(raw, present, str, "string")
        parsed = pd.to_datetime(raw.where(~wrong), utc=True, format="ISO8601", errors="coerce")
        _note(reasons, raw, wrong | (present & ~wrong & parsed.isna()), column, "unparsable timestamp")
        return parsed.astype(UTC_TS)
    if kind in ("bool", "flag"):
        wrong = _wrong_type(raw, present, bool, "boolean")
        _note(reasons, raw, wrong, column, "expected true/false")
        result = raw.where(~wrong).astype("boolean")
        return result.fillna(False).astype(bool) if kind == "flag" else result
    wrong = present & ~raw.map(_is_phone_list).astype(bool)
    _note(reasons, raw, wrong, column, "expected a list of {phone_type, number}")
    return raw.where(~wrong, None)


def _is_phone_list(value: Any) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(
            isinstance(p, dict)
            and set(p) == {"phone_type", "number"}
            and all(v is None or isinstance(v, str) for v in p.values())
            for p in value
        )
    )


def _note(reasons: dict[int, list[str]], raw: pd.Series, wrong: pd.Series, column: str, what: str) -> None:
    if not wrong.any():
        return
    for i in wrong[wrong].index:
        reasons[int(i)].append(f"{column}: {what}, got {_show(raw.iat[i])}")


def _describe(column: str, check: str, value: Any) -> str:
    if check == "not_nullable":
        return f"{column}: missing"
    if check == "field_uniqueness":
        return f"{column}: duplicate id {value!r}"
    if check.startswith("str_matches"):
        return f"{column}: not a Cliniko id, got {_show(value)}"
    return f"{column}: failed {check}, got {_show(value)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
