"""The analysts' database can stay open in another process while partitions are built and it is refreshed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from models_fixtures import Warehouse

from pipeline.calendar.coverage import add_coverage
from pipeline.warehouse import connect
from pipeline.warehouse.snapshot import refresh_analytics

# Opens analytics.duckdb read-only, says "ready", then queries in a loop until the stop file appears, and
# reports every count it saw and every error it met.
READER = textwrap.dedent(
    """
    import json, pathlib, sys, duckdb
    path, stop = sys.argv[1], pathlib.Path(sys.argv[2])
    con = duckdb.connect(path, read_only=True)
    seen, errors, queries = set(), [], 0
    print("ready", flush=True)
    while not stop.exists():
        try:
            seen.add(con.execute("select count(*) from restriction_reasons").fetchall()[0][0])
            con.execute("select restriction_code, count(*) from restriction_reasons group by all").fetchall()
            queries += 1
        except Exception as error:
            errors.append(repr(error))
    print(json.dumps({"seen": sorted(seen), "errors": errors, "queries": queries}), flush=True)
    """
)


def build(warehouse_path: Path, business_number: str, appointments: int) -> None:
    with connect(warehouse_path) as con:
        wh = Warehouse(con)
        wh.business(business_number, "b1", "Main Street Clinic")
        for i in range(appointments):
            wh.patient(business_number, f"p{i}")
            wh.appointment(business_number, f"a{i}", patient_id=f"p{i}", ends_at="2026-11-24 10:00")
        wh.build(business_number)


def test_open_reader_neither_blocks_nor_breaks_on_refresh(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 2)
    assert refresh_analytics(warehouse_path, analytics_path)["restriction_reasons"] == 2

    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(analytics_path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "ready"
        build(warehouse_path, "1002", 3)
        first = refresh_analytics(warehouse_path, analytics_path)
        build(warehouse_path, "1003", 1)
        second = refresh_analytics(warehouse_path, analytics_path)
        time.sleep(0.2)  # let the reader query the replaced file a few more times
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    report = json.loads(out)
    assert report["errors"] == []
    assert report["queries"] > 0
    assert report["seen"] == [2]  # its snapshot stays consistent for as long as it is open

    assert (first["restriction_reasons"], second["restriction_reasons"]) == (5, 6)
    with duckdb.connect(str(analytics_path), read_only=True) as fresh:
        assert fresh.execute("select count(*) from restriction_reasons").fetchall() == [(6,)]
        assert fresh.execute("select count(*) from restriction_codes").fetchall() == [(8,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "analytics.duckdb",
        "stop",
        "warehouse.duckdb",
        "warehouse.duckdb.lock",
    ]


def test_snapshot_has_the_spec_columns_and_no_contact_details(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 1)  # claims a0; the sink then sends it
    with connect(warehouse_path) as con:
        con.execute("update sink.review_request_ledger set status = 'sent'")
    refresh_analytics(warehouse_path, analytics_path, lambda con, alias: add_coverage(con, alias, []))
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        columns = {
            table: [c[0] for c in con.execute(f"describe {table}").fetchall()]
            for table in ("restriction_reasons", "review_requests", "restriction_codes", "coverage", "alerts")
        }
        assert con.execute("select status from review_requests").fetchall() == [("sent",)]
    assert columns["restriction_reasons"] == [
        "business_number", "group_id", "partition_date", "target_date", "appointment_id", "patient_id",
        "cliniko_business_id", "location_name", "appointment_ends_at", "is_eligible", "restriction_code",
        "restriction_reason", "is_test",
    ]  # fmt: skip
    assert columns["review_requests"] == [
        "business_number", "group_id", "partition_date", "target_date", "appointment_id", "patient_id",
        "channels", "status", "attempts", "error_code", "error_message", "birdeye_customer_id",
        "first_attempt_at", "sent_at",
    ]  # fmt: skip
    assert columns["restriction_codes"] == ["restriction_code", "restriction_reason", "precedence"]
    assert columns["coverage"] == [
        "business_number", "group_id", "partition_date", "target_date", "close_at", "state", "runs",
        "last_run_id", "last_run_at", "closed_at", "candidates", "eligible",
    ]  # fmt: skip


def test_refresh_of_an_unbuilt_warehouse_says_what_to_do(tmp_path: Path) -> None:
    with connect(tmp_path / "warehouse.duckdb"):
        pass
    with pytest.raises(RuntimeError, match="build at least one partition"):
        refresh_analytics(tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb")
    assert not (tmp_path / "analytics.duckdb").exists()
