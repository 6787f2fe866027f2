"""Moving a warehouse of the releases before per-group files (`$DATA_DIR/warehouse.duckdb`) into them.

Every table with a `business_number` column goes, row by row, to the file of the group that maps that business
number: the ledger (so nothing is sent twice after the upgrade, and cool-off still sees the past), the
calendar's runs (so closed partitions stay closed), the raw rows and the marts. The alerts go to the alerts
file. Rows of business numbers no group maps any more stay behind in the old file, renamed
`warehouse.duckdb.before-groups` once the split is complete, never deleted.

Every process that reaches the warehouse calls `split_legacy` first; the first one splits under the old
file's lock, the others find it gone. A split that is killed is done again whole by the next process (each
group's rows are replaced, not added).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb

from pipeline.warehouse.connection import WAREHOUSE_ALIAS, attached, locked
from pipeline.warehouse.models import ensure_models
from pipeline.warehouse.slices import ensure_alerts, ensure_tables

log = logging.getLogger(__name__)
SPLIT_SUFFIX = ".before-groups"


def split_legacy(
    legacy_path: Path, warehouse_path: Callable[[int], Path], group_of: Mapping[str, int], alerts_path: Path
) -> dict[int, int]:
    """Split `legacy_path`, if it exists, into `warehouse_path(group)` per group of `group_of` (business
    number -> group id) and `alerts_path`. Returns the rows moved per group (empty when there was nothing)."""
    if not legacy_path.exists():
        return {}
    with locked(legacy_path):
        if not legacy_path.exists():
            return {}  # another process split it while this one waited
        moved = _split(legacy_path, warehouse_path, group_of, alerts_path)
        os.replace(legacy_path, legacy_path.with_name(legacy_path.name + SPLIT_SUFFIX))
        wal = legacy_path.with_name(legacy_path.name + ".wal")
        if wal.exists():
            os.replace(wal, legacy_path.with_name(legacy_path.name + SPLIT_SUFFIX + ".wal"))
    log.warning(
        "moved %s into one warehouse file per integration group (%s rows); the old file is kept as %s",
        legacy_path,
        sum(moved.values()),
        legacy_path.name + SPLIT_SUFFIX,
    )
    return moved


def _split(
    legacy_path: Path, warehouse_path: Callable[[int], Path], group_of: Mapping[str, int], alerts_path: Path
) -> dict[int, int]:
    con = duckdb.connect()
    try:
        con.execute(f"attach '{str(legacy_path).replace(chr(39), chr(39) * 2)}' as legacy (read_only)")
        tables = con.execute(
            "select t.schema_name, t.table_name from duckdb_tables() t join duckdb_columns() c "
            "using (database_name, schema_name, table_name) "
            "where t.database_name = 'legacy' and c.column_name = 'business_number' order by all"
        ).fetchall()
        con.execute("create temp table owners (business_number varchar, group_id bigint)")
        if group_of:
            con.executemany("insert into owners values (?, ?)", sorted(group_of.items()))
        moved = {}
        for group_id in sorted(set(group_of.values())):
            with attached(con, warehouse_path(group_id)):
                ensure_tables(con)
                ensure_models(con)
                moved[group_id] = sum(_move(con, schema, table, group_id) for schema, table in tables)
        has_alerts = con.execute(
            "select count(*) from duckdb_tables() where database_name = 'legacy' "
            "and schema_name = 'calendar' and table_name = 'alerts'"
        ).fetchone()[0]
        if has_alerts:
            with attached(con, alerts_path):
                ensure_alerts(con)
                con.execute("delete from calendar.alerts")
                con.execute("insert into calendar.alerts by name select * from legacy.calendar.alerts")
        return moved
    finally:
        con.close()


def _move(con: duckdb.DuckDBPyConnection, schema: str, table: str, group_id: int) -> int:
    """Replace the group's rows of `schema.table` in the attached group file with the legacy file's."""
    exists = con.execute(
        "select count(*) from duckdb_tables() where database_name = $db and schema_name = $s "
        "and table_name = $t",
        {"db": WAREHOUSE_ALIAS, "s": schema, "t": table},
    ).fetchone()[0]
    rows = (
        f'select * from legacy."{schema}"."{table}" '
        "where business_number in (select business_number from owners where group_id = $group)"
    )
    con.execute("begin transaction")
    try:
        if exists:
            con.execute(
                f'delete from "{schema}"."{table}" '
                "where business_number in (select business_number from owners where group_id = $group)",
                {"group": group_id},
            )
            con.execute(f'insert into "{schema}"."{table}" by name {rows}', {"group": group_id})
        else:  # a table the builds create (marts, analytics): made as the old file has it, constraints too
            ddl = con.execute(
                "select sql from duckdb_tables() where database_name = 'legacy' and schema_name = $s "
                "and table_name = $t",
                {"s": schema, "t": table},
            ).fetchone()[0]
            con.execute(f'create schema if not exists "{schema}"')
            con.execute(ddl)
            con.execute(f'insert into "{schema}"."{table}" by name {rows}', {"group": group_id})
        count = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return count
