"""Typed Cliniko pages -> the raw tables and the quarantine, in one short DuckDB transaction.

Kept apart from the Dagster assets (and free of Dagster imports) so that the ingestion benchmark measures
exactly the path the assets take: client pages -> `type_pages` -> `store_records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.warehouse.connection import connect
from pipeline.warehouse.pages import ID_COLUMN, TypedPages
from pipeline.warehouse.slices import ensure_tables, replace_slice, upsert_rows

QUARANTINE_COLUMNS = [
    "business_number",
    "partition_date",
    "resource",
    "record_id",
    "reason",
    "record",
    "quarantined_at",
]


def store_records(
    warehouse_path: Path,
    business_number: str,
    partition_date: date,
    resource: str,
    table: str,
    records: TypedPages | None,
    *,
    whole_mapping: bool = False,
    missing_ids: Sequence[str] = (),
    upsert: bool = False,
) -> tuple[int, int]:
    """Store the rows of `records` that typed cleanly in `table`, the others (with their reasons) in the
    quarantine, and a row with `is_missing = true` for each of `missing_ids` (asked for by id, no longer
    returned: `TypedPages.not_returned`); `None` stores no Cliniko row. Returns (stored, quarantined).

    By default the partition's slice is replaced (rows Cliniko no longer returns disappear, re-runs are
    idempotent); `upsert=True` inserts or replaces by primary key instead, for loads that add to a table.
    """
    valid, quarantined = records.split() if records is not None else (pd.DataFrame(), [])
    now = datetime.now(UTC)
    frame = valid
    if missing_ids:
        missing = pd.DataFrame(
            {ID_COLUMN[resource]: pd.Series(list(missing_ids), dtype="str"), "is_missing": True}
        )
        frame = pd.concat([frame, missing], ignore_index=True) if len(frame) else missing
    frame = frame.assign(business_number=business_number, loaded_at=now)
    slice_key: dict[str, Any] = {"business_number": business_number}
    if not whole_mapping:
        frame = frame.assign(partition_date=partition_date)
        slice_key["partition_date"] = partition_date
    quarantine = pd.DataFrame(
        [
            {
                "business_number": business_number,
                "partition_date": partition_date,
                "resource": resource,
                "record_id": q["record_id"],
                "reason": q["reason"],
                "record": q["record_json"],
                "quarantined_at": now,
            }
            for q in quarantined
        ],
        columns=QUARANTINE_COLUMNS,
    )
    with connect(warehouse_path) as con:
        ensure_tables(con)
        stored = upsert_rows(con, table, frame) if upsert else replace_slice(con, table, frame, slice_key)
        replace_slice(
            con,
            "raw.cliniko_quarantine",
            quarantine,
            {"business_number": business_number, "partition_date": partition_date, "resource": resource},
        )
    return stored, len(quarantined)
