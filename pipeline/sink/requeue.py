"""The operator's way back for `uncertain` and `failed` rows: list them, then put chosen ones to `pending`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipeline.sink import ledger
from pipeline.sink.post import ledger_connection


def requeue(
    warehouse_path: Path | str | None,
    *,
    database_url: str | None = None,
    business_numbers: Iterable[str] | None = None,
    partition_dates: Iterable[date | str] | None = None,
    statuses: Iterable[str] = ledger.REQUEUEABLE,
    appointment_ids: Iterable[str] | None = None,
    dry_run: bool = True,
) -> list[dict[str, Any]]:
    """The ledger rows that match every given filter; with `dry_run=False` they are moved back to `pending`.

    Only `uncertain` and `failed` rows can be requeued: a `sent` or `dry_run` row is settled, and a `sending`
    row belongs to a live run (or becomes `uncertain` at the next run). Re-posting an `uncertain` row may
    reach Birdeye twice; that is the operator's decision. A requeued row is posted by the next run of its
    partition.
    The ledger is the group's warehouse's (`warehouse_path`), or every group's in PostgreSQL with
    `database_url`; there the warehouses' copies show the change after the partition's next run.
    Returned rows carry no contact details (the ledger holds none).
    """
    statuses = list(statuses)
    wrong = sorted(set(statuses) - set(ledger.REQUEUEABLE))
    if wrong:
        raise ValueError(
            f"cannot requeue status {wrong}; only {list(ledger.REQUEUEABLE)} can go back to pending"
        )
    dates = (
        None
        if partition_dates is None
        else [d if isinstance(d, date) else date.fromisoformat(d) for d in partition_dates]
    )
    with ledger_connection(warehouse_path, database_url) as con:
        rows = ledger.select_for_requeue(
            con,
            business_numbers=None if business_numbers is None else [str(b) for b in business_numbers],
            partition_dates=dates,
            statuses=statuses,
            appointment_ids=None if appointment_ids is None else [str(a) for a in appointment_ids],
        )
        if not dry_run and rows:
            keys = [(r["business_number"], r["appointment_id"]) for r in rows]
            ledger.move_to_pending(con, keys, statuses, datetime.now(UTC))
    return rows
