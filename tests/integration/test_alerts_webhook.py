"""Alerts are recorded once per condition and posted as JSON to ALERT_WEBHOOK_URL (a real receiver here), in
the alerts file and in PostgreSQL (`DATABASE_URL`), where two hosts raising one condition at once record it
once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest
from webhook_receiver import Receiver, webhook_receiver

from pipeline.calendar.alerts import alerts_connection, notify, raise_alerts, resolve_alerts
from pipeline.calendar.store import Alert
from pipeline.postgres import run

TOKEN = "T0000-secret-webhook-token"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver(f"/hooks/{TOKEN}") as receiver:
        yield receiver


def failing(day: str = "2026-11-05") -> Alert:
    return Alert(
        "partition_failing",
        f"partition_failing|123|{day}",
        f"Partition {day}|123 failed 3 times in a row",
        "123",
        7,
        date.fromisoformat(day),
    )


@pytest.fixture(params=["files", "postgres"])
def alerts_at(request, tmp_path):
    """The alerts file, or PostgreSQL's alerts table (a database URL)."""
    return tmp_path / "alerts.duckdb" if request.param == "files" else request.getfixturevalue("database_url")


def rows(alerts) -> list[tuple]:
    with alerts_connection(alerts) as con:
        return run(
            con,
            "select alert_key, resolved_at is null, notified_at is not null, notify_error "
            "from calendar.alerts order by raised_at, alert_key",
        ).fetchall()


def test_an_alert_is_posted_once_while_open_and_again_after_it_resolved(alerts_at, receiver):
    warehouse = alerts_at
    assert raise_alerts(warehouse, receiver.url, [failing()]) == [failing()]
    assert raise_alerts(warehouse, receiver.url, [failing()]) == []  # still open: not again
    assert [r["json"]["key"] for r in receiver.received] == ["partition_failing|123|2026-11-05"]
    payload = receiver.received[0]["json"]
    assert payload["kind"] == "partition_failing" and payload["business_number"] == "123"
    assert payload["partition_date"] == "2026-11-05" and payload["group_id"] == 7 and payload["raised_at"]
    assert rows(warehouse) == [("partition_failing|123|2026-11-05", True, True, None)]

    assert resolve_alerts(warehouse, kinds=["partition_failing"], business_numbers=["123"]) == 1
    raise_alerts(warehouse, receiver.url, [failing()])  # the condition is back: a new alert
    assert len(receiver.received) == 2
    assert [open_ for _, open_, _, _ in rows(warehouse)] == [False, True]


def test_resolving_keeps_the_conditions_still_present(alerts_at, receiver):
    warehouse = alerts_at
    raise_alerts(warehouse, receiver.url, [failing("2026-11-05"), failing("2026-11-06")])
    resolved = resolve_alerts(
        warehouse, kinds=["partition_failing"], business_numbers=["123"], keep=[failing("2026-11-06").key]
    )
    assert resolved == 1
    assert [(key, open_) for key, open_, _, _ in rows(warehouse)] == [
        ("partition_failing|123|2026-11-05", False),
        ("partition_failing|123|2026-11-06", True),
    ]


def test_a_failing_receiver_is_noted_and_the_alert_delivered_once_it_answers(alerts_at, receiver):
    warehouse = alerts_at
    receiver.status = 500
    assert raise_alerts(warehouse, receiver.url, [failing()]) == [failing()]
    [(_, open_, notified, error)] = rows(warehouse)
    assert open_ and not notified
    assert error == f"127.0.0.1:{receiver.server.server_address[1]} answered HTTP 500"
    assert TOKEN not in error
    receiver.status = 200
    assert notify(warehouse, receiver.url) == 1  # the outbox: what was not delivered is tried again
    assert notify(warehouse, receiver.url) == 0  # and only once it is
    assert [r["json"]["key"] for r in receiver.received] == [failing().key] * 2
    [(_, open_, notified, error)] = rows(warehouse)
    assert open_ and notified


def test_an_unreachable_or_malformed_webhook_never_fails_the_caller(alerts_at):
    warehouse = alerts_at
    assert raise_alerts(warehouse, f"http://user:{TOKEN}@127.0.0.1:9/hooks", [failing()]) == [failing()]
    [(_, _, notified, error)] = rows(warehouse)
    assert not notified and error.startswith("could not reach 127.0.0.1:9") and TOKEN not in error
    assert notify(warehouse, f"http://[::1/hooks/{TOKEN}") == 0  # not even a URL
    [(_, _, notified, error)] = rows(warehouse)
    assert not notified and error.startswith("could not post to") and TOKEN not in error


def test_a_slow_receiver_gets_the_budget_and_the_rest_waits(alerts_at, receiver):
    warehouse = alerts_at
    raise_alerts(warehouse, None, [failing(f"2026-11-0{day}") for day in range(1, 6)])
    receiver.delay = 1.5
    started = time.monotonic()
    delivered = notify(warehouse, receiver.url, budget_seconds=2.0)
    assert time.monotonic() - started < 4.5
    assert 1 <= delivered < 5
    receiver.delay = 0
    assert notify(warehouse, receiver.url) == 5 - delivered
    assert sorted(r["json"]["key"] for r in receiver.received) == sorted(
        failing(f"2026-11-0{day}").key for day in range(1, 6)
    )


def test_without_a_webhook_alerts_are_only_recorded(alerts_at):
    warehouse = alerts_at
    raise_alerts(warehouse, None, [failing()])
    assert rows(warehouse) == [("partition_failing|123|2026-11-05", True, False, None)]


def test_two_processes_raising_one_condition_at_once_record_and_post_it_once(alerts_at, receiver):
    """Each in its own process, released together: the alerts' lock (the file's, or PostgreSQL's advisory
    lock) makes the second see the first one's open alert."""
    import subprocess
    import sys

    script = (
        "import sys, datetime\n"
        "from pipeline.calendar.alerts import raise_alerts\n"
        "from pipeline.calendar.store import Alert\n"
        "alert = Alert('partition_failing', 'partition_failing|123|2026-11-05', 'failed 3 times', '123', 7,"
        " datetime.date(2026, 11, 5))\n"
        "sys.stdin.readline()\n"
        "print(len(raise_alerts(sys.argv[1], sys.argv[2], [alert])))\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(alerts_at), receiver.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    time.sleep(1.5)  # every worker imported and waits
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert sorted(outputs) == ["0", "0", "0", "1"]
    assert rows(alerts_at) == [("partition_failing|123|2026-11-05", True, True, None)]
    assert len(receiver.received) == 1
