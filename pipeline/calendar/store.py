"""The calendar's bookkeeping: runs of partitions, in each group's warehouse, and alerts, in the alerts file
(`sql/calendar/`); with `DATABASE_URL` both are in PostgreSQL too (`sql/postgres/0004_alerts.sql`,
`0005_partition_runs.sql`), which every host shares.

- Runs: a group's warehouse always records its own (the analysts' `coverage` reads them). With PostgreSQL,
  every write goes there first (`shared=`, from `shared_runs`), and the scheduler reads the runs of every
  host there (`history`, `unfinished_runs`); a build checks there that no newer run built its partition
  (`pipeline.sink.ledger.SharedDecision.pull`, inside the decision's transaction).
- Alerts: in the alerts file or in PostgreSQL, one or the other
  (`pipeline.calendar.alerts.alerts_connection`).

Callers pass an open connection from `pipeline.warehouse.connect` (with `ensure_tables` or `ensure_alerts`
run), and close it right after; every function is one short statement or transaction. The SQL runs on either
store (`pipeline.postgres.run`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import duckdb

from pipeline.calendar.planner import History
from pipeline.postgres import insert_rows, run

if TYPE_CHECKING:
    import psycopg2.extensions

    # A connection of either store (`pipeline.postgres.run` runs the same SQL on both).
    Connection = duckdb.DuckDBPyConnection | psycopg2.extensions.connection


@dataclass(frozen=True)
class Alert:
    """A condition SPEC §8 asks people to hear about. `key` names the condition: one open alert per key."""

    kind: str
    key: str
    message: str
    business_number: str | None = None
    group_id: int | None = None
    partition_date: date | None = None

    def payload(self, raised_at: datetime) -> dict[str, object]:
        """The JSON posted to `ALERT_WEBHOOK_URL` (no secrets: alerts never carry a key)."""
        return {
            "kind": self.kind,
            "key": self.key,
            "message": self.message,
            "business_number": self.business_number,
            "group_id": self.group_id,
            "partition_date": self.partition_date.isoformat() if self.partition_date else None,
            "raised_at": raised_at.isoformat(),
        }


@contextmanager
def shared_runs(database_url: str | None) -> Iterator[psycopg2.extensions.connection | None]:
    """With `database_url`, a PostgreSQL connection for the functions below (`shared=`), committed when the
    block ends: every host's runs, the scheduler's authority. Without, None: each group's warehouse is."""
    if database_url is None:
        yield None
        return
    from pipeline.postgres import give_back, take

    con = take(database_url)
    try:
        with con:
            yield con
    finally:
        give_back(database_url, con)


def _write(warehouse: duckdb.DuckDBPyConnection, shared: Connection | None, sql: str, params: dict):
    """Run a write on PostgreSQL (`shared`, the authority, first) and on the group's warehouse (its own copy,
    which the analysts' `coverage` reads); returns the authority's result."""
    result = run(shared, sql, params) if shared is not None else None
    local = run(warehouse, sql, params)
    return result if result is not None else local


def share_runs(warehouse: duckdb.DuckDBPyConnection, shared: Connection) -> None:
    """A warehouse's runs kept before `DATABASE_URL` was set, copied into PostgreSQL once (a marker table in
    the warehouse says it was done), so the scheduler there knows the partitions they closed."""
    warehouse.execute("create table if not exists calendar.runs_shared (since timestamptz not null)")
    if warehouse.execute("select count(*) from calendar.runs_shared").fetchone()[0]:
        return
    rows = warehouse.execute(f"select {', '.join(RUN_COLUMNS)} from calendar.partition_runs").fetchall()
    insert_rows(shared, "calendar.partition_runs", RUN_COLUMNS, rows, "on conflict (run_id) do nothing")
    warehouse.execute("insert into calendar.runs_shared values (current_timestamp)")


RUN_COLUMNS = {
    "run_id": "varchar",
    "business_number": "varchar",
    "partition_date": "date",
    "group_id": "bigint",
    "target_date": "date",
    "run_started_at": "timestamptz",
    "close_at": "timestamptz",
    "is_partial": "boolean",
    "status": "varchar",
    "candidates": "integer",
    "eligible": "integer",
    "error": "varchar",
    "finished_at": "timestamptz",
    "updated_at": "timestamptz",
}


