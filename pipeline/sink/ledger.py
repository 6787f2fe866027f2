"""The review-request ledger: every state change of `sink.review_request_ledger`, one short transaction each.

The ledger is a table of the group's DuckDB warehouse, or with `DATABASE_URL` one table in PostgreSQL shared
by every host (`sql/postgres/0003_ledger.sql`); each function here runs the same SQL on either (`$name`
parameters, arrays cast to their type). Callers pass an open connection (`pipeline.warehouse.connect`, or an
autocommit one of `pipeline.postgres.take`) and give it back right after: nothing here holds the ledger across
an HTTP call.

In PostgreSQL the warehouse keeps a copy of the rows its models and the analysts read: `copy_rows` of
`DECISION_ROWS` before a partition is decided, `push_claims` after (both under the group's advisory lock, so a
decision on one host sees the claims of another), and `copy_rows` of its rows after a posting run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import duckdb

from pipeline.calendar import store
from pipeline.postgres import insert_rows
from pipeline.postgres import run as _run
from pipeline.warehouse import run_sql_file
from pipeline.warehouse.models import refuse_if_superseded

if TYPE_CHECKING:
    import psycopg2.extensions

    Connection = duckdb.DuckDBPyConnection | psycopg2.extensions.connection

STATUSES = ("pending", "sending", "sent", "failed", "uncertain", "dry_run")
REQUEUEABLE = ("uncertain", "failed")
TABLE = "sink.review_request_ledger"

_KEYS = (
    "select unnest($business_numbers::varchar[]) as business_number, "
    "unnest($appointment_ids::varchar[]) as appointment_id"
)
# Every column, with its type, in table order: what a copy between the stores carries.
COLUMNS = {
    "business_number": "varchar",
    "appointment_id": "varchar",
    "partition_date": "date",
    "target_date": "date",
    "group_id": "bigint",
    "patient_id": "varchar",
    "channels": "varchar",
    "status": "varchar",
    "attempts": "integer",
    "error_code": "varchar",
    "error_message": "varchar",
    "birdeye_customer_id": "varchar",
    "first_attempt_at": "timestamptz",
    "sent_at": "timestamptz",
    "updated_at": "timestamptz",
    "run_id": "varchar",
    "next_attempt_at": "timestamptz",
    "requeued_at": "timestamptz",
}


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


def key_params(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    return {"business_numbers": [k[0] for k in keys], "appointment_ids": [k[1] for k in keys]}


def fail_unposted(
    con: Connection, rejections: Sequence[tuple[str, str, str | None, str]], now: datetime
) -> int:
    """`pending` rows Birdeye would certainly answer 400, as (business number, appointment id, code, message):
    `failed` without a POST, their message prefixed `not posted: `."""
    if not rejections:
        return 0
    rows = _run(
        con,
        f"""
        update {TABLE} as l
        set status = 'failed', error_code = u.code, error_message = 'not posted: ' || u.message,
            updated_at = $now
        from (
            select unnest($business_numbers::varchar[]) as business_number,
                   unnest($appointment_ids::varchar[]) as appointment_id,
                   unnest($codes::varchar[]) as code, unnest($messages::varchar[]) as message
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


def sending_run_ids(con: Connection) -> list[str]:
    """Runs that have rows in flight (or had, if they died)."""
    rows = _run(con, f"select distinct run_id from {TABLE} where status = 'sending'").fetchall()
    return [r[0] for r in rows]


def mark_run_died(con: Connection, run_id: str, now: datetime) -> int:
    """A dead run's `sending` rows: Birdeye may or may not have them, so they become `uncertain`."""
    rows = _run(
        con,
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
    con: Connection, keys: Sequence[tuple[str, str]], run_id: str, limit: int, now: datetime
) -> list[tuple[str, str, int]]:
    """Mark up to `limit` due `pending` rows of `keys` `sending` by `run_id`.

    Returns (business number, appointment id, attempts) of each claimed row.

    Runs under the warehouse lock, so two runs can never claim the same row: the first makes it `sending`.
    """
    return _run(
        con,
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
          and l.status = 'pending'  -- PostgreSQL re-reads a row another host claimed meanwhile: not ours then
        returning l.business_number, l.appointment_id, l.attempts
        """,
        {**key_params(keys), "run_id": run_id, "limit": limit, "now": now},
    ).fetchall()


def next_due(con: Connection, keys: Sequence[tuple[str, str]]) -> datetime | None:
    """When the earliest `pending` row among `keys` may be claimed; None when none is pending."""
    row = _run(
        con,
        f"""
        select count(*), min(coalesce(p.next_attempt_at, p.updated_at))
        from {TABLE} as p join ({_KEYS}) as k using (business_number, appointment_id)
        where p.status = 'pending'
        """,
        key_params(keys),
    ).fetchone()
    return row[1] if row[0] else None


def record(con: Connection, results: Sequence[Result], run_id: str, now: datetime) -> None:
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
    _run(
        con,
        f"""
        update {TABLE} as l
        set status = u.status, error_code = u.error_code, error_message = u.error_message,
            attempts = l.attempts - cast(u.refused as integer),
            birdeye_customer_id = coalesce(u.customer_id, l.birdeye_customer_id),
            sent_at = coalesce(u.sent_at, l.sent_at), next_attempt_at = u.next_attempt_at, updated_at = $now
        from (
            select unnest($business_number::varchar[]) as business_number,
                   unnest($appointment_id::varchar[]) as appointment_id,
                   unnest($status::varchar[]) as status, unnest($error_code::varchar[]) as error_code,
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


def counts(con: Connection, keys: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Rows by status among `keys`, every status present (0 when none)."""
    found = dict(
        _run(
            con,
            f"""
            select p.status, count(*)
            from {TABLE} as p join ({_KEYS}) as k using (business_number, appointment_id)
            group by p.status
            """,
            key_params(keys),
        ).fetchall()
    )
    return {status: int(found.get(status, 0)) for status in STATUSES}


_LISTED = (
    "business_number, partition_date, target_date, appointment_id, patient_id, channels, status, attempts, "
    "error_code, error_message, birdeye_customer_id, first_attempt_at, sent_at, updated_at"
)


def select_for_requeue(
    con: Connection,
    *,
    business_numbers: Iterable[str] | None,
    partition_dates: Iterable[date] | None,
    statuses: Iterable[str],
    appointment_ids: Iterable[str] | None,
) -> list[dict[str, Any]]:
    clauses = ["status in (select unnest($statuses::varchar[]))"]
    params: dict[str, Any] = {"statuses": list(statuses)}
    for column, values, kind in (
        ("business_number", business_numbers, "varchar"),
        ("partition_date", partition_dates, "date"),
        ("appointment_id", appointment_ids, "varchar"),
    ):
        if values is not None:
            clauses.append(f"{column} in (select unnest(${column}s::{kind}[]))")
            params[f"{column}s"] = list(values)
    cursor = _run(
        con,
        f"select {_LISTED} from {TABLE} where {' and '.join(clauses)} "
        "order by business_number, partition_date, appointment_id",
        params,
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def move_to_pending(
    con: Connection, keys: Sequence[tuple[str, str]], statuses: Sequence[str], now: datetime
) -> int:
    """Requeue: back to `pending` with a fresh retry budget; the last error stays until the next outcome."""
    rows = _run(
        con,
        f"""
        update {TABLE} as l set status = 'pending', attempts = 0, next_attempt_at = null, run_id = null,
            requeued_at = $now, updated_at = $now
        from ({_KEYS}) as k
        where l.business_number = k.business_number and l.appointment_id = k.appointment_id
          and l.status in (select unnest($statuses::varchar[]))
        returning l.appointment_id
        """,
        {**key_params(keys), "statuses": list(statuses), "now": now},
    ).fetchall()
    return len(rows)


# The rows a decision reads (sql/marts/appointment_eligibility.sql): its partition's, and its group's whose
# target day can fall inside the partition's cool-off window (the same bounds as the model's `live_requests`).
DECISION_ROWS = """
    (business_number = $business_number and partition_date = cast($partition_date as date))
    or (group_id = $group_id
        and target_date > cast($target_date as date) - cast($cooloff_days as integer)
        and target_date < cast($target_date as date) + cast($cooloff_days as integer))
"""
KEY_ROWS = f"exists (select 1 from ({_KEYS}) as k where k.business_number = {TABLE}.business_number "
KEY_ROWS += f"and k.appointment_id = {TABLE}.appointment_id)"


def _rows(con: Connection, where: str = "true", params: dict[str, Any] | None = None) -> list[tuple]:
    """Every column (`COLUMNS`) of the rows matching `where`."""
    return _run(con, f"select {', '.join(COLUMNS)} from {TABLE} where {where}", params).fetchall()


def copy_rows(source: Connection, target: Connection, where: str, params: dict[str, Any]) -> int:
    """Make `target`'s rows matching `where` those of `source` (deleted, then inserted); returns how many.

    Between the two stores, so `where` and `params` must read alike in both (see `DECISION_ROWS`). A row
    whose copy changes gets `updated_at` = now in `target`: the analysts' export takes `updated_at` as "this
    warehouse's copy changed", and a row another run changed earlier would slip under its watermark. A row
    that did not change keeps the target's `updated_at`.
    """
    stamp = list(COLUMNS).index("updated_at")

    def content(row: tuple) -> tuple:
        return row[:stamp] + row[stamp + 1 :]

    kept = {content(row): row for row in _rows(target, where, params)}
    now = datetime.now(UTC)
    rows = [
        kept.get(content(row)) or (*row[:stamp], now, *row[stamp + 1 :])
        for row in _rows(source, where, params)
    ]
    _run(target, f"delete from {TABLE} where {where}", params)
    _insert(target, rows, conflict="")
    return len(rows)


def _insert(con: Connection, rows: Sequence[tuple], *, conflict: str) -> None:
    insert_rows(con, TABLE, COLUMNS, list(rows), conflict)


def push_claims(warehouse: duckdb.DuckDBPyConnection, shared: Connection, params: dict[str, Any]) -> None:
    """The claims the warehouse just made for a partition (`sql/sink/claims.sql`), made in `shared` too:
    its `pending` rows and dry runs the decision no longer makes are withdrawn, the new ones inserted, the
    rest left as they are there (a posting run may have taken them since)."""
    partition = {"business_number": params["business_number"], "partition_date": params["partition_date"]}
    where = "business_number = $business_number and partition_date = cast($partition_date as date)"
    rows = _rows(warehouse, where, partition)
    _run(
        shared,
        f"delete from {TABLE} where {where} and status in ('pending', 'dry_run') "
        "and appointment_id not in (select unnest($kept::varchar[]))",
        {**partition, "kept": [row[1] for row in rows]},
    )
    _insert(shared, rows, conflict="on conflict do nothing")


class SharedDecision:
    """PostgreSQL's ledger during one decision (`shared_decision`): what `build_partition` calls inside its
    warehouse transaction, before deciding (`pull`) and after claiming (`push`)."""

    def __init__(self, con: psycopg2.extensions.connection) -> None:
        self.con = con

    def pull(self, warehouse: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        """The warehouse's copy of the rows the decision reads, made PostgreSQL's. A warehouse's first
        decision with PostgreSQL first copies its whole ledger there (kept before `DATABASE_URL` was set).
        Raises `BuiltByNewerRun` if a newer run of any host built the partition: the advisory lock held from
        here to `push` makes that answer hold until this decision commits."""
        warehouse.execute("create table if not exists sink.ledger_shared (since timestamptz not null)")
        if warehouse.execute("select count(*) from sink.ledger_shared").fetchone()[0] == 0:
            _insert(self.con, _rows(warehouse), conflict="on conflict do nothing")
            warehouse.execute("insert into sink.ledger_shared values (current_timestamp)")
        store.share_runs(warehouse, self.con)
        refuse_if_superseded(self.con, params, run=_run)
        copy_rows(self.con, warehouse, DECISION_ROWS, {name: params[name] for name in _DECISION_PARAMS})

    def push(self, warehouse: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        """The claims and the build's run made in PostgreSQL too, and committed there (which ends the group's
        lock) before the warehouse commits: a warehouse never holds a claim, or a note that its ledger was
        copied, that PostgreSQL lacks."""
        push_claims(warehouse, self.con, params)
        store.record_shared_build(warehouse, self.con, params["run_id"])
        self.con.commit()


_DECISION_PARAMS = ("business_number", "partition_date", "group_id", "target_date", "cooloff_days")


@contextmanager
def shared_decision(database_url: str | None, group_id: int) -> Iterator[SharedDecision | None]:
    """With `database_url`, a PostgreSQL transaction holding group `group_id`'s advisory lock for a decision:
    decisions of a group, on any host, happen one at a time, each seeing the claims of those before. `push`
    commits it, before the warehouse commits; it is rolled back if the block raises first. Without, None:
    the warehouse's own lock does it."""
    if database_url is None:
        yield None
        return
    from pipeline.postgres import locked_transaction

    with locked_transaction(database_url, f"decide-group-{group_id}") as con:
        yield SharedDecision(con)
