"""At-most-once under SIGKILL, under concurrent runs of one partition, and under 429 storms and 5xx bursts.

The posting runs are real subprocesses against the emulator served by this test process over loopback. With
PostgreSQL (`db`), each subprocess is a host of its own: its own warehouse file, the ledger, leases and rates
shared through the server only.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from birdeye_sink_support import KEY, claim, delivered_counts, eligible_rows, ledger_rows

from pipeline.leases import holder_alive
from pipeline.sandbox.birdeye_emulator import BirdeyeEmulatorConfig, running_birdeye
from pipeline.sink import ledger, post_review_requests
from pipeline.sink.post import ledger_connection

WORKER = Path(__file__).with_name("birdeye_sink_worker.py")
BATCH = 8
FAST = {"backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05, "rate_per_second": 500.0, "burst": 8}


@pytest.fixture(params=["files", "postgres"])
def db(request) -> str | None:
    """Where the ledger lives: the group's warehouse file (None), or PostgreSQL (`DATABASE_URL`)."""
    return None if request.param == "files" else request.getfixturevalue("database_url")


def host_warehouse(tmp_path: Path, db: str | None, name: str) -> Path:
    """The warehouse file of worker `name`: one for every worker on one machine, one per host with `db`."""
    return tmp_path / (f"host-{name}" if db else "") / "warehouse.duckdb"


def start_worker(
    tmp_path: Path, name: str, db: str | None, base_url: str, rows: list[dict], **options
) -> subprocess.Popen:
    """A posting run in its own process for `rows`, which the models have claimed."""
    warehouse = host_warehouse(tmp_path, db, name)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    claim(warehouse, rows, database_url=db)
    job = tmp_path / f"{name}.json"
    options = FAST | {"concurrency": 4, "batch_size": BATCH, "max_attempts": 4} | options
    options["rate_limit_dir"] = str(warehouse.parent / "rate_limits")
    options["database_url"] = db
    spec = {
        "warehouse": str(warehouse),
        "base_url": base_url,
        "api_key": KEY,
        "rows": rows,
        "options": options,
    }
    job.write_text(json.dumps(spec))
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return worker


def go(worker: subprocess.Popen) -> None:
    """Wait until the worker has imported everything, then let it post."""
    assert worker.stdout.readline() == "ready\n", worker.stderr.read()
    worker.stdin.write("go\n")
    worker.stdin.flush()


def received_for(birdeye, bid: str) -> int:
    return sum(1 for r in birdeye.records() if r.bid == bid)


def assert_at_most_once_and_nothing_lost(
    birdeye, warehouse: Path, rows: list[dict], db: str | None
) -> dict[str, dict]:
    bids = {r["business_number"] for r in rows}
    records = [r for r in birdeye.records() if r.bid in bids]
    delivered = delivered_counts(records)
    assert not [key for key, n in delivered.items() if n > 1], "an appointment reached Birdeye twice"
    ledger = ledger_rows(warehouse, db, bids)
    assert set(ledger) == {r["appointment_id"] for r in rows}, (
        "an eligible appointment vanished from the ledger"
    )
    for appointment, row in ledger.items():
        key = (row["business_number"], appointment)
        assert row["status"] in ("sent", "failed", "uncertain"), row
        if row["status"] == "sent":
            assert delivered[key] == 1
        if row["status"] == "failed":
            assert delivered[key] == 0
    return ledger


def wait_for_the_server_to_free_its_lease(db: str | None) -> None:
    """A killed run's lease is free once PostgreSQL's backend notices the dropped connection and ends: a few
    milliseconds, longer on a loaded machine. The next reap in production (a later posting run, the calendar's
    next tick) comes long after; the survivor here comes at once, so it waits for that. A flock (no
    `DATABASE_URL`) is free when the kernel closes the dead process's file."""
    if db is None:
        return
    with ledger_connection(None, db) as con:
        run_ids = [r for r in ledger.sending_run_ids(con) if r is not None]
    deadline = time.monotonic() + 30
    while any(holder_alive(db, r) for r in run_ids) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_sigkill_at_random_points_never_posts_twice_and_loses_nothing(tmp_path, db):
    rng = random.Random(20261124)
    warehouse = host_warehouse(tmp_path, db, "survivor")
    config = BirdeyeEmulatorConfig(
        keys={KEY: None}, latency_seconds=0.01, drop_rate=0.03, server_error_rate=0.05
    )
    killed_mid_flight = 0
    trials = []
    for trial in range(10):
        rows = eligible_rows(30, business_number=f"90000000000{trial:02d}")
        rows[5]["patient_name"] = ""  # a certain 400: failed without a POST
        trials.append(rows)
    with running_birdeye(config) as birdeye:
        # Workers start three trials ahead, so their Python start-up overlaps the earlier trials.
        workers: list[subprocess.Popen] = []
        for trial, rows in enumerate(trials):
            while len(workers) < min(trial + 4, len(trials)):
                n = len(workers)
                workers.append(start_worker(tmp_path, f"trial{n}", db, birdeye.base_url, trials[n]))
            bid = rows[0]["business_number"]
            worker = workers[trial]
            go(worker)
            kill_after = rng.randrange(0, 30)  # kill once Birdeye got this many requests (0: any time)
            if kill_after == 0:
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                while worker.poll() is None and received_for(birdeye, bid) < kill_after:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.03))
            finished = worker.poll() is not None
            worker.send_signal(signal.SIGKILL)
            worker.communicate()
            killed_mid_flight += not finished and received_for(birdeye, bid) > 0
            wait_for_the_server_to_free_its_lease(db)

            warehouse.parent.mkdir(parents=True, exist_ok=True)
            post_review_requests(
                warehouse, rows, api_key=KEY, base_url=birdeye.base_url, rate_limit_dir=tmp_path,
                database_url=db, **FAST,
            )  # fmt: skip

            ledger = assert_at_most_once_and_nothing_lost(birdeye, warehouse, rows, db)
            assert ledger["1005"]["status"] == "failed" and ledger["1005"]["attempts"] == 0
            died = [a for a, row in ledger.items() if row["error_code"] == "run_died"]
            assert len(died) <= BATCH, f"trial {trial}: a kill lost {len(died)} rows, more than one batch"
    assert killed_mid_flight >= 5, "the kills should mostly land while requests are in flight"


