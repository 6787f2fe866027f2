"""The per-mapping view each `appointment_eligibility` partition carries in the UI: which clinic its key
means, and the mapping's own last 14 days, where a day whose candidates got no request stands out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb

from pipeline.assets.models import mapping_label, recent_days
from pipeline.registry import MappingConfig
from pipeline.warehouse.slices import ensure_tables


def run(con, run_id, number, day, *, started, status, candidates, eligible, partial=False):
    con.execute(
        "insert into calendar.partition_runs (run_id, business_number, partition_date, run_started_at, "
        "is_partial, status, candidates, eligible) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, number, day, started, partial, status, candidates, eligible],
    )


def test_the_mappings_last_days_newest_build_first_and_a_day_without_requests_stands_out():
    con = duckdb.connect()
    ensure_tables(con)
    today, at = date(2026, 11, 30), datetime(2026, 11, 30, 9, tzinfo=UTC)
    run(con, "r1", "1001", today, started=at, status="failed", candidates=9, eligible=9)
    run(
        con,
        "r2",
        "1001",
        today,
        started=at + timedelta(hours=1),
        status="succeeded",
        candidates=8,
        eligible=0,
    )
    run(con, "r3", "1001", today - timedelta(days=1), started=at, status="built", candidates=5, eligible=2,
        partial=True)  # fmt: skip
    run(con, "r4", "1002", today, started=at, status="succeeded", candidates=7, eligible=7)  # another mapping
    run(
        con,
        "r5",
        "1001",
        today - timedelta(days=14),
        started=at,
        status="succeeded",
        candidates=1,
        eligible=1,
    )
    assert recent_days(con, "1001", today, "r3").splitlines() == [
        "| partition | candidates | eligible | run |",
        "|---|---:|---:|---|",
        "| 2026-11-30 | 8 | 0 **none eligible** | posted |",
        "| 2026-11-29 | 5 | 2 | this run (partial day) |",
    ]
    # Seen from a later run, r3's build was never posted (it is still going, or died).
    assert recent_days(con, "1001", today, "r9").splitlines()[3] == (
        "| 2026-11-29 | 5 | 2 | decided, not posted yet (partial day) |"
    )


def test_a_mapping_is_named_by_its_locations_and_flags():
    base = {"location_names": ("Sydney CBD Physio", "Bondi"), "test": False, "beta": False}
    label = mapping_label
    assert label(_mapping(**base)) == "Sydney CBD Physio, Bondi"
    assert label(_mapping(**base | {"test": True, "beta": True})) == "Sydney CBD Physio, Bondi (test, beta)"


def _mapping(**fields) -> MappingConfig:
    """A mapping with only the fields the label reads (the rest are not consulted)."""
    return type("Mapping", (), fields)()  # type: ignore[return-value]
