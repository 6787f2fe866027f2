"""The review-request ledger: every state change of `sink.review_request_ledger`, one short transaction each.

Callers pass an open connection from `pipeline.warehouse.connect` and close it right after: nothing here
holds the warehouse across an HTTP call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb

from pipeline.warehouse import run_sql_file

STATUSES = ("pending", "sending", "sent", "failed", "uncertain", "dry_run")
REQUEUEABLE = ("uncertain", "failed")
TABLE = "sink.review_request_ledger"

_KEYS = "select unnest($business_numbers) as business_number, unnest($appointment_ids) as appointment_id"


@dataclass(frozen=True)
class Result:
    """The recorded outcome of one claimed row."""

    business_number: str
    appointment_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    customer_id: str | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    refused: bool = False  # Birdeye refused the key: the POST does not count as an attempt


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    run_sql_file(con, "sink/review_request_ledger.sql")


def _key_params(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    return {"business_numbers": [k[0] for k in keys], "appointment_ids": [k[1] for k in keys]}


def fail_unposted(
    con: duckdb.DuckDBPyConnection, rejections: Sequence[tuple[str, str, str | None, str]], now: datetime
) -> int:
    """`pending` rows Birdeye would certainly answer 400, as (business number, appointment id, code, message):
    `failed` without a POST, their message prefixed `not posted: `."""
    if not rejections:
        return 0
    rows = con.execute(
        f"""
        update {TABLE} as l
        set status = 'failed', error_code = u.code, error_message = 'not posted: ' || u.message,
            updated_at = $now
        from (
            select unnest($business_numbers) as business_number, unnest($appointment_ids) as appointment_id,
                   unnest($codes::varchar[]) as code, unnest($messages) as message
        ) as u
        where l.business_number = u.business_number and l.appointment_id = u.appointment_id
          and l.status = 'pending'
        returning l.appointment_id
        """,
        {
            "business_numbers": [r[0] for r in rejections],
            "appointment_ids": [r[1] for r in rejections],
            "codes": [r[2] for r in rejections],
            "messages": [r[3] for r in rejections],
            "now": now,
        },
    ).fetchall()
    return len(rows)


def sending_run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs that have rows in flight (or had, if they died)."""
    rows = con.execute(f"select distinct run_id from {TABLE} where status = 'sending'").fetchall()
    return [r[0] for r in rows]


def mark_run_died(con: duckdb.DuckDBPyConnection, run_id: str, now: datetime) -> int:
    """A dead run's `sending` rows: Birdeye may or may not have them, so they become `uncertain`."""
    rows = con.execute(
        f"""
        update {TABLE} set status = 'uncertain', error_code = 'run_died', updated_at = $now,
            error_message = 'the run posting this request died before recording the outcome; '
                            || 'Birdeye may have received it'
        where status = 'sending' and run_id = $run_id
        returning appointment_id
        """,
        {"run_id": run_id, "now": now},
    ).fetchall()
    return len(rows)


def claim(
    con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]], run_id: str, limit: int, now: datetime
) -> list[tuple[str, str, int]]:
    """Mark up to `limit` due `pending` rows of `keys` `sending` by `run_id`.

    Returns (business number, appointment id, attempts) of each claimed row.

    Runs under the warehouse lock, so two runs can never claim the same row: the first makes it `sending`.
    """
    return con.execute(
        f"""
        update {TABLE} as l
        set status = 'sending', attempts = l.attempts + 1,
            first_attempt_at = coalesce(l.first_attempt_at, $now), run_id = $run_id, next_attempt_at = null,
            updated_at = $now
        from (
            select p.business_number, p.appointment_id
            from {TABLE} as p
            join ({_KEYS}) as k using (business_number, appointment_id)
            where p.status = 'pending' and (p.next_attempt_at is null or p.next_attempt_at <= $now)
            order by p.next_attempt_at nulls first, p.appointment_id
            limit $limit
        ) as c
        where l.business_number = c.business_number and l.appointment_id = c.appointment_id
        returning l.business_number, l.appointment_id, l.attempts
        """,
        {**_key_params(keys), "run_id": run_id, "limit": limit, "now": now},
    ).fetchall()