def test_two_concurrent_runs_of_one_partition_post_each_appointment_once(tmp_path, db):
    config = BirdeyeEmulatorConfig(keys={KEY: None}, latency_seconds=0.01)
    with running_birdeye(config) as birdeye:
        for scenario, bid in enumerate(["9100000000001", "9100000000002"]):
            rows = eligible_rows(60, business_number=bid)
            # Paced at 20/s (about 3 s for 60 rows, in batches of about 10), the first run is still posting
            # when the second, already imported and waiting for its go, starts.
            first = start_worker(tmp_path, f"a{scenario}", db, birdeye.base_url, rows, rate_per_second=20.0)
            second = start_worker(tmp_path, f"b{scenario}", db, birdeye.base_url, rows)
            go(first)
            if scenario == 1:  # the second run starts while the first has rows in `sending`
                while received_for(birdeye, bid) < 5 and first.poll() is None:
                    time.sleep(0.002)
            go(second)
            outputs = [worker.communicate(timeout=60) for worker in (first, second)]
            assert [w.returncode for w in (first, second)] == [0, 0], outputs
            ledger = assert_at_most_once_and_nothing_lost(
                birdeye, host_warehouse(tmp_path, db, f"a{scenario}"), rows, db
            )
            assert {row["status"] for row in ledger.values()} == {"sent"}, (
                "a live run's rows were marked uncertain"
            )
            assert received_for(birdeye, bid) == 60
            assert len({row["run_id"] for row in ledger.values()}) == 2, "the two runs did not overlap"


def test_a_429_storm_ends_sent_within_the_retry_bound(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    config = BirdeyeEmulatorConfig(keys={KEY: None}, rate_per_second=80.0, burst=1)
    rows = eligible_rows(24)
    claim(warehouse, rows)
    with running_birdeye(config) as birdeye:
        counts = post_review_requests(
            warehouse, rows, api_key=KEY, base_url=birdeye.base_url, concurrency=8, rate_limit_dir=tmp_path,
            max_attempts=30, **(FAST | {"backoff_base_seconds": 0.02, "backoff_cap_seconds": 0.3}),
        )  # fmt: skip
        statuses = [r.status for r in birdeye.records()]
    assert counts["sent"] == 24
    assert statuses.count(429) >= 5 and statuses.count(200) == 24
    assert max(row["attempts"] for row in ledger_rows(warehouse).values()) > 1


def test_a_5xx_burst_ends_sent_or_failed_with_the_reason(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    config = BirdeyeEmulatorConfig(keys={KEY: None}, server_error_rate=0.6, server_error_first=20, seed=3)
    rows = eligible_rows(40)
    claim(warehouse, rows)
    with running_birdeye(config) as birdeye:
        counts = post_review_requests(
            warehouse,
            rows,
            api_key=KEY,
            base_url=birdeye.base_url,
            max_attempts=4,
            rate_limit_dir=tmp_path,
            **FAST,
        )
        delivered = delivered_counts(birdeye.records())
    assert counts["sent"] + counts["failed"] == 40 and counts["sent"] >= 20 and counts["failed"] >= 1
    for appointment, row in ledger_rows(warehouse).items():
        if row["status"] == "failed":
            assert row["attempts"] == 4 and row["error_code"] == "http_503"
            assert row["error_message"].startswith("gave up after 4 attempts: HTTP 503")
        else:
            assert row["attempts"] <= 4 and delivered[(row["business_number"], appointment)] == 1


def test_two_processes_posting_with_one_key_share_its_rate(tmp_path, db):
    """The Birdeye rate per key holds across processes: two runs of different mappings with one key, at
    20/s each alone, reach Birdeye at 20/s together (and Birdeye, limiting at 25/s, never answers 429); with
    PostgreSQL, from two hosts."""
    config = BirdeyeEmulatorConfig(keys={KEY: None}, rate_per_second=25.0, burst=2)
    with running_birdeye(config) as birdeye:
        workers = [
            start_worker(
                tmp_path,
                name,
                db,
                birdeye.base_url,
                eligible_rows(20, business_number=bid),
                rate_per_second=20.0,
                burst=1,
            )  # fmt: skip
            for name, bid in (("one", "9200000000001"), ("two", "9200000000002"))
        ]
        for worker in workers:
            go(worker)
        outputs = [worker.communicate(timeout=60) for worker in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        records = birdeye.records()
    assert [r.status for r in records] == [200] * 40
    received = sorted(datetime.fromisoformat(r.received_at) for r in records)
    assert (received[-1] - received[0]).total_seconds() >= 39 / 20.0 * 0.95
