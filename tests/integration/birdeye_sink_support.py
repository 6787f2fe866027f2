"""Shared by the sink tests: eligible rows, ledger reads, duplicate counting at the emulator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.sink.post import ledger_connection
from pipeline.warehouse import connect
from pipeline.warehouse.slices import ensure_tables

KEY = "sink-test-key-7f3a"


def eligible_rows(
    n: int, *, business_number: str = "166015909542313", start: int = 0, **overrides
) -> list[dict]:
    return [
        {
            "business_number": business_number,
            "appointment_id": str(1000 + i),
            "partition_date": "2026-11-24",
            "target_date": "2026-11-24",
            "group_id": 7,
            "patient_id": str(500 + i),
            "channels": "sms,email",
            "sms_phone": "+61412345678",
            "email": f"patient{i}@example.com",
            "patient_name": f"Patient {i}",
            "location_name": "Fitzroy",
        }
        | overrides
        for i in range(start, start + n)
    ]


def claim(
    warehouse: Path, rows: list[dict], status: str = "pending", database_url: str | None = None
) -> None:
    """Put `rows` in the ledger (the warehouse's, or PostgreSQL's with `database_url`) as the models'
    claims do (sql/sink/claims.sql); known rows stay as is."""
    with connect(warehouse) as con:
        ensure_tables(con)
    with ledger_connection(warehouse, database_url) as con:
        (con if database_url is None else con.cursor()).executemany(
            "insert into sink.review_request_ledger (business_number, appointment_id, partition_date, "
            "target_date, group_id, patient_id, channels, status, updated_at) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, current_timestamp) on conflict do nothing".replace(
                "%s", "?" if database_url is None else "%s"
            ),
            [
                [r["business_number"], r["appointment_id"], r["partition_date"], r["target_date"],
                 r["group_id"], r["patient_id"], r["channels"], status]
                for r in rows
            ],
        )  # fmt: skip


def ledger_rows(
    warehouse: Path, database_url: str | None = None, business_numbers: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """appointment id -> ledger row, of the warehouse's ledger, or PostgreSQL's with `database_url`; only
    the rows of `business_numbers` when given (appointment ids repeat across businesses)."""
    with ledger_connection(warehouse, database_url) as con:
        cursor = con if database_url is None else con.cursor()
        cursor.execute("select * from sink.review_request_ledger order by business_number, appointment_id")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return {
        r["appointment_id"]: r
        for r in rows
        if business_numbers is None or r["business_number"] in business_numbers
    }


def delivered_counts(records) -> Counter:
    """How many times Birdeye processed each (business, appointment)."""
    return Counter((r.bid, r.appointment_id) for r in records if r.delivered)
