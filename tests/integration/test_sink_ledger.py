"""Every ledger transition of SPEC §5 against the emulator over HTTP, in a DuckDB file and in PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from birdeye_sink_support import KEY, claim, delivered_counts, eligible_rows, ledger_rows
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.leases import Lease
from pipeline.sandbox.birdeye_emulator import BirdeyeEmulatorConfig, running_birdeye
from pipeline.sink import BirdeyeKeyRefused, ledger, post_review_requests, reap_dead_runs, requeue
from pipeline.sink.post import leases_of, ledger_connection


@pytest.fixture(params=["files", "postgres"])
def db(request) -> str | None:
    """Where the ledger lives: the group's warehouse file (None), or PostgreSQL (`DATABASE_URL`)."""
    return None if request.param == "files" else request.getfixturevalue("database_url")


FAST = {"backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05, "rate_per_second": 500.0, "burst": 8}


def emulator(**overrides) -> BirdeyeEmulatorConfig:
    return BirdeyeEmulatorConfig(**({"keys": {KEY: None}} | overrides))


def post(db, warehouse, birdeye, rows, **options):
    """What a run does: the models claimed `rows`, the sink posts them."""
    claim(warehouse, rows, database_url=db)
    counts = post_review_requests(
        warehouse,
        rows,
        database_url=db,
        api_key=KEY,
        base_url=birdeye.base_url,
        rate_limit_dir=warehouse.parent / "rate_limits",
        **(FAST | options),
    )
    if db is not None:  # the warehouse's copy of the posted rows is PostgreSQL's (but for `updated_at`,
        # which says when the copy changed: what the analysts' export follows)
        posted = {r["appointment_id"] for r in rows}

        def content(where):
            found = ledger_rows(warehouse, where)
            return {k: v | {"updated_at": None} for k, v in found.items() if k in posted}

        assert content(None) == content(db)
    return counts


def test_pending_to_sent_and_a_rerun_posts_nothing(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(12)
    with running_birdeye(emulator()) as birdeye:
        counts = post(db, warehouse, birdeye, rows)
        assert counts == {"pending": 0, "sending": 0, "sent": 12, "failed": 0, "uncertain": 0, "dry_run": 0}
        assert post(db, warehouse, birdeye, rows)["sent"] == 12
        assert len(birdeye.records()) == 12 and max(delivered_counts(birdeye.records()).values()) == 1
    row = ledger_rows(warehouse, db)["1000"]
    assert row["status"] == "sent" and row["attempts"] == 1 and row["birdeye_customer_id"].isdigit()
    assert row["first_attempt_at"] <= row["sent_at"] and row["error_code"] is None
    assert row["channels"] == "sms,email" and "email" not in row and "sms_phone" not in row


def test_a_4xx_fails_with_code_and_message_and_is_not_retried(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(2, channels="sms")
    with running_birdeye(
        emulator(sms_disabled_businesses=frozenset({rows[0]["business_number"]}))
    ) as birdeye:
        assert post(db, warehouse, birdeye, rows, max_attempts=5)["failed"] == 2
        assert len(birdeye.records()) == 2
    row = ledger_rows(warehouse, db)["1000"]
    assert (row["status"], row["attempts"], row["error_code"]) == ("failed", 1, "1086")
    assert row["error_message"] == "Customer email id cannot be blank."


def test_a_certain_400_fails_before_posting(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(2)
    rows[0]["patient_name"] = " "
    with running_birdeye(emulator()) as birdeye:
        assert post(db, warehouse, birdeye, rows)["failed"] == 1
        assert [r.appointment_id for r in birdeye.records()] == ["1001"]
    row = ledger_rows(warehouse, db)["1000"]
    assert (row["status"], row["attempts"], row["error_code"]) == ("failed", 0, "1142")
    assert row["error_message"] == "not posted: Customer name cannot be blank"


def test_retryable_goes_back_to_pending_then_sent(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    with running_birdeye(emulator(server_error_first=3)) as birdeye:
        assert post(db, warehouse, birdeye, eligible_rows(3), max_attempts=3)["sent"] == 3
        assert [r.status for r in birdeye.records()] == [503] * 3 + [200] * 3
    assert {r["attempts"] for r in ledger_rows(warehouse, db).values()} == {2}


def test_retry_bound_then_failed_with_the_last_reason(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    with running_birdeye(emulator(server_error_rate=1.0)) as birdeye:
        assert post(db, warehouse, birdeye, eligible_rows(2), max_attempts=3)["failed"] == 2
        assert len(birdeye.records()) == 6
    row = ledger_rows(warehouse, db)["1000"]
    assert (row["attempts"], row["error_code"]) == (3, "http_503")
    assert row["error_message"] == "gave up after 3 attempts: HTTP 503: Service Temporarily Unavailable"


def test_unknown_outcome_is_uncertain_and_never_reposted(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(3)
    with running_birdeye(emulator(drop_rate=1.0)) as birdeye:
        assert post(db, warehouse, birdeye, rows)["uncertain"] == 3
    with running_birdeye(emulator()) as birdeye:
        assert post(db, warehouse, birdeye, rows)["uncertain"] == 3
        assert birdeye.records() == []
    assert ledger_rows(warehouse, db)["1000"]["error_code"] == "no_response"


def claim_as(db, warehouse, run_id: str, rows, n: int) -> None:
    """`rows` claimed, and `n` of them taken for posting by run `run_id`."""
    claim(warehouse, rows, database_url=db)
    keys = [(r["business_number"], r["appointment_id"]) for r in rows]
    with ledger_connection(warehouse, db) as con:
        assert len(ledger.claim(con, keys, run_id, n, datetime.now(UTC))) == n


def test_sending_rows_of_a_dead_run_become_uncertain_and_are_not_posted(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(5)
    claim_as(db, warehouse, "run-that-died", rows, 2)  # claimed, then the process vanished: no lease
    with running_birdeye(emulator()) as birdeye:
        counts = post(db, warehouse, birdeye, rows)
        assert (counts["uncertain"], counts["sent"]) == (2, 3)
        assert sorted(r.appointment_id for r in birdeye.records()) == ["1002", "1003", "1004"]
    assert ledger_rows(warehouse, db)["1000"]["error_code"] == "run_died"


def test_a_live_runs_sending_rows_are_neither_posted_nor_marked_uncertain(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(5)
    with running_birdeye(emulator()) as birdeye:
        with Lease(leases_of(warehouse, db)) as other_run:
            claim_as(db, warehouse, other_run.name, rows, 2)
            counts = post(db, warehouse, birdeye, rows)
            assert (counts["sending"], counts["sent"], counts["uncertain"]) == (2, 3, 0)
            assert reap_dead_runs(warehouse, db) == 0
        assert len(birdeye.records()) == 3
    assert reap_dead_runs(warehouse, db) == 2  # that run ended without recording them


def test_test_mappings_dry_run_claims_are_never_posted(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(3)
    claim(warehouse, rows, status="dry_run", database_url=db)  # what the models claim for a test mapping
    with running_birdeye(emulator()) as birdeye:
        counts = post_review_requests(warehouse, rows, api_key=None, rate_limit_dir=tmp_path, database_url=db)
        assert counts["dry_run"] == 3
        assert post(db, warehouse, birdeye, rows)["dry_run"] == 3
        assert birdeye.records() == []


def test_rows_the_models_did_not_claim_are_never_posted(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(4)
    claim(warehouse, rows[:2], database_url=db)
    with running_birdeye(emulator()) as birdeye:
        counts = post_review_requests(
            warehouse,
            rows,
            api_key=KEY,
            base_url=birdeye.base_url,
            rate_limit_dir=tmp_path,
            **FAST,
            database_url=db,
        )
        assert counts["sent"] == 2 and sum(counts.values()) == 2
        assert sorted(r.appointment_id for r in birdeye.records()) == ["1000", "1001"]


def test_a_refused_key_stops_posting_and_leaves_the_rows_pending(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(20)
    with running_birdeye(emulator()) as birdeye:
        claim(warehouse, rows, database_url=db)
        with pytest.raises(BirdeyeKeyRefused, match=r"refused the API key \*\*\*\*0000") as refused:
            post_review_requests(
                warehouse, rows, api_key="wrong-key-0000", base_url=birdeye.base_url,
                rate_limit_dir=tmp_path, concurrency=4, batch_size=4, database_url=db, **FAST,
            )  # fmt: skip
        assert "wrong-key" not in str(refused.value) and "20 request(s) stay pending" in str(refused.value)
        assert len(birdeye.records()) == 4  # one batch, then it stopped
        ledger = ledger_rows(warehouse, db)
        assert {r["status"] for r in ledger.values()} == {"pending"}
        assert {r["attempts"] for r in ledger.values()} == {0}
        assert ledger["1000"]["error_code"] == "1161"
        # Once the key is fixed, the next run posts every one of them, once.
        assert post(db, warehouse, birdeye, rows)["sent"] == 20
        assert set(delivered_counts(birdeye.records()).values()) == {1}


def test_overlapping_batches_post_each_appointment_once(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    with running_birdeye(emulator()) as birdeye:
        post(db, warehouse, birdeye, eligible_rows(20))
        assert post(db, warehouse, birdeye, eligible_rows(20, start=10))["sent"] == 20
        assert len(birdeye.records()) == 30 and set(delivered_counts(birdeye.records()).values()) == {1}


def test_requeue_lists_first_then_moves_back_to_pending(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    rows = eligible_rows(4)
    with running_birdeye(emulator(server_error_rate=1.0)) as birdeye:
        post(db, warehouse, birdeye, rows[:2], max_attempts=1)
    with running_birdeye(emulator(drop_rate=1.0)) as birdeye:
        post(db, warehouse, birdeye, rows[2:])
    listed = requeue(warehouse, database_url=db)
    assert [(r["appointment_id"], r["status"]) for r in listed] == [
        ("1000", "failed"), ("1001", "failed"), ("1002", "uncertain"), ("1003", "uncertain"),
    ]  # fmt: skip
    assert "@" not in repr(listed) and "+614" not in repr(listed)
    assert {r["status"] for r in ledger_rows(warehouse, db).values()} == {"failed", "uncertain"}
    assert [
        r["appointment_id"]
        for r in requeue(warehouse, database_url=db, statuses=["uncertain"], appointment_ids=["1003"])
    ] == ["1003"]
    assert requeue(warehouse, database_url=db, partition_dates=["2026-11-25"]) == []
    moved = requeue(
        warehouse,
        database_url=db,
        business_numbers=[rows[0]["business_number"]],
        statuses=["failed"],
        dry_run=False,
    )
    assert len(moved) == 2
    assert (
        ledger_rows(warehouse, db)["1000"]["status"] == "pending"
        and ledger_rows(warehouse, db)["1000"]["attempts"] == 0
    )
    with running_birdeye(emulator()) as birdeye:
        counts = post(db, warehouse, birdeye, rows)
        assert (counts["sent"], counts["uncertain"]) == (2, 2)
        assert sorted(r.appointment_id for r in birdeye.records()) == ["1000", "1001"]
    with pytest.raises(ValueError, match="cannot requeue"):
        requeue(warehouse, database_url=db, statuses=["sent"])


def test_requeue_command_lists_without_yes_and_never_prints_contacts(tmp_path, db, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    if db:
        monkeypatch.setenv("DATABASE_URL", db)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    warehouse = tmp_path / "warehouse" / "group-1.duckdb"  # the command reads every group's ledger
    rows = eligible_rows(2)
    with running_birdeye(emulator(drop_rate=1.0)) as birdeye:
        post(db, warehouse, birdeye, rows)
    runner = CliRunner()
    listing = runner.invoke(main, ["requeue", "--date", "2026-11-24", "--status", "uncertain"])
    assert listing.exit_code == 0, listing.output
    assert "appointment 1000" in listing.output and "2 rows would go back to pending" in listing.output
    assert "@" not in listing.output and "412345678" not in listing.output
    assert {r["status"] for r in ledger_rows(warehouse, db).values()} == {"uncertain"}
    moved = runner.invoke(main, ["requeue", "--appointment", "1001", "--yes"])
    assert moved.exit_code == 0 and "1 rows are pending again" in moved.output
    assert f"--mapping {rows[0]['business_number']}" in moved.output
    assert ledger_rows(warehouse, db)["1001"]["status"] == "pending"


def test_the_client_side_rate_keeps_under_birdeyes_limit(tmp_path, db):
    warehouse = tmp_path / "warehouse.duckdb"
    with running_birdeye(emulator(rate_per_second=25.0, burst=2)) as birdeye:
        started = time.monotonic()
        counts = post(db, warehouse, birdeye, eligible_rows(16), rate_per_second=20.0, burst=1, concurrency=8)
        elapsed = time.monotonic() - started
        assert counts["sent"] == 16 and all(r.status == 200 for r in birdeye.records())
    assert elapsed >= 15 / 20.0
