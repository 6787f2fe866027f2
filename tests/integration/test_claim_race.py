"""Two runs of one integration group decide and claim at the same instant, in two processes.

The cool-off and duplicate rules hold at the moment a request is claimed (SPEC §8): a decision and its claims
are one warehouse transaction, so whichever process goes second sees the first one's claim. With PostgreSQL
the two processes are two hosts, each with its own warehouse: the group's advisory lock orders them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
from models_fixtures import CLOSE_AT, PARTITION_DATE, RUN_STARTED_AT, Warehouse

from pipeline.warehouse import connect

WORKER = Path(__file__).with_name("claim_worker.py")


def start(
    tmp_path: Path, name: str, warehouse: Path, database_url: str | None = None, **build
) -> subprocess.Popen:
    params = {
        "business_number": "1001",
        "partition_date": PARTITION_DATE.isoformat(),
        "group_id": 7,
        "target_date": PARTITION_DATE.isoformat(),
        "cooloff_days": 30,
        "location_names": ["Main Street Clinic"],
        "beta": False,
        "test": False,
        "run_id": name,
        "run_started_at": RUN_STARTED_AT.isoformat(),
        "close_at": CLOSE_AT.isoformat(),
    } | build
    job = tmp_path / f"{name}.json"
    job.write_text(json.dumps({"warehouse": str(warehouse), "database_url": database_url, "build": params}))
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def race(*workers: subprocess.Popen) -> list[str]:
    """Let every worker import, then release them together; returns what each printed."""
    for worker in workers:
        assert worker.stdout.readline() == "ready\n", worker.stderr.read()
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [w.returncode for w in workers] == [0] * len(workers), outputs
    return [out.strip() for out, _ in outputs]


def two_mappings_sharing_a_patient(warehouse: Path) -> None:
    with connect(warehouse) as con:
        wh = Warehouse(con)
        for number in ("1001", "1002"):
            wh.business(number, "b1", "Main Street Clinic")
            wh.patient(number, "p1")
            wh.appointment(number, f"a-{number}", patient_id="p1", ends_at="2026-11-24 10:00")


def outcomes_in(warehouse: Path) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(
            con.execute(
                "select business_number, coalesce(restriction_code, 'eligible') "
                "from marts.appointment_eligibility"
            ).fetchall()
        )


def test_two_mappings_of_one_group_claim_one_patient_at_once_and_exactly_one_wins(tmp_path):
    for trial in range(4):
        warehouse = tmp_path / f"warehouse{trial}.duckdb"
        two_mappings_sharing_a_patient(warehouse)
        first, second = (("1001", "1002"), ("1002", "1001"))[trial % 2]
        race(
            start(tmp_path, f"run-{first}-{trial}", warehouse, business_number=first),
            start(tmp_path, f"run-{second}-{trial}", warehouse, business_number=second),
        )
        with duckdb.connect(str(warehouse), read_only=True) as con:
            claims = con.execute("select business_number, status from sink.review_request_ledger").fetchall()
        outcomes = outcomes_in(warehouse)
        assert len(claims) == 1 and claims[0][1] == "pending", claims
        winner = claims[0][0]
        loser = "1002" if winner == "1001" else "1001"
        assert outcomes == {winner: "eligible", loser: "cooled_off"}


def test_two_hosts_deciding_one_group_at_once_claim_one_patient_once(tmp_path, database_url):
    """Each host has ingested the same Cliniko data into its own warehouse; only PostgreSQL is shared."""
    import psycopg2

    for trial in range(4):
        hosts = {
            number: tmp_path / f"trial{trial}-host-{number}" / "warehouse.duckdb"
            for number in ("1001", "1002")
        }
        for warehouse in hosts.values():
            warehouse.parent.mkdir()
            two_mappings_sharing_a_patient(warehouse)
        order = (("1001", "1002"), ("1002", "1001"))[trial % 2]
        race(*(start(tmp_path, f"run-{n}-{trial}", hosts[n], database_url, business_number=n) for n in order))
        with psycopg2.connect(database_url) as con, con.cursor() as cur:
            cur.execute("select business_number, status from sink.review_request_ledger")
            claims = cur.fetchall()
            cur.execute("delete from sink.review_request_ledger")  # the next trial starts afresh
        assert len(claims) == 1 and claims[0][1] == "pending", claims
        winner = claims[0][0]
        loser = "1002" if winner == "1001" else "1001"
        assert outcomes_in(hosts[winner]) == {winner: "eligible"}
        assert outcomes_in(hosts[loser]) == {loser: "cooled_off"}  # it saw the other host's claim


def test_an_older_run_never_replaces_a_newer_runs_decisions(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    two_mappings_sharing_a_patient(warehouse)
    later = RUN_STARTED_AT + timedelta(hours=1)
    newer = start(tmp_path, "newer", warehouse, run_started_at=later.isoformat())
    assert race(newer)[0].startswith("{")
    older = start(tmp_path, "older", warehouse)
    [printed] = race(older)
    assert printed.startswith("superseded:") and "already built by run newer" in printed
    with duckdb.connect(str(warehouse), read_only=True) as con:
        runs = con.execute("select run_id, status from calendar.partition_runs").fetchall()
    assert runs == [("newer", "built")]  # the older run's build left nothing behind


def test_a_build_records_whether_the_run_was_partial(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    two_mappings_sharing_a_patient(warehouse)
    close_at = datetime(2026, 11, 25, 13, tzinfo=UTC)
    early = close_at - timedelta(hours=3)  # 10:00 appointment has ended; the day has not
    race(
        start(tmp_path, "partial", warehouse, run_started_at=early.isoformat(), close_at=close_at.isoformat())
    )
    race(
        start(tmp_path, "full", warehouse, run_started_at=close_at.isoformat(), close_at=close_at.isoformat())
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        runs = con.execute(
            "select run_id, is_partial, candidates, eligible, target_date "
            "from calendar.partition_runs order by 1"
        ).fetchall()
    assert runs == [("full", False, 1, 1, date(2026, 11, 24)), ("partial", True, 1, 1, date(2026, 11, 24))]
