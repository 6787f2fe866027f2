"""The mappings' calendars from the registry and the warehouse, and the analysts' database built with them.

`schedules()` is what the sensor, `cliniko-reviews status` and the `coverage` view share: each mapping's
schedule with the zones of its matched Cliniko businesses as last fetched. `refresh()` rebuilds
`analytics.duckdb` with `partition_calendar`, the rows `coverage` is a view over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from pipeline.calendar import rules, store
from pipeline.calendar.planner import Schedule
from pipeline.registry import MappingConfig
from pipeline.registry.model import Frequency
from pipeline.warehouse.snapshot import refresh_analytics
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
# not stored in the warehouse), which `coverage` (sql/analytics/coverage.sql) is a view over.
CALENDAR_COLUMNS = {
    "business_number": "varchar",
    "group_id": "bigint",
    "partition_date": "date",
    "target_date": "date",
    "close_at": "timestamptz",
    "horizon_ends_at": "timestamptz",
}


def add_coverage(
    con: duckdb.DuckDBPyConnection, alias: str, rows: Sequence[dict[str, object]]
) -> dict[str, int]:
    """Create `partition_calendar` with `rows` and the `coverage` view in the database attached as `alias`."""
    columns = ", ".join(f"{name} {kind}" for name, kind in CALENDAR_COLUMNS.items())
    con.execute(f"create table {alias}.partition_calendar ({columns})")
    if rows:
        unnested = ", ".join(f"unnest(${name})::{kind}" for name, kind in CALENDAR_COLUMNS.items())
        con.execute(
            f"insert into {alias}.partition_calendar select {unnested}",
            {name: [row[name] for row in rows] for name in CALENDAR_COLUMNS},
        )
    warehouse = con.execute("select current_database()").fetchone()[0]
    con.execute(f"use {alias}")  # the view's table names bind inside the analysts' database
    try:
        run_sql_file(con, "analytics/coverage.sql")
    finally:
        con.execute(f'use "{warehouse}"')
    return {"partition_calendar": len(rows)}


def refresh(
    warehouse_path: Path,
    analytics_path: Path,
    mappings: Sequence[MappingConfig],
    partitions_start: date,
    now: datetime | None = None,
) -> dict[str, int]:
    """Rebuild the analysts' database, `coverage` included. Returns the row count of each table."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()

    def addition(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, int]:
        known, _ = schedules(con, mappings)
        return add_coverage(
            con, alias, partition_calendar(known, first_run_dates(con), today, partitions_start)
        )

    return refresh_analytics(warehouse_path, analytics_path, addition)
