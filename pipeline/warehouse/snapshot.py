"""The analysts' database: a fresh copy of the analytics tables, swapped in atomically after each run.

DuckDB lets only one process open a file, and a reader blocks a writer. Analysts therefore never open the
warehouse. They open `analytics.duckdb`, which the pipeline never writes in place: each refresh builds a new
file next to it and `os.replace`s it over the old name. An analyst who keeps the old file open (read-only)
goes on querying the old inode undisturbed and never holds a lock on the new one; the next connection they
open sees the new data.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb

from pipeline.warehouse.connection import connect

# Table in analytics.duckdb -> what it copies from the warehouse, and the order that keeps analysts' usual
# filters (by day, by mapping) cheap through DuckDB's zonemaps.
SNAPSHOT_TABLES = {
    "restriction_reasons": (
        "analytics.restriction_reasons",
        "partition_date, business_number, appointment_id",
    ),
    "review_requests": ("analytics.review_requests", "business_number, appointment_id"),
    "restriction_codes": ("seeds.restriction_codes", "precedence"),
    "partition_runs": ("calendar.partition_runs", "partition_date, business_number, run_started_at"),
    "partition_states": ("calendar.partition_states", "partition_date, business_number"),
    "alerts": ("calendar.alerts", "raised_at, alert_key"),
}
# What a caller adds to the new file before it is swapped in: given the connection and the new file's alias,
# it creates its tables and views there and returns their row counts.
Addition = Callable[[duckdb.DuckDBPyConnection, str], Mapping[str, int]]
_ALIAS = "analytics_snapshot"


def _sql_string(value: str) -> str:
    """A SQL string literal; ATTACH takes no bound parameter for its path, and this path is our own."""
    return "'" + value.replace("'", "''") + "'"


def _remove_quietly(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def write_snapshot(
    con: duckdb.DuckDBPyConnection, analytics_path: Path | str, addition: Addition | None = None
) -> dict[str, int]:
    """Copy the analytics tables from the warehouse open on `con` into a new file, let `addition` add its
    own, and swap the file onto `analytics_path`. Returns the row count of each table.

    For a caller that already holds a warehouse connection from `pipeline.warehouse.connect` (read-only is
    enough): the warehouse lock it holds is what keeps the copy consistent.
    """
    analytics_path = Path(analytics_path)
    analytics_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = analytics_path.with_name(f".{analytics_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    counts: dict[str, int] = {}
    try:
        con.execute(f"attach {_sql_string(str(temporary))} as {_ALIAS} (read_write)")
        try:
            for table, (source, order_by) in SNAPSHOT_TABLES.items():
                con.execute(f"create table {_ALIAS}.{table} as select * from {source} order by {order_by}")
                counts[table] = con.execute(f"select count(*) from {_ALIAS}.{table}").fetchall()[0][0]
            if addition is not None:
                counts.update(addition(con, _ALIAS))
            con.execute(
                f"create table {_ALIAS}.snapshot_info as select current_timestamp as refreshed_at, "
                "$counts::json as row_counts",
                {"counts": counts},
            )
        finally:
            con.execute(f"detach {_ALIAS}")
        os.replace(temporary, analytics_path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    return counts


def refresh_analytics(
    warehouse_path: Path | str, analytics_path: Path | str, addition: Addition | None = None
) -> dict[str, int]:
    """Rebuild `analytics_path` (`$DATA_DIR/analytics.duckdb`) from the warehouse at `warehouse_path`, with
    `addition`'s tables (see `write_snapshot`).

    Opens the warehouse read-only through the pipeline's lock, so it waits for a running build instead of
    failing, and never writes the warehouse. Call it outside any other `connect` to the same warehouse in this
    process. Returns the row count of each table copied.
    """
    with connect(warehouse_path, read_only=True) as con:
        missing = [
            source
            for source, _ in SNAPSHOT_TABLES.values()
            if not con.execute(
                "select 1 from duckdb_tables() where schema_name || '.' || table_name = $name "
                "union all select 1 from duckdb_views() where schema_name || '.' || view_name = $name",
                {"name": source},
            ).fetchall()
        ]
        if missing:
            raise RuntimeError(
                f"{warehouse_path} has no {', '.join(missing)} yet: build at least one partition of the "
                "models (pipeline.warehouse.models.build_partition) before refreshing the analysts' database"
            )
        return write_snapshot(con, analytics_path, addition)
