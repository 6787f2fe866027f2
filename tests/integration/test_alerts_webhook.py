"""Alerts are recorded once per condition and posted as JSON to ALERT_WEBHOOK_URL (a real receiver here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest
from webhook_receiver import Receiver, webhook_receiver

from pipeline.calendar.alerts import notify, raise_alerts, resolve_alerts
from pipeline.calendar.store import Alert
from pipeline.warehouse import connect

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


def rows(warehouse) -> list[tuple]:
    with connect(warehouse) as con:
        return con.execute(
            "select alert_key, resolved_at is null, notified_at is not null, notify_error "
            "from calendar.alerts order by raised_at, alert_key"
        ).fetchall()


def test_an_alert_is_posted_once_while_open_and_again_after_it_resolved(tmp_path, receiver):
    warehouse = tmp_path / "alerts.duckdb"
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


def test_resolving_keeps_the_conditions_still_present(tmp_path, receiver):
    warehouse = tmp_path / "alerts.duckdb"
    raise_alerts(warehouse, receiver.url, [failing("2026-11-05"), failing("2026-11-06")])
    resolved = resolve_alerts(
        warehouse, kinds=["partition_failing"], business_numbers=["123"], keep=[failing("2026-11-06").key]
    )
    assert resolved == 1
    assert [(key, open_) for key, open_, _, _ in rows(warehouse)] == [
        ("partition_failing|123|2026-11-05", False),
        ("partition_failing|123|2026-11-06", True),
    ]


def test_a_failing_receiver_is_noted_and_the_alert_delivered_once_it_answers(tmp_path, receiver):
    warehouse = tmp_path / "alerts.duckdb"
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


def test_an_unreachable_or_malformed_webhook_never_fails_the_caller(tmp_path):
    warehouse = tmp_path / "alerts.duckdb"
    assert raise_alerts(warehouse, f"http://user:{TOKEN}@127.0.0.1:9/hooks", [failing()]) == [failing()]
    [(_, _, notified, error)] = rows(warehouse)
    assert not notified and error.startswith("could not reach 127.0.0.1:9") and TOKEN not in error
    assert notify(warehouse, f"http://[::1/hooks/{TOKEN}") == 0  # not even a URL
    [(_, _, notified, error)] = rows(warehouse)
    assert not notified and error.startswith("could not post to") and TOKEN not in error


def test_a_slow_receiver_gets_the_budget_and_the_rest_waits(tmp_path, receiver):
    warehouse = tmp_path / "alerts.duckdb"
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


def test_without_a_webhook_alerts_are_only_recorded(tmp_path):
    warehouse = tmp_path / "alerts.duckdb"
    raise_alerts(warehouse, None, [failing()])
    assert rows(warehouse) == [("partition_failing|123|2026-11-05", True, False, None)]
