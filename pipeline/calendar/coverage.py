"""The mappings' calendars from the registry and the warehouse, and the analysts' database built with them.

`schedules()` is what the sensor, `cliniko-reviews status` and the `coverage` view share: each mapping's
schedule with the zones of its matched Cliniko businesses as last fetched. `refresh()` refreshes
`analytics.duckdb`, exporting `partition_calendar` (the rows `coverage` is a view over) for the mappings whose
calendar changed, and the registry's audit trail for the `registry_changes` view when it changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from pipeline.calendar import rules, store
from pipeline.calendar.planner import Schedule
from pipeline.registry import MappingConfig
from pipeline.registry.model import Frequency
from pipeline.warehouse.analysts_db import (
    Export,
    Partition,
    add_whole_table,
    parquet_root,
    refresh_analytics,
    write_json,
)
from pipeline.warehouse.sql_files import run_sql_file


def schedule(mapping: MappingConfig, time_zones: tuple[str, ...] | None) -> Schedule:
    return Schedule(
        business_number=mapping.business_number,
        group_id=mapping.group_id,
        next_run_time=mapping.next_run_time,
        first_run_time=mapping.first_run_time,
        frequency=Frequency(mapping.frequency_value, mapping.frequency_unit).as_timedelta(),
        hourly=mapping.frequency_unit == "hours",
        fetch_delay_days=mapping.fetch_delay_days,
        catchup_days=mapping.catchup_days,
        time_zones=time_zones,
    )


def schedules(
    con: duckdb.DuckDBPyConnection, mappings: Sequence[MappingConfig]
) -> tuple[list[Schedule], dict[str, tuple[str, ...]]]:
    """Each mapping's schedule (zones from its businesses as last fetched, None if never), and the location
    names of each mapping that match none of the businesses fetched since its set-up last changed (a fetch
    older than the change may predate the business the new name means: that mapping is run, to fetch)."""
    fetched = store.stored_businesses(con, {m.business_number: m.location_names for m in mappings})
    result = []
    unknown: dict[str, tuple[str, ...]] = {}
    for mapping in mappings:
        last = fetched.get(mapping.business_number)
        result.append(schedule(mapping, last.time_zones if last else None))
        if last and last.unmatched_names and last.fetched_at > mapping.updated_at:
            unknown[mapping.business_number] = last.unmatched_names
    return result, unknown


def first_run_dates(con: duckdb.DuckDBPyConnection) -> dict[str, date]:
    """The oldest partition each mapping ran (on purpose, before its schedule started, counts too)."""
    rows = con.execute(
        "select business_number, min(partition_date) from calendar.partition_runs group by business_number"
    ).fetchall()
    return dict(rows)


def partition_calendar(
    schedules: Sequence[Schedule], ran_from: dict[str, date], today: date, partitions_start: date
) -> list[dict[str, object]]:
    """One row per mapping x partition date, from the day before its first due time (or the oldest partition
    it ran, if older) to `today`: the dates the scheduler answers for, their close times and horizons."""
    rows = []
    for s in schedules:
        first = rules.scope_start(s.first_run_time, partitions_start)
        if s.business_number in ran_from:
            first = min(first, max(ran_from[s.business_number], partitions_start))
        for k in range((today - first).days + 1):
            day = first + timedelta(days=k)
            rows.append(
                {
                    "business_number": s.business_number,
                    "group_id": s.group_id,
                    "partition_date": day,
                    "target_date": rules.target_day(day, s.fetch_delay_days),
                    "close_at": s.close_at(day),
                    "horizon_ends_at": s.horizon_end(day),
                }
            )
    return rows


# `partition_calendar` in the analysts' database: the dates the scheduler answers for (from the registry,
# not stored in the warehouse), which `coverage` (sql/analytics/coverage.sql) is a view over. Exported like
# the partitions' tables (pipeline/warehouse/analysts_db.py), only for the mappings whose calendar changed,
# and a month ahead, so that a refresh costs the mappings that changed, not every mapping's every day.
CALENDAR_TABLE = "partition_calendar"
CALENDAR_COLUMNS = {
    "business_number": "varchar",
    "group_id": "bigint",
    "partition_date": "date",
    "target_date": "date",
    "close_at": "timestamptz",
    "horizon_ends_at": "timestamptz",
}
LOOKAHEAD_DAYS = 31
# Beside the Parquet files: per mapping, what its exported calendar was computed from and the dates it spans.
_STATE = "partition_calendar.json"
_STATE_VERSION = hashlib.sha256(
    repr((CALENDAR_COLUMNS, LOOKAHEAD_DAYS, "entries with time_zones")).encode()
).hexdigest()[:16]


def _fingerprint(s: Schedule, ran_from: date | None, partitions_start: date) -> str:
    """What a mapping's calendar rows are a function of (beside the dates they span)."""
    key = (
        s.group_id,
        s.first_run_time.isoformat(),
        s.fetch_delay_days,
        s.frequency.total_seconds(),
        s.catchup_days,
        s.time_zones,
        ran_from and ran_from.isoformat(),
        partitions_start.isoformat(),
    )
    return hashlib.sha256(repr(key).encode()).hexdigest()[:16]


