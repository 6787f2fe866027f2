"""What the shared state does when PostgreSQL drops a connection: a run's lease, an idle pooled connection,
and a backlog of leases left by runs that ended (real server, sessions ended with pg_terminate_backend)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import psycopg2
import pytest

from pipeline import postgres
from pipeline.leases import Lease, LeaseLost, holder_alive, sweep
from pipeline.sink import ledger
from pipeline.sink.post import _reap, ledger_connection


def terminate(url: str, where: str) -> int:
    with psycopg2.connect(url) as admin, admin.cursor() as cur:
        cur.execute(f"select count(pg_terminate_backend(pid)) from pg_stat_activity where {where}")
        return cur.fetchone()[0]


def test_a_run_that_lost_its_lease_stops_before_taking_more_rows(database_url):
    lease = Lease(database_url).acquire()
    with ledger_connection(None, database_url) as con:
        pid = con.get_backend_pid()
    # The sessions holding advisory locks in this test's database (pg_locks shows the whole server's), the
    # lease's among them (picking one of them sometimes missed the lease's).
    holders = (
        "select l.pid from pg_locks l join pg_database d on d.oid = l.database where l.locktype = 'advisory' "
        f"and l.granted and d.datname = current_database() and l.pid <> {pid}"
    )
    assert terminate(database_url, f"pid in ({holders})") >= 1
    assert holder_alive(database_url, lease.name) is False  # another host now takes it for dead
    with pytest.raises(LeaseLost, match="stopping here"):
        lease.check()
    lease.release()  # no error: the connection and its lock are gone already


def test_an_idle_pooled_connection_the_server_dropped_is_replaced(database_url, monkeypatch):
    monkeypatch.setattr(postgres, "_TEST_AFTER_IDLE_SECONDS", 0.0)
    keys = [("b", "a1")]
    row = ("b", "a1", date(2026, 11, 1), date(2026, 11, 1), 1, "p", "sms", "pending", 0, None, None, None,
           None, None, datetime.now(UTC), None, None, None)  # fmt: skip
    with ledger_connection(None, database_url) as con:
        ledger._insert(con, [row], conflict="")
    assert terminate(database_url, "application_name = 'cliniko-reviews' and pid <> pg_backend_pid()") >= 1
    time.sleep(0.1)
    with ledger_connection(None, database_url) as con:  # the pooled one is dead: a new one is made
        assert ledger.counts(con, keys)["pending"] == 1


def test_sweep_removes_a_large_backlog_of_dead_leases_in_batches(database_url):
    with postgres.connect(database_url) as con, con.cursor() as cur:  # migrated, then the rows
        cur.execute("insert into leases (name) select 'gone-' || n from generate_series(1, 3000) as n")
    live = Lease(database_url).acquire()
    assert sweep(database_url) == 3000
    assert holder_alive(database_url, live.name) is True
    live.release()


def test_a_reaped_row_of_a_live_run_is_never_claimed_again(database_url):
    """The reap of a lost lease's rows makes them `uncertain`, never `pending`: nothing is posted twice."""
    lease = Lease(database_url).acquire()
    row = ("b", "a2", date(2026, 11, 1), date(2026, 11, 1), 1, "p", "sms", "pending", 0, None, None, None,
           None, None, datetime.now(UTC), None, None, None)  # fmt: skip
    with ledger_connection(None, database_url) as con:
        ledger._insert(con, [row], conflict="")
        assert len(ledger.claim(con, [("b", "a2")], lease.name, 10, datetime.now(UTC))) == 1
    lease._con.close()  # the lease's connection drops
    with ledger_connection(None, database_url) as con:
        assert _reap(con, database_url) == 1
        assert ledger.claim(con, [("b", "a2")], "another-run", 10, datetime.now(UTC)) == []
        assert ledger.counts(con, [("b", "a2")])["uncertain"] == 1
    lease.release()


def test_a_decision_whose_shared_commit_fails_leaves_the_warehouse_and_its_ledger_as_they_were(
    tmp_path, database_url
):
    """The warehouse kept a `sent` request before DATABASE_URL was set. Its first decision with PostgreSQL
    copies that ledger there; if PostgreSQL's commit fails, the warehouse must not commit either (else it
    would note the copy as done, and the next decision would replace its history with PostgreSQL's
    nothing)."""
    from models_fixtures import CLOSE_AT, PARTITION_DATE, RUN_STARTED_AT, Warehouse

    from pipeline.sink.ledger import SharedDecision, shared_decision
    from pipeline.warehouse import connect
    from pipeline.warehouse.models import build_partition

    warehouse = tmp_path / "warehouse.duckdb"
    with connect(warehouse) as con:
        wh = Warehouse(con)
        wh.business("1001", "b1", "Main Street Clinic")
        wh.patient("1001", "p1")
        wh.appointment("1001", "a-old", patient_id="p1", ends_at="2026-11-24 10:00")
        assert wh.build("1001", cooloff_days=30)["eligible"] == 1  # before DATABASE_URL: claimed here
        con.execute("update sink.review_request_ledger set status = 'sent'")
    build = {
        "business_number": "1001", "partition_date": PARTITION_DATE, "group_id": 7,
        "target_date": PARTITION_DATE, "cooloff_days": 30, "location_names": ["Main Street Clinic"],
        "beta": False, "test": False,
        "run_started_at": RUN_STARTED_AT, "close_at": CLOSE_AT,
    }  # fmt: skip

    class CommitFails(SharedDecision):
        def push(self, warehouse, params):
            ledger.push_claims(warehouse, self.con, params)
            self.con.close()  # the server goes away before the commit
            self.con.commit()

    with (
        connect(warehouse) as con,
        pytest.raises(psycopg2.InterfaceError),
        shared_decision(database_url, 7) as shared,
    ):
        build_partition(con, **build, run_id="r1", shared_ledger=CommitFails(shared.con))
    with connect(warehouse) as con:
        assert con.execute("select appointment_id, status from sink.review_request_ledger").fetchall() == [
            ("a-old", "sent")
        ]
    with connect(warehouse) as con, shared_decision(database_url, 7) as shared:  # the retry
        build_partition(con, **build, run_id="r2", shared_ledger=shared)
    with ledger_connection(None, database_url) as con:
        assert ledger.counts(con, [("1001", "a-old")])["sent"] == 1  # the history reached PostgreSQL