def next_due(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]]) -> datetime | None:
    """When the earliest `pending` row among `keys` may be claimed; None when none is pending."""
    row = con.execute(
        f"""
        select count(*), min(coalesce(p.next_attempt_at, p.updated_at))
        from {TABLE} as p join ({_KEYS}) as k using (business_number, appointment_id)
        where p.status = 'pending'
        """,
        _key_params(keys),
    ).fetchone()
    return row[1] if row[0] else None


def record(con: duckdb.DuckDBPyConnection, results: Sequence[Result], run_id: str, now: datetime) -> None:
    """Write a batch's outcomes in one statement; only rows still `sending` by this run are touched."""
    if not results:
        return
    names = [
        "business_number",
        "appointment_id",
        "status",
        "error_code",
        "error_message",
        "customer_id",
        "refused",
    ]
    params: dict[str, Any] = {name: [getattr(r, name) for r in results] for name in names}
    params |= {
        "sent_at": [r.sent_at for r in results],
        "next_attempt_at": [r.next_attempt_at for r in results],
        "run_id": run_id,
        "now": now,
    }
    con.execute(
        f"""
        update {TABLE} as l
        set status = u.status, error_code = u.error_code, error_message = u.error_message,
            attempts = l.attempts - cast(u.refused as integer),
            birdeye_customer_id = coalesce(u.customer_id, l.birdeye_customer_id),
            sent_at = coalesce(u.sent_at, l.sent_at), next_attempt_at = u.next_attempt_at, updated_at = $now
        from (
            select unnest($business_number) as business_number, unnest($appointment_id) as appointment_id,
                   unnest($status) as status, unnest($error_code::varchar[]) as error_code,
                   unnest($error_message::varchar[]) as error_message,
                   unnest($customer_id::varchar[]) as customer_id, unnest($sent_at::timestamptz[]) as sent_at,
                   unnest($next_attempt_at::timestamptz[]) as next_attempt_at,
                   unnest($refused::boolean[]) as refused
        ) as u
        where l.business_number = u.business_number and l.appointment_id = u.appointment_id
          and l.status = 'sending' and l.run_id = $run_id
        """,
        params,
    )


def counts(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Rows by status among `keys`, every status present (0 when none)."""
    found = dict(
        con.execute(
            f"""
            select p.status, count(*)
            from {TABLE} as p join ({_KEYS}) as k using (business_number, appointment_id)
            group by p.status
            """,
            _key_params(keys),
        ).fetchall()
    )
    return {status: int(found.get(status, 0)) for status in STATUSES}


_LISTED = (
    "business_number, partition_date, target_date, appointment_id, patient_id, channels, status, attempts, "
    "error_code, error_message, birdeye_customer_id, first_attempt_at, sent_at, updated_at"
)


def select_for_requeue(
    con: duckdb.DuckDBPyConnection,
    *,
    business_numbers: Iterable[str] | None,
    partition_dates: Iterable[date] | None,
    statuses: Iterable[str],
    appointment_ids: Iterable[str] | None,
) -> list[dict[str, Any]]:
    clauses = ["list_contains($statuses, status)"]
    params: dict[str, Any] = {"statuses": list(statuses)}
    for column, values in (
        ("business_number", business_numbers),
        ("partition_date", partition_dates),
        ("appointment_id", appointment_ids),
    ):
        if values is not None:
            clauses.append(f"list_contains(${column}s, {column})")
            params[f"{column}s"] = list(values)
    cursor = con.execute(
        f"select {_LISTED} from {TABLE} where {' and '.join(clauses)} "
        "order by business_number, partition_date, appointment_id",
        params,
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def move_to_pending(
    con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]], statuses: Sequence[str], now: datetime
) -> int:
    """Requeue: back to `pending` with a fresh retry budget; the last error stays until the next outcome."""
    rows = con.execute(
        f"""
        update {TABLE} as l set status = 'pending', attempts = 0, next_attempt_at = null, run_id = null,
            requeued_at = $now, updated_at = $now
        from ({_KEYS}) as k
        where l.business_number = k.business_number and l.appointment_id = k.appointment_id
          and list_contains($statuses, l.status)
        returning l.appointment_id
        """,
        {**_key_params(keys), "statuses": list(statuses), "now": now},
    ).fetchall()
    return len(rows)