def record_shared_build(warehouse: duckdb.DuckDBPyConnection, shared: Connection, run_id: str) -> None:
    """The build the warehouse just recorded as run `run_id`'s (`sql/calendar/record_build.sql`, in the
    build's transaction), recorded in PostgreSQL too, inside the decision's transaction there (which began
    by refusing the build if another host's newer run built the partition: `SharedDecision.pull`)."""
    row = warehouse.execute(
        f"select {', '.join(RUN_COLUMNS)} from calendar.partition_runs where run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    values = dict(zip(RUN_COLUMNS, row, strict=True))
    updates = ", ".join(f"{name} = excluded.{name}" for name in RUN_COLUMNS if name != "run_id")
    run(
        shared,
        f"insert into calendar.partition_runs ({', '.join(RUN_COLUMNS)}) "
        f"values ({', '.join('$' + name for name in RUN_COLUMNS)}) "
        f"on conflict (run_id) do update set {updates}",
        values,
    )


def record_failure(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    business_number: str,
    partition_date: date,
    group_id: int | None,
    run_started_at: datetime,
    error: str,
    now: datetime,
    shared: Connection | None = None,
) -> None:
    """The run failed: its row (its build, or a new one) becomes `failed` with the error's first line."""
    first_line = (error.strip().splitlines() or ["(no message)"])[0][:1000]
    _write(
        con,
        shared,
        """
        insert into calendar.partition_runs
            (run_id, business_number, partition_date, group_id, run_started_at, status, error, finished_at,
             updated_at)
        values ($run_id, $business_number, $partition_date, $group_id, $run_started_at, 'failed', $error,
                $now, current_timestamp)
        on conflict (run_id) do update
            set status = 'failed', error = excluded.error, finished_at = excluded.finished_at,
                updated_at = excluded.updated_at
        """,
        {
            "run_id": run_id,
            "business_number": business_number,
            "partition_date": partition_date,
            "group_id": group_id,
            "run_started_at": run_started_at,
            "error": first_line,
            "now": now,
        },
    )


def record_success(
    con: duckdb.DuckDBPyConnection, run_id: str, now: datetime, shared: Connection | None = None
) -> bool | None:
    """The run built its partition and posted its requests: `succeeded`. Returns whether that closed the
    partition (the run was not partial), or None when this run did not build it (nothing recorded)."""
    row = _write(
        con,
        shared,
        """
        update calendar.partition_runs
        set status = 'succeeded', finished_at = $now, updated_at = current_timestamp
        where run_id = $run_id and status = 'built'
        returning not is_partial
        """,
        {"run_id": run_id, "now": now},
    ).fetchone()
    return None if row is None else bool(row[0])


def unfinished_runs(con: Connection) -> dict[str, int | None]:
    """Runs that built a partition and have not recorded how they ended (running, or gone), with their group:
    of a group's warehouse, or of PostgreSQL (every host's)."""
    rows = run(con, "select run_id, group_id from calendar.partition_runs where status = 'built'").fetchall()
    return dict(rows)


def mark_run_ended(
    con: Connection,
    run_id: str,
    reason: str,
    now: datetime,
    shared: Connection | None = None,
) -> None:
    """A run that built its partition is gone without saying how it ended (killed, lost): `failed`."""
    _write(
        con,
        shared,
        "update calendar.partition_runs set status = 'failed', error = $reason, finished_at = $now, "
        "updated_at = current_timestamp where run_id = $run_id and status = 'built'",
        {"run_id": run_id, "reason": reason, "now": now},
    )


def history(con: Connection, since: date) -> dict[str, dict[date, History]]:
    """business number -> partition date -> where the partition stands (`calendar.partition_states`), for
    partitions dated `since` or later: of a group's warehouse, or of PostgreSQL (every host's runs)."""
    rows = run(
        con,
        """
        select business_number, partition_date, runs, closed_at, failures_in_a_row, last_failed_at, last_error
        from calendar.partition_states
        where partition_date >= $since
        """,
        {"since": since},
    ).fetchall()
    result: dict[str, dict[date, History]] = defaultdict(dict)
    for business_number, partition_date, *state in rows:
        result[business_number][partition_date] = History(*state)
    return dict(result)


@dataclass(frozen=True)
class Fetched:
    """What the last fetch of a mapping's Cliniko businesses says about its location names."""

    time_zones: tuple[str, ...]  # of the businesses its names match
    unmatched_names: tuple[str, ...]  # names that match none of them
    fetched_at: datetime


def stored_businesses(
    con: duckdb.DuckDBPyConnection, location_names: Mapping[str, Sequence[str]]
) -> dict[str, Fetched]:
    """business number -> what its businesses as last fetched say; mappings never fetched are left out.

    Names match as the models match them (`location_key` of `staging.stg_cliniko__businesses`).
    """
    if not location_names:
        return {}
    numbers = list(location_names)
    rows = con.execute(
        """
        with wanted as (
            select unnest($numbers) as business_number, unnest($names) as location_name
        ),
        names as (
            select business_number, location_name, name_key(location_name) as location_key
            from (select business_number, unnest(location_name) as location_name from wanted)
        ),
        fetched as (
            select business_number, max(loaded_at) as fetched_at
            from raw.cliniko_businesses
            group by business_number
        )
        select
            names.business_number,
            list(distinct businesses.time_zone) filter (where businesses.time_zone is not null),
            list(distinct names.location_name) filter (where businesses.location_key is null),
            any_value(fetched.fetched_at)
        from names
        join fetched using (business_number)
        left join staging.stg_cliniko__businesses as businesses
            on businesses.business_number = names.business_number
            and businesses.location_key = names.location_key
        group by names.business_number
        """,
        {"numbers": numbers, "names": [list(location_names[n]) for n in numbers]},
    ).fetchall()
    return {
        bn: Fetched(tuple(sorted(zones or ())), tuple(sorted(unknown or ())), fetched_at)
        for bn, zones, unknown, fetched_at in rows
    }


def raise_alerts(con: Connection, alerts: Iterable[Alert], now: datetime) -> list[Alert]:
    """Record the alerts that are not open yet; returns those (to notify). Open ones are left as they are."""
    alerts = list(alerts)
    if not alerts:
        return []
    open_keys = {
        r[0]
        for r in run(
            con,
            "select alert_key from calendar.alerts "
            "where resolved_at is null and alert_key in (select unnest($keys::varchar[]))",
            {"keys": [a.key for a in alerts]},
        ).fetchall()
    }
    new = [a for a in {a.key: a for a in alerts}.values() if a.key not in open_keys]
    for alert in new:
        run(
            con,
            """
            insert into calendar.alerts
                (alert_key, kind, business_number, group_id, partition_date, message, raised_at)
            values ($key, $kind, $business_number, $group_id, $partition_date, $message, $now)
            """,
            {
                "key": alert.key,
                "kind": alert.kind,
                "business_number": alert.business_number,
                "group_id": alert.group_id,
                "partition_date": alert.partition_date,
                "message": alert.message,
                "now": now,
            },
        )
    return new


def resolve_alerts(
    con: Connection,
    *,
    kinds: Sequence[str],
    business_numbers: Sequence[str],
    keep: Iterable[str],
    now: datetime,
) -> int:
    """Close the open alerts of `kinds` about `business_numbers` whose key is not in `keep` (their condition
    is gone); returns how many."""
    rows = run(
        con,
        """
        update calendar.alerts set resolved_at = $now
        where resolved_at is null and kind in (select unnest($kinds::varchar[]))
          and business_number in (select unnest($business_numbers::varchar[]))
          and alert_key not in (select unnest($keep::varchar[]))
        returning alert_key
        """,
        {"kinds": list(kinds), "business_numbers": list(business_numbers), "keep": list(keep), "now": now},
    ).fetchall()
    return len(rows)


def claim_undelivered_alerts(con: Connection, hold_seconds: int) -> list[tuple[Alert, datetime]]:
    """The open alerts no webhook has accepted yet and no other notifier holds (or held for longer than
    `hold_seconds`, on the store's clock, not each host's), oldest first, with when each was raised; they are
    this caller's to post until it records each answer (`record_notification`) or lets go
    (`release_alerts`)."""
    rows = run(
        con,
        """
        update calendar.alerts set notify_claimed_at = current_timestamp
        where resolved_at is null and notified_at is null
          and (notify_claimed_at is null
               or notify_claimed_at
                  < current_timestamp - cast($hold_seconds as integer) * interval '1 second')
        returning kind, alert_key, message, business_number, group_id, partition_date, raised_at
        """,
        {"hold_seconds": hold_seconds},
    ).fetchall()
    return sorted(((Alert(*row[:6]), row[6]) for row in rows), key=lambda item: (item[1], item[0].key))


def record_notification(
    con: Connection,
    alert_key: str,
    raised_at: datetime,
    *,
    notified_at: datetime | None,
    error: str | None,
) -> None:
    """What the webhook answered for the alert raised as `alert_key` at `raised_at`; the claim ends."""
    run(
        con,
        "update calendar.alerts set notified_at = $at, notify_error = $error, notify_claimed_at = null "
        "where alert_key = $key and raised_at = $raised_at",
        {"at": notified_at, "error": error, "key": alert_key, "raised_at": raised_at},
    )


def release_alerts(con: Connection, claimed: Sequence[tuple[str, datetime]]) -> None:
    """Let go of claimed alerts that were not posted (the time budget ran out): the next notifier takes
    them."""
    for alert_key, raised_at in claimed:
        run(
            con,
            "update calendar.alerts set notify_claimed_at = null "
            "where alert_key = $key and raised_at = $raised_at",
            {"key": alert_key, "raised_at": raised_at},
        )


def open_alerts(con: Connection) -> list[dict[str, object]]:
    """Every open alert, oldest first."""
    cursor = run(
        con,
        "select alert_key, kind, business_number, group_id, partition_date, message, raised_at, notified_at, "
        "notify_error from calendar.alerts where resolved_at is null order by raised_at, alert_key",
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
