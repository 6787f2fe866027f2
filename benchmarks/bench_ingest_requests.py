"""Benchmark: how many Cliniko requests does one heavy mapping-day cost, against the least possible and
against paging through the account's whole history?

Not a test. Generates an account with two years of appointments in which one business has a day of
`--hot` appointments and `--hot-classes` more classes, serves it with the emulator, materializes that
mapping-day through the real Dagster assets (businesses -> appointments, classes and attendees -> patients)
and reads the emulator's request log. Prints:

- requests made, per resource;
- the minimum possible: the sum over the resources of ceil(rows / 100), 100 being Cliniko's page cap; for
  practitioners (looked up by id in the patients' step) ceil(ids / 100) of the active list, the same of the
  ids it lacked on the inactive list, and ceil(users / 100) for their emails;
- paging the whole history instead: ceil(all listable appointments / 100), plus the same patient and
  business pages, which is what a client without server-side filters would pay;
- the ratios, and what each count costs in time at Cliniko's 200 requests/minute.

The shared rate limiter is off (CLINIKO_RATE_LIMIT_PER_MINUTE=0) and the emulator's limit is lifted, so
the run measures requests, not waiting.

    uv run python benchmarks/bench_ingest_requests.py [--history 150000] [--hot 5000] [--days 730]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from benchmarks.support import Figure, report
from pipeline.runner import QUIET
from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig
from pipeline.sandbox.generator import NULL, generate_account
from pipeline.sandbox.server import running_cliniko

BUSINESS_NUMBER = "424242"
PER_PAGE = 100
CLINIKO_LIMIT_PER_MINUTE = 200


def pages(rows: int) -> int:
    return math.ceil(rows / PER_PAGE)


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=150_000, help="appointments in the whole account")
    parser.add_argument("--hot", type=int, default=5_000, help="appointments on the benchmarked day")
    parser.add_argument("--days", type=int, default=730, help="days of history")
    parser.add_argument("--hot-classes", type=int, default=20, help="more classes on the benchmarked day")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    end = date(2026, 11, 1)
    start = end - timedelta(days=args.days)
    hot_day = end - timedelta(days=30)
    started = time.perf_counter()
    account = generate_account(
        args.seed,
        appointments=args.history,
        start=start,
        end=end,
        hot_day=hot_day,
        hot_day_appointments=args.hot,
        hot_day_classes=args.hot_classes,
    )
    generated = time.perf_counter() - started
    business = account.businesses[0]["business_name"].strip()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    os.environ.update(DATA_DIR=str(data_dir), CLINIKO_RATE_LIMIT_PER_MINUTE="0")
    os.environ.pop("REGISTRY_SECRET_KEY", None)
    # Imported after DATA_DIR is set: these read settings from the environment.
    from pipeline.assets.ingest import cliniko_appointments, cliniko_businesses, cliniko_patients
    from pipeline.automation.partitions import MAPPING_DIMENSION, MappingDay
    from pipeline.automation.resources import system_resources
    from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
    from pipeline.registry.store import RegistryStore
    from pipeline.settings import load_settings

    emulator = ClinikoEmulator(ClinikoEmulatorConfig(accounts=[account], rate_limit=10**9))
    with running_cliniko(emulator) as base_url:
        os.environ["CLINIKO_BASE_URL"] = base_url
        store = RegistryStore.open(load_settings())
        group, _ = store.create_group(
            "9000",
            118,
            [PropertyInput("cliniko.api.key", account.api_key, True, "g")],
            [TriggerInput(129, 1, None, "t")],
        )
        store.create_mapping(
            MappingInput(
                BUSINESS_NUMBER,
                group["groupId"],
                [PropertyInput("cliniko.location.name", business, False, "m")],
            )
        )
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(MAPPING_DIMENSION, [BUSINESS_NUMBER])
        started = time.perf_counter()
        dg.materialize(
            [cliniko_businesses, cliniko_appointments, cliniko_patients],
            partition_key=str(MappingDay(BUSINESS_NUMBER, hot_day).key),
            instance=instance,
            resources=system_resources(),
            run_config=QUIET,
        )
        ingested = time.perf_counter() - started
        log = emulator.request_log
    emulator.close()

    made = Counter(entry["path"].rsplit("/", 1)[-1] for entry in log)
    (warehouse,) = (data_dir / "warehouse").glob("group-*.duckdb")  # the one group's
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (businesses,) = con.execute("select count(*) from raw.cliniko_businesses").fetchone()
        (appointments,) = con.execute("select count(*) from raw.cliniko_appointments").fetchone()
        (classes,) = con.execute("select count(*) from raw.cliniko_group_appointments").fetchone()
        (attendees,) = con.execute("select count(*) from raw.cliniko_attendees").fetchone()
        patients, missing = con.execute(
            "select count(*) filter (not is_missing), count(*) filter (is_missing) from raw.cliniko_patients"
        ).fetchone()
        referenced, not_active, users = con.execute(
            "select count(*), count(*) filter (not coalesce(is_active, false)), count(distinct user_id) "
            "from raw.cliniko_practitioners"
        ).fetchone()
    finally:
        con.close()
    table = account.appointments
    listable = int((table.deleted_at == NULL).sum())

    practitioner_made = made["practitioners"] + made["inactive"] + made["users"]
    practitioner_minimum = pages(referenced) + pages(not_active) + pages(users)
    # Attendees are asked for 100 classes a query: a query per started hundred of classes at the least.
    visits = pages(appointments) + pages(classes) + max(pages(attendees), pages(classes))
    minimum = pages(businesses) + visits + pages(patients) + practitioner_minimum
    # Classes left out of the whole-history figure: flattering it.
    history = pages(businesses) + pages(listable) + made["patients"] + practitioner_made
    total = sum(made.values())
    seconds = 60 / CLINIKO_LIMIT_PER_MINUTE
    print(f"account: {len(table):,} appointments over {args.days} days ({listable:,} listable)", end="")
    print(f", generated in {generated:.1f} s")
    print(f"mapping-day {hot_day} of '{business}': {appointments:,} appointments end that local day,", end="")
    print(f" {classes} classes with {attendees} attendees,", end="")
    print(f" {patients:,} patients (+{missing} no longer returned), {referenced} practitioners", end="")
    print(f" ({not_active} inactive or gone, {users} users)")
    print(f"ingest through the assets: {ingested:.1f} s wall (rate limiter off)")
    print()
    print(
        f"{'':34}{'businesses':>11}{'appointments':>14}{'classes':>9}{'attendees':>11}{'patients':>10}"
        f"{'practitioners':>15}{'total':>8}{'at 200/min':>12}"
    )
    rows = (
        ("requests made", made["businesses"], made["individual_appointments"], made["group_appointments"],
         made["attendees"], made["patients"], practitioner_made),
        ("minimum: sum ceil(rows/100)", pages(businesses), pages(appointments), pages(classes),
         max(pages(attendees), pages(classes)), pages(patients), practitioner_minimum),
        ("paging the whole history", pages(businesses), pages(listable), 0, 0, made["patients"],
         practitioner_made),
    )  # fmt: skip
    for label, b, a, c, t, p, pr in rows:
        n = b + a + c + t + p + pr
        print(f"{label:34}{b:>11}{a:>14,}{c:>9}{t:>11}{p:>10}{pr:>15}{n:>8,}{n * seconds:>11.0f}s")
    print()
    print(f"made / minimum            = {total / minimum:.3f}")
    print(f"whole history / made      = {history / total:.1f}x more requests")
    statuses = Counter(entry["status"] for entry in log if entry["status"] != 200)
    print(f"non-200 answers in the log: {dict(statuses) or 'none'}")
    return [
        report(
            Figure("API efficiency: requests for one mapping-day", total, minimum, "requests",
                   "minimum: sum of ceil(rows / 100) per resource", "none stated (info)", None,
                   f"{appointments:,} appointments, {classes} classes ({attendees} attendees), "
                   f"{patients:,} patients and {referenced} practitioners of one busy mapping-day")
        ),
        report(
            Figure("API efficiency: against a full-history sync", total, history, "requests",
                   "a generic incremental connector's first run (pages every appointment)", "info", None,
                   f"{history / total:.1f} x more requests, {history * seconds / 60:.0f} min at 200/minute")
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
