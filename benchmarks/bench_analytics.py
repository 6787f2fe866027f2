"""Benchmark: does refreshing the analysts' database after a partition cost what the partition changed?

Not a test. Builds two warehouses whose analytics sources (the eligibility mart, the ledger, the calendar's
runs) hold 100 thousand and 10 million rows of history (10 mappings x days x 2,000 rows, generated in SQL),
then, for each, the first (whole) export, followed by partition-by-partition refreshes the way runs make
them: the newest days' partitions, one refresh each, `COMPACT_AFTER` + 20 of them, so one compaction is
paid and spread over them. Prints the mean refresh (compaction included), the median, the compaction alone,
and for reference what copying the whole history costs (the analysts' database before issue 13), and an
analyst's query over the views against the same query over the warehouse's table. Then the refresh the
pipeline makes (`coverage.refresh`, with `registry_changes`) after one partition, with a registry audit trail
of 30 and of 30,000 changes that did not change since the refresh before (each refresh used to copy it).

    uv run python benchmarks/bench_analytics.py [--dir DIR] [--small 100000] [--large 10000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from benchmarks.support import Figure, report
from pipeline.calendar import coverage
from pipeline.warehouse import connect, run_sql
from pipeline.warehouse.analysts_db import COMPACT_AFTER, PARTITIONED, refresh_analytics
from pipeline.warehouse.models import ensure_models
from pipeline.warehouse.slices import ensure_tables
from pipeline.warehouse.sql_files import read_sql, run_sql_file

FIRST_DAY = date(2024, 1, 1)
MAPPINGS = 10
SLICE = 2000
QUERY = "select restriction_code, count(*) from {} group by all"


def generate(path: Path, rows: int) -> int:
    """A warehouse whose analytics sources hold `rows` candidates of history; returns the days."""
    days = rows // (MAPPINGS * SLICE)
    with connect(path) as con:
        ensure_models(con)
        ensure_tables(con)
        for statement in con.extract_statements(read_sql("marts/appointment_eligibility.sql")):
            if "delete from" in statement.query:  # the mart's own DDL comes first, then its build
                break
            con.execute(statement)
        for view in ("analytics/restriction_reasons.sql", "analytics/review_requests.sql"):
            run_sql_file(con, view)
        params = {"rows": days * MAPPINGS * SLICE, "slice": SLICE, "mappings": MAPPINGS, "first": FIRST_DAY}
        run_sql(
            con,
            """
            insert into marts.appointment_eligibility
            with numbered as (
                select i, i // $slice as slice from range($rows) as r(i)
            ),
            located as (
                select i, (100000 + slice % $mappings)::varchar as business_number,
                    $first::date + (slice // $mappings)::integer as day
                from numbered
            )
            select business_number, day, day, 1, i::varchar, (hash(i) % 20000)::varchar, 'b1', 'Main',
                day + interval 10 hour, hash(i) % 2 = 0,
                case when hash(i) % 2 = 1 then 'cooled_off' end,
                case when hash(i) % 2 = 1 then 'The patient was asked recently' end,
                'sms', '0400000000', 'p@example.com', 'Pat', false,
                'pr1', 'Dr Lee', 'Sam', 'Lee', 'lee@example.com', 'individual'
            from located
            order by day, business_number
            """,
            params,
        )
        run_sql(
            con,
            """
            insert into sink.review_request_ledger (business_number, appointment_id, partition_date,
                target_date, group_id, patient_id, channels, status, attempts, updated_at)
            select business_number, appointment_id, partition_date, partition_date, 1, patient_id, 'sms',
                'sent', 1, partition_date + interval 25 hour
            from marts.appointment_eligibility where is_eligible
            """,
        )
        run_sql(
            con,
            """
            insert into calendar.partition_runs (run_id, business_number, partition_date, group_id,
                target_date, run_started_at, close_at, is_partial, status, candidates, eligible, finished_at,
                updated_at)
            select business_number || '-' || partition_date, business_number, partition_date, 1,
                partition_date, partition_date + interval 1 day, partition_date + interval 1 day, false,
                'succeeded', count(*), count(*) filter (where is_eligible), partition_date + interval 25 hour,
                partition_date + interval 25 hour
            from marts.appointment_eligibility group by all
            """,
        )
    return days


def whole_copy(warehouse: Path, target: Path) -> float:
    """Seconds to copy the partitioned tables whole into a new DuckDB file, as every refresh did before."""
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    with connect(warehouse, read_only=True) as con:
        con.execute(f"attach '{target}' as copy (read_write)")
        for table, source in PARTITIONED.items():
            con.execute(f"create table copy.{table} as select * from {source} order by partition_date")
        con.execute("detach copy")
    return time.perf_counter() - started


def query_seconds(path: Path, table: str, read_only: bool = True) -> float:
    with duckdb.connect(str(path), read_only=read_only) as con:
        con.execute(QUERY.format(table)).fetchall()  # warm
        started = time.perf_counter()
        for _ in range(3):
            con.execute(QUERY.format(table)).fetchall()
    return (time.perf_counter() - started) / 3


def measure(directory: Path, label: str, rows: int) -> dict[str, float]:
    warehouse, analytics = directory / f"warehouse_{label}.duckdb", directory / f"analytics_{label}.duckdb"
    started = time.perf_counter()
    days = generate(warehouse, rows)
    print(f"{label}: {rows:,} rows of history ({MAPPINGS} mappings x {days} days x {SLICE}), generated in "
          f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    started = time.perf_counter()
    refresh_analytics([warehouse], analytics)
    first = time.perf_counter() - started
    refreshes = COMPACT_AFTER + 20
    seconds = []
    for k in range(refreshes):  # the newest days first, every mapping of a day, as a daily run goes
        day = FIRST_DAY + timedelta(days=days - 1 - (k // MAPPINGS) % days)
        _touch(warehouse, str(100000 + k % MAPPINGS), day)
        started = time.perf_counter()
        exported = refresh_analytics([warehouse], analytics)["restriction_reasons"]
        seconds.append(time.perf_counter() - started)
        assert exported == SLICE, exported
    compaction = max(seconds)
    result = {
        "first": first,
        "mean": statistics.mean(seconds),
        "median": statistics.median(seconds),
        "compaction": compaction,
        "whole_copy": whole_copy(warehouse, directory / f"copy_{label}.duckdb"),
        "query_views": query_seconds(analytics, "restriction_reasons"),
        "query_table": query_seconds(directory / f"copy_{label}.duckdb", "restriction_reasons"),
    }
    print(
        f"{label}: first (whole) export {first:.2f} s; {refreshes} one-partition refreshes: mean "
        f"{result['mean'] * 1000:.0f} ms, median {result['median'] * 1000:.0f} ms, slowest (the one that "
        f"compacted) {compaction * 1000:.0f} ms; copying the whole history instead: "
        f"{result['whole_copy'] * 1000:.0f} ms; an analyst's group-by over the views "
        f"{result['query_views'] * 1000:.0f} ms, over a DuckDB table {result['query_table'] * 1000:.0f} ms",
        flush=True,
    )
    return result


def _touch(warehouse: Path, business_number: str, day: date) -> None:
    """What a run's build writes, as far as the refresh can tell."""
    with connect(warehouse) as con:
        con.execute(
            "update calendar.partition_runs set updated_at = current_timestamp "
            "where business_number = ? and partition_date = ?",
            [business_number, day],
        )


def audit_trail(changes: int) -> list[dict]:
    """`changes` rows of a registry's audit trail, each a mapping created with a dozen settings."""
    state = json.dumps({"businessNumber": "700000000", "properties": {f"p{i}": "v" * 20 for i in range(12)}})
    return [
        {
            "change_id": i,
            "changed_at": "2026-11-30T10:00:00+00:00",
            "changed_by": "support",
            "method": "POST",
            "route": "/admin/mappings",
            "action": "create",
            "entity_kind": "mapping",
            "entity_id": str(700_000_000 + i),
            "business_number": str(700_000_000 + i),
            "group_id": i % 40,
            "before_state": None,
            "after_state": state,
            "changes": state,
        }
        for i in range(1, changes + 1)
    ]


def trail_refreshes(directory: Path, warehouse: Path, changes: int, days: int, refreshes: int = 20) -> float:
    """Median seconds of the pipeline's refresh after one partition, with an audit trail of `changes` rows
    that is the same as at the refresh before."""
    analytics = directory / f"analytics_trail_{changes}.duckdb"
    rows = audit_trail(changes)
    trail = coverage.AuditTrail(changes, lambda: rows)
    refresh = [[warehouse], directory / "alerts.duckdb", analytics, [], FIRST_DAY]
    coverage.refresh(*refresh, registry_changes=trail)  # the first: everything whole
    seconds = []
    for k in range(refreshes):
        _touch(warehouse, str(100000 + k % MAPPINGS), FIRST_DAY + timedelta(days=days - 1))
        started = time.perf_counter()
        counts = coverage.refresh(*refresh, registry_changes=trail)
        seconds.append(time.perf_counter() - started)
        assert counts["registry_changes"] == changes, counts
    print(
        f"the pipeline's refresh with an audit trail of {changes:,} changes: median "
        f"{statistics.median(seconds) * 1000:.0f} ms of {refreshes}",
        flush=True,
    )
    return statistics.median(seconds)


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, help="where to keep the databases (default: a temp dir)")
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench_analytics_"))
    directory.mkdir(parents=True, exist_ok=True)
    small = measure(directory, "small", args.small)
    large = measure(directory, "large", args.large)
    small_warehouse, small_days = directory / "warehouse_small.duckdb", args.small // (MAPPINGS * SLICE)
    short_trail = trail_refreshes(directory, small_warehouse, 30, small_days)
    long_trail = trail_refreshes(directory, small_warehouse, 30_000, small_days)
    return [
        report(
            Figure(
                f"analysts' refresh after one partition, {args.large:,} rows of history",
                large["mean"] * 1000,
                small["mean"] * 1000,
                "ms",
                f"the same over {args.small:,} rows",
                "ratio <= 1.5",
                large["mean"] <= 1.5 * small["mean"],
                f"mean of {COMPACT_AFTER + 20} refreshes, one compaction included "
                f"({large['compaction'] * 1000:.0f} ms against {small['compaction'] * 1000:.0f} ms); "
                f"median {large['median'] * 1000:.0f} ms against {small['median'] * 1000:.0f} ms",
            )
        ),
        report(
            Figure(
                "analysts' refresh against copying the history",
                large["mean"] * 1000,
                large["whole_copy"] * 1000,
                "ms",
                f"the whole {args.large:,} rows copied (each refresh before issue 13)",
                "info",
                None,
            )
        ),
        report(
            Figure(
                "analysts' query over the Parquet views",
                large["query_views"] * 1000,
                large["query_table"] * 1000,
                "ms",
                "the same group-by over a DuckDB table",
                "info",
                None,
                f"{args.large:,} rows: `{QUERY.format('restriction_reasons')}`",
            )
        ),
        report(
            Figure(
                "the pipeline's refresh, registry audit trail of 30,000 changes",
                long_trail * 1000,
                short_trail * 1000,
                "ms",
                "the same with 30 changes",
                "ratio <= 1.5",
                long_trail <= 1.5 * short_trail,
                "median of 20 one-partition refreshes (coverage.refresh, with registry_changes), the trail "
                "unchanged since the refresh before",
            )
        ),
    ]


if __name__ == "__main__":
    main()