class CalendarExports:
    """`partition_calendar`'s export for a refresh (see `pipeline.warehouse.analysts_db.Exports`): the rows of
    the mappings whose calendar changed (their set-up, their zones, an older partition run) or ends before
    today, up to `LOOKAHEAD_DAYS` ahead; the dates a mapping no longer answers for (or a deleted mapping's)
    are exported empty. The zones and first partition of a mapping come from its group's warehouse when the
    refresh reads it, else from what the last export of its calendar saw."""

    def __init__(
        self, root: Path, mappings: Sequence[MappingConfig], partitions_start: date, today: date
    ) -> None:
        self.path = root / _STATE
        self.mappings = mappings
        self.partitions_start = partitions_start
        self.today = today
        self.zones: dict[str, tuple[str, ...]] = {}
        self.ran: dict[str, date] = {}

    def read(self, con: duckdb.DuckDBPyConnection, whole: bool, partitions: Sequence[Partition]) -> None:
        fetched = store.stored_businesses(con, {m.business_number: m.location_names for m in self.mappings})
        self.zones.update({bn: f.time_zones for bn, f in fetched.items()})
        self.ran.update(first_run_dates(con))

    def exports(self, con: duckdb.DuckDBPyConnection, whole_warehouse: bool) -> dict[str, Export]:
        state = json.loads(self.path.read_text()) if self.path.exists() else {}
        whole = whole_warehouse or state.get("version") != _STATE_VERSION
        known: dict[str, dict] = {} if whole else state["mappings"]
        until = self.today + timedelta(days=LOOKAHEAD_DAYS)
        rows: list[dict[str, object]] = []
        keys: list[tuple[str, date]] = []
        entries = {}
        for mapping in self.mappings:
            bn, old = mapping.business_number, known.get(mapping.business_number)
            seen = old.get("time_zones") if old else None  # what the last export saw; None: never fetched
            zones = self.zones.get(bn, tuple(seen) if seen is not None else None)
            ran_from = self.ran.get(bn) or (old and old["ran_from"] and date.fromisoformat(old["ran_from"]))
            s = schedule(mapping, zones)
            fingerprint = _fingerprint(s, ran_from, self.partitions_start)
            if old and old["fingerprint"] == fingerprint and date.fromisoformat(old["until"]) >= self.today:
                entries[bn] = old
                continue
            new = partition_calendar([s], {bn: ran_from} if ran_from else {}, until, self.partitions_start)
            days = {row["partition_date"] for row in new} | set(_span(old))
            rows.extend(new)
            keys.extend((bn, day) for day in sorted(days))
            first = min((row["partition_date"] for row in new), default=until)
            entries[bn] = {
                "fingerprint": fingerprint,
                "from": first.isoformat(),
                "until": until.isoformat(),
                "ran_from": ran_from and ran_from.isoformat(),
                "time_zones": list(zones) if zones is not None else None,
            }
        for bn in known.keys() - entries.keys():  # deleted from the registry: its dates go
            keys.extend((bn, day) for day in _span(known[bn]))
        if not keys and not whole:
            return {}
        _temp_table(con, "calendar_rows", rows)
        con.execute(
            "create or replace temp table calendar_keys (business_number varchar, partition_date date)"
        )
        if keys:
            con.executemany("insert into calendar_keys values (?, ?)", keys)

        def save() -> None:
            write_json(self.path, {"version": _STATE_VERSION, "mappings": entries})

        return {CALENDAR_TABLE: Export("from calendar_rows", "from calendar_keys", whole, save)}


