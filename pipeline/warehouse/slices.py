"""Partition slices: each run replaces exactly its own rows, in one transaction, so re-runs are idempotent."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import duckdb

from pipeline.warehouse.sql_files import read_sql, run_sql_file

# The tables of a group's warehouse that hold state (Cliniko's raw rows, the ledger, the calendar's runs), and
# the view that reads the calendar's runs. The alerts live in a file of their own (`ALERTS_DDL`).
TABLE_DDL = (
    "raw/cliniko_businesses.sql",
    "raw/cliniko_appointment_types.sql",
    "raw/cliniko_appointments.sql",
    "raw/cliniko_group_appointments.sql",
    "raw/cliniko_attendees.sql",
    "raw/cliniko_patients.sql",
    "raw/cliniko_practitioners.sql",
    "raw/cliniko_quarantine.sql",
    "sink/review_request_ledger.sql",
    "calendar/partition_runs.sql",
    "calendar/partition_states.sql",
)
ALERTS_DDL = "calendar/alerts.sql"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create a group warehouse's state tables on first use, and after a release that changes them."""
    ensure_definitions(con, "tables", TABLE_DDL)


def ensure_alerts(con: duckdb.DuckDBPyConnection) -> None:
    """Create the alerts table of the alerts file on first use."""
    ensure_definitions(con, "alerts", (ALERTS_DDL,))


def ensure_definitions(con: duckdb.DuckDBPyConnection, name: str, files: Sequence[str]) -> None:
    """Run the definition files `files` (idempotent: `if not exists`, `create or replace`) unless the open
    warehouse already ran their current text, as `main.definitions` records under `name`.

    Running them costs 5-40 ms of catalog writes, and a partition's run asks about ten times; the check
    costs under a millisecond. A release that changes a file runs them all again.
    """
    version = _version(tuple(files))
    recorded = con.execute(
        "select 1 from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'main' and table_name = 'definitions'"
    ).fetchall()
    if recorded and con.execute(
        "select version from main.definitions where name = $name", {"name": name}
    ).fetchall() == [(version,)]:
        return
    for path in files:
        run_sql_file(con, path)
    con.execute(
        "create table if not exists main.definitions "
        "(name varchar primary key, version varchar not null, defined_at timestamptz not null)"
    )
    con.execute(
        "insert or replace into main.definitions values ($name, $version, now())",
        {"name": name, "version": version},
    )


@cache
def _version(files: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(read_sql(path) for path in files).encode()).hexdigest()


def replace_slice(con: duckdb.DuckDBPyConnection, table: str, rows: Any, slice_key: Mapping[str, Any]) -> int:
    """Delete `table`'s rows matching `slice_key` and insert `rows` (a DataFrame or Arrow table), atomically.

    `table` and the column names come from our code, never from input; the values are bound.
    """
    where = " and ".join(f"{column} = ${column}" for column in slice_key)
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {table} where {where}", dict(slice_key))
        if len(rows):
            con.register("incoming_slice", rows)
            try:
                con.execute(f"insert into {table} by name select * from incoming_slice")
            finally:
                con.unregister("incoming_slice")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(rows)


def upsert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Any) -> int:
    """Insert `rows` (a DataFrame or Arrow table), replacing those whose primary key is already in `table`.

    One `INSERT OR REPLACE ... BY NAME` statement, so a bulk load costs one pass however many rows it has.
    """
    if not len(rows):
        return 0
    con.register("incoming_rows", rows)
    try:
        con.execute(f"insert or replace into {table} by name select * from incoming_rows")
    finally:
        con.unregister("incoming_rows")
    return len(rows)
