"""With DATABASE_URL, the runs of partitions are shared by every host (`calendar.partition_runs` in
PostgreSQL): a build checks there that no newer run of another host built its partition, and a warehouse's
runs from before the setting reach PostgreSQL once. Two "hosts" here are two warehouse files on one real
PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from models_fixtures import CLOSE_AT, PARTITION_DATE, RUN_STARTED_AT, Warehouse

from pipeline.calendar import store
from pipeline.postgres import run
from pipeline.sink.ledger import shared_decision
from pipeline.warehouse import connect
from pipeline.warehouse.models import BuiltByNewerRun, build_partition, ensure_models

GROUP = 7
BUILD = {
    "business_number": "1001", "partition_date": PARTITION_DATE, "group_id": GROUP,
    "target_date": PARTITION_DATE, "cooloff_days": 30, "location_names": ["Main Street Clinic"],
    "beta": False, "test": False,
    "close_at": CLOSE_AT,
}  # fmt: skip


def host(path) -> None:
    """A host's warehouse holding the same Cliniko data: one clinic, two patients seen on the day."""
    with connect(path) as con:
        wh = Warehouse(con)
        wh.business("1001", "b1", "Main Street Clinic")
        for n in (1, 2):
            wh.patient("1001", f"p{n}")
            wh.appointment("1001", f"a{n}", patient_id=f"p{n}", ends_at="2026-11-24 10:00")
        ensure_models(con)


def rows(con, table: str) -> int:
    """How many rows `table` has (0 when the transaction that would have created it rolled back)."""
    schema, name = table.split(".")
    exists = con.execute(
        "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?", [schema, name]
    ).fetchone()[0]
    return con.execute(f"select count(*) from {table}").fetchone()[0] if exists else 0


def build(path, database_url, run_id, started_at, **changes):
    with connect(path) as con, shared_decision(database_url, GROUP) as shared:
        return build_partition(
            con, **{**BUILD, **changes}, run_id=run_id, run_started_at=started_at, shared_ledger=shared
        )


def shared_rows(database_url, sql):
    with store.shared_runs(database_url) as shared:
        return run(shared, sql).fetchall()


def test_a_run_older_than_another_hosts_build_of_its_partition_changes_nothing(tmp_path, database_url):
    a, b = tmp_path / "host-a.duckdb", tmp_path / "host-b.duckdb"
    host(a)
    host(b)
    later = RUN_STARTED_AT + timedelta(hours=1)
    assert build(b, database_url, "run-new", later)["eligible"] == 2
    with pytest.raises(BuiltByNewerRun, match="already built by run run-new"):
        build(a, database_url, "run-old", RUN_STARTED_AT)
    with connect(a) as con:  # nothing of the older run's build landed on its host
        assert con.execute("select count(*) from calendar.partition_runs").fetchone()[0] == 0
        for table in ("marts.appointment_eligibility", "sink.review_request_ledger"):
            assert rows(con, table) == 0, table
    assert shared_rows(database_url, "select run_id, status from calendar.partition_runs") == [
        ("run-new", "built")
    ]
    assert shared_rows(
        database_url, "select appointment_id, status from sink.review_request_ledger order by 1"
    ) == [("a1", "pending"), ("a2", "pending")]
    # A run newer than both builds on either host, and its build is the one recorded.
    assert build(a, database_url, "run-newest", later + timedelta(hours=1))["eligible"] == 2
    assert shared_rows(database_url, "select run_id from calendar.partition_runs order by 1") == [
        ("run-new",),
        ("run-newest",),
    ]


def test_a_success_on_one_host_closes_the_partition_for_every_host(tmp_path, database_url):
    a = tmp_path / "host-a.duckdb"
    host(a)
    build(a, database_url, "run-1", RUN_STARTED_AT)
    with connect(a) as con, store.shared_runs(database_url) as shared:
        assert store.record_success(con, "run-1", RUN_STARTED_AT + timedelta(minutes=5), shared=shared)
    with store.shared_runs(database_url) as shared:
        history = store.history(shared, PARTITION_DATE)
    assert history["1001"][PARTITION_DATE].closed_at == RUN_STARTED_AT + timedelta(minutes=5)
    with connect(a) as con:  # and the host's warehouse, which its analysts read, says the same
        assert store.history(con, PARTITION_DATE) == history


def test_a_warehouses_runs_from_before_database_url_reach_postgresql_once(tmp_path, database_url):
    a = tmp_path / "host-a.duckdb"
    host(a)
    with connect(a) as con:  # built and closed before DATABASE_URL was set
        build_partition(con, **BUILD, run_id="run-files", run_started_at=RUN_STARTED_AT)
        store.record_success(con, "run-files", RUN_STARTED_AT + timedelta(minutes=5))
    for _ in range(2):  # the sensor's tick does this for every group, every minute
        with connect(a) as con, store.shared_runs(database_url) as shared:
            store.share_runs(con, shared)
    assert shared_rows(database_url, "select run_id, status from calendar.partition_runs") == [
        ("run-files", "succeeded")
    ]
    with connect(a) as con:  # copied once: later changes of the warehouse alone are not copied again
        con.execute("update calendar.partition_runs set status = 'failed'")
        with store.shared_runs(database_url) as shared:
            store.share_runs(con, shared)
    assert shared_rows(database_url, "select status from calendar.partition_runs") == [("succeeded",)]
    # Its older run now cannot replace a newer build made with PostgreSQL, on any host.
    with pytest.raises(BuiltByNewerRun):
        build(a, database_url, "run-older", RUN_STARTED_AT - timedelta(hours=1))


def test_a_dry_run_the_new_decision_no_longer_makes_is_withdrawn_in_postgresql_too(tmp_path, database_url):
    a = tmp_path / "host-a.duckdb"
    host(a)
    build(a, database_url, "run-1", RUN_STARTED_AT, test=True)
    ledger = "select appointment_id, status from sink.review_request_ledger order by 1"
    assert shared_rows(database_url, ledger) == [("a1", "dry_run"), ("a2", "dry_run")]
    with connect(a) as con:  # Cliniko says since that a1 was cancelled; the partition is re-run
        con.execute("update raw.cliniko_appointments set cancelled_at = now() where appointment_id = 'a1'")
    build(a, database_url, "run-2", RUN_STARTED_AT + timedelta(hours=1), test=True)
    assert shared_rows(database_url, ledger) == [("a2", "dry_run")]
    with connect(a) as con:
        assert con.execute(ledger).fetchall() == [("a2", "dry_run")]