def _span(entry: dict | None) -> list[date]:
    if not entry:
        return []
    first, until = date.fromisoformat(entry["from"]), date.fromisoformat(entry["until"])
    return [first + timedelta(days=k) for k in range((until - first).days + 1)]


def _temp_table(con: duckdb.DuckDBPyConnection, name: str, rows: Sequence[dict[str, object]]) -> None:
    columns = ", ".join(f"{column} {kind}" for column, kind in CALENDAR_COLUMNS.items())
    con.execute(f"create or replace temp table {name} ({columns})")
    if rows:
        unnested = ", ".join(f"unnest(${column})::{kind}" for column, kind in CALENDAR_COLUMNS.items())
        con.execute(
            f"insert into {name} select {unnested}",
            {column: [row[column] for row in rows] for column in CALENDAR_COLUMNS},
        )


def add_coverage(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, int]:
    """Create the `coverage` view in the analysts' database attached as `alias`."""
    warehouse = con.execute("select current_database()").fetchone()[0]
    con.execute(f"use {alias}")  # the view's table names bind inside the analysts' database
    try:
        run_sql_file(con, "analytics/coverage.sql")
    finally:
        con.execute(f'use "{warehouse}"')
    return {}


@dataclass(frozen=True)
class AuditTrail:
    """The registry's audit trail for `registry_changes`: `last_change_id` is its version (0: no change yet),
    and `rows()` reads it whole (secrets masked already), which a refresh does only for a version the
    analysts' database does not have yet."""

    last_change_id: int = 0
    rows: Callable[[], Sequence[Mapping[str, object]]] = tuple


AUDIT_COLUMNS = (
    "change_id", "changed_at", "changed_by", "method", "route", "action", "entity_kind", "entity_id",
    "business_number", "group_id", "before_state", "after_state", "changes",
)  # fmt: skip


def add_registry_changes(
    con: duckdb.DuckDBPyConnection, alias: str, root: Path, trail: AuditTrail
) -> dict[str, int]:
    """Create `registry_audit` (the trail's rows, in a Parquet file written when the trail changed) and the
    `registry_changes` view over it in the analysts' database attached as `alias`."""

    def rows() -> str:
        audit = trail.rows()
        run_sql_file(
            con, "analytics/registry_audit.sql", {c: [row[c] for row in audit] for c in AUDIT_COLUMNS}
        )
        return "from temp.main.audit_trail order by change_id"

    count = add_whole_table(con, alias, root, "registry_audit", trail.last_change_id, rows)
    warehouse = con.execute("select current_database()").fetchone()[0]
    con.execute(f"use {alias}")
    try:
        run_sql_file(con, "analytics/registry_changes.sql")
    finally:
        con.execute(f'use "{warehouse}"')
    return {"registry_changes": count}


def refresh(
    warehouse_paths: Sequence[Path],
    alerts_path: Path | str,
    analytics_path: Path,
    mappings: Sequence[MappingConfig],
    partitions_start: date,
    now: datetime | None = None,
    *,
    changed: Sequence[Path] | None = None,
    registry_changes: AuditTrail = AuditTrail(),
) -> dict[str, int]:
    """Export the partitions that changed in the warehouse files of `changed` (every one of
    `warehouse_paths` if None) into the analysts' database, with the calendars that changed, and rebuild its
    small tables and views, `coverage` included, and `registry_changes` from the audit trail given. Returns
    the rows exported and the small tables' counts."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    root = parquet_root(analytics_path)
    state = root / _STATE
    if changed is not None and not (
        state.exists() and json.loads(state.read_text()).get("version") == _STATE_VERSION
    ):
        changed = None  # the calendars are recomputed from every group's zones and runs
    exports = CalendarExports(root, mappings, partitions_start, today)

    def addition(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, int]:
        return {**add_coverage(con, alias), **add_registry_changes(con, alias, root, registry_changes)}

    return refresh_analytics(
        warehouse_paths, analytics_path, addition, exports, alerts_path=alerts_path, changed=changed
    )
