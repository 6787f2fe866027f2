"""Benchmark: does the cost of building one partition of the SQL models grow with history?

Not a test. Builds two warehouses whose raw tables hold an appointments history of 100 thousand and of
10 million rows (plus their patients and a ledger), generated in SQL in the order daily ingestion appends
them, then times `build_partition` for one partition at each size (median of several partitions) and
prints their ratio (goal <= 1.5), and the time of a full re-run of every partition of the large history.

    uv run python benchmarks/bench_models.py [--dir DIR] [--slice 2000] [--mappings 10] [--skip-full-rerun]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from benchmarks.support import Figure, report
from pipeline.warehouse import run_sql
from pipeline.warehouse.models import build_partition, ensure_models

FIRST_DAY = date(2024, 1, 1)
RUN_STARTED_AT = datetime(2030, 1, 1, tzinfo=UTC)
MAPPINGS_PER_GROUP = 10
PATIENTS_PER_MAPPING = 20_000


def generate(con: duckdb.DuckDBPyConnection, *, rows: int, slice_rows: int, mappings: int) -> int:
    """Fill raw tables and the ledger with `rows` appointments in slices of `slice_rows`; returns days."""
    ensure_models(con)
    days = rows // (slice_rows * mappings)
    params = {
        "rows": days * mappings * slice_rows,
        "slice_rows": slice_rows,
        "mappings": mappings,
        "first_day": FIRST_DAY,
        "patients": PATIENTS_PER_MAPPING,
        "per_group": MAPPINGS_PER_GROUP,
    }
    run_sql(
        con,
        """
        insert into raw.cliniko_businesses (business_number, cliniko_business_id, business_name,
            time_zone_identifier, country_code, loaded_at)
        select (100000 + m)::varchar, (m * 10 + b)::varchar, 'Clinic ' || m || chr((65 + b)::integer),
            'Australia/Sydney', 'AU', now()
        from range($mappings) as m(m), range(2) as b(b)
        """,
        params,
    )
    # Ordered as daily ingestion appends it: day by day, one mapping's slice after another.
    run_sql(
        con,
        """
        insert into raw.cliniko_appointments (business_number, partition_date, appointment_id,
            cliniko_business_id, patient_id, starts_at, ends_at, did_not_arrive, cancelled_at, loaded_at)
        with numbered as (
            select i, i // $slice_rows as slice, i % $slice_rows as position from range($rows) as r(i)
        ),
        located as (
            select i, position,
                slice % $mappings as m,
                $first_day::date + (slice // $mappings)::integer as day
            from numbered
        )
        select (100000 + m)::varchar, day, i::varchar, (m * 10 + position % 2)::varchar,
            (hash(i) % $patients)::varchar,
            timezone('Australia/Sydney', day + interval 7 hour + position * interval 30 second),
            timezone('Australia/Sydney', day + interval 430 minute + position * interval 30 second),
            hash(i * 3) % 30 = 0, case when hash(i * 5) % 20 = 0 then now() end, now()
        from located
        order by day, m, i
        """,
        params,
    )
    run_sql(
        con,
        """
        insert into raw.cliniko_patients (business_number, partition_date, patient_id, is_missing, first_name,
            last_name, email, reminder_type, phone_numbers, archived_at, loaded_at)
        select business_number, partition_date, patient_id, hash(patient_id) % 200 = 0, 'Pat',
            'Ient' || patient_id, 'p' || patient_id || '@example.com',
            ['SMS & Email', 'SMS', 'Email', 'None'][(1 + hash(patient_id) % 4)::bigint],
            [{'phone_type': 'Mobile', 'number': '04' || lpad(patient_id, 8, '0')}],
            case when hash(patient_id) % 50 = 0 then now() end, now()
        from (select distinct business_number, partition_date, patient_id from raw.cliniko_appointments)
        order by partition_date, business_number
        """,
    )
    # Requests the sink recorded: about half the appointments, in the order they were sent.
    run_sql(
        con,
        """
        insert into sink.review_request_ledger (business_number, appointment_id, partition_date, target_date,
            group_id, patient_id, channels, status, attempts, updated_at)
        select business_number, appointment_id, partition_date, partition_date,
            (business_number::integer - 100000) // $per_group, patient_id, 'sms', 'sent', 1, now()
        from (
            select *, row_number() over (partition by business_number, partition_date, patient_id) as n
            from raw.cliniko_appointments
            where hash(appointment_id) % 2 = 0
        )
        where n = 1
        order by partition_date, business_number
        """,
        params,
    )
    con.execute("checkpoint")
    return days


def build(con: duckdb.DuckDBPyConnection, mapping: int, day: date) -> dict[str, int]:
    return build_partition(
        con,
        business_number=str(100000 + mapping),
        partition_date=day,
        group_id=mapping // MAPPINGS_PER_GROUP,
        target_date=day,
        cooloff_days=30,
        location_names=[f"clinic {mapping}a", f" CLINIC {mapping}B "],
        beta=False,
        test=False,
        run_id=uuid.uuid4().hex,
        run_started_at=RUN_STARTED_AT,
        close_at=RUN_STARTED_AT,
    )


def time_partitions(
    con: duckdb.DuckDBPyConnection, mappings: int, days: int, samples: int = 9
) -> tuple[float, float]:
    """Median wall and CPU seconds to build one partition, over partitions spread across the history.

    CPU time (all threads of this process) is reported beside wall time because the benchmark machine is
    shared: wall time there measures the neighbours as much as the models.
    """
    build(con, 0, FIRST_DAY)
    walls, cpus = [], []
    for k in range(samples):
        day = FIRST_DAY + timedelta(days=(days - 1) * k // max(samples - 1, 1))
        wall, cpu = time.perf_counter(), time.process_time()
        counts = build(con, (k * 7) % mappings, day)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        assert counts["candidates"] > 0, counts
    return statistics.median(walls), statistics.median(cpus)


def full_rerun(con: duckdb.DuckDBPyConnection, mappings: int, days: int) -> tuple[float, int]:
    started = time.perf_counter()
    for offset in range(days):
        for mapping in range(mappings):
            build(con, mapping, FIRST_DAY + timedelta(days=offset))
        if (offset + 1) % max(days // 10, 1) == 0:
            done = (offset + 1) * mappings
            print(f"  re-run {done:,} partitions in {time.perf_counter() - started:.0f} s", flush=True)
    return time.perf_counter() - started, days * mappings


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir", type=Path, help="where to keep the benchmark databases (default: a temp dir)"
    )
    parser.add_argument("--slice", type=int, default=2000, help="appointments per partition")
    parser.add_argument("--mappings", type=int, default=10)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--skip-full-rerun", action="store_true")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench_models_"))
    directory.mkdir(parents=True, exist_ok=True)

    results = {}
    reruns: dict[str, tuple[float, int]] = {}
    for label, rows in (("small", args.small), ("large", args.large)):
        path = directory / f"warehouse_{rows}.duckdb"
        path.unlink(missing_ok=True)
        with duckdb.connect(str(path)) as con:
            started = time.perf_counter()
            days = generate(con, rows=rows, slice_rows=args.slice, mappings=args.mappings)
            generated = time.perf_counter() - started
            history = con.execute("select count(*) from raw.cliniko_appointments").fetchall()[0][0]
            ledger = con.execute("select count(*) from sink.review_request_ledger").fetchall()[0][0]
            print(
                f"{label}: {history:,} appointments ({args.mappings} mappings x {days} days x {args.slice}), "
                f"{ledger:,} ledger rows, generated in {generated:.1f} s",
                flush=True,
            )
            wall, cpu = time_partitions(con, args.mappings, days)
            print(
                f"{label}: one partition, mart nearly empty: {wall * 1000:.0f} ms wall, "
                f"{cpu * 1000:.0f} ms CPU",
                flush=True,
            )
            if label == "small" or not args.skip_full_rerun:
                seconds, partitions = full_rerun(con, args.mappings, days)
                reruns[label] = (seconds, partitions)
                # The pipeline closes its connection after each partition, which checkpoints the deletes
                # and inserts; this one connection has not, so do it once before timing.
                con.execute("checkpoint")
                print(
                    f"{label}: full re-run of {partitions:,} partitions: {seconds:.1f} s "
                    f"({seconds / partitions * 1000:.0f} ms per partition)",
                    flush=True,
                )
            results[label] = time_partitions(con, args.mappings, days)
            mart = con.execute("select count(*) from marts.appointment_eligibility").fetchall()[0][0]
            wall, cpu = results[label]
            print(
                f"{label}: one partition with {mart:,} rows in the mart: {wall * 1000:.0f} ms wall, "
                f"{cpu * 1000:.0f} ms CPU",
                flush=True,
            )
    (small_wall, small_cpu), (large_wall, large_cpu) = results["small"], results["large"]
    print(
        f"ratio large/small: {large_wall / small_wall:.2f} wall, {large_cpu / small_cpu:.2f} CPU "
        "(goal <= 1.5)",
        flush=True,
    )
    figures = [
        report(
            Figure(
                f"models: one partition over {args.large:,} rows of history",
                large_wall * 1000,
                small_wall * 1000,
                "ms",
                f"the same over {args.small:,} rows",
                "ratio <= 1.5",
                large_wall / small_wall <= 1.5,
                f"CPU {large_cpu * 1000:.0f} ms against {small_cpu * 1000:.0f} ms "
                f"(ratio {large_cpu / small_cpu:.2f})",
            )
        )
    ]
    if "large" in reruns:
        seconds, partitions = reruns["large"]
        figures.append(
            report(
                Figure(
                    f"models: full re-run over {args.large:,} rows",
                    seconds,
                    partitions * large_wall,
                    "s",
                    f"{partitions:,} partitions x one partition's time",
                    "info",
                    None,
                )
            )
        )
    return figures


if __name__ == "__main__":
    main()
