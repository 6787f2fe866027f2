"""Raising alerts: recorded in `calendar.alerts`, then posted as JSON to `ALERT_WEBHOOK_URL` when it is set.

The alerts table is the outbox: an alert is recorded first; `notify` takes the open alerts nobody was told of
yet and no other notifier holds, posts them oldest first within a time budget, and notes each answer on the
alert (`notified_at`, `notify_error`), so notifiers running at once post each alert once.
What is not delivered is tried again at the next call (the calendar sensor calls it every tick), so a slow or
broken receiver never holds up a run or a tick and never loses an alert. The URL can carry a token (Slack and
Teams webhooks do): errors name its host only.

The alerts live in `DATA_DIR/alerts.duckdb`, or with `DATABASE_URL` in PostgreSQL, where every host raises,
resolves and notifies the same ones: the functions here take either place (`Settings.alerts`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from pipeline.calendar import store
from pipeline.calendar.store import Alert
from pipeline.settings import in_postgres
from pipeline.warehouse import connect
from pipeline.warehouse.connection import DEFAULT_WAIT_SECONDS
from pipeline.warehouse.slices import ensure_alerts

log = logging.getLogger(__name__)
POST_TIMEOUT_SECONDS = 5.0
CLAIM_SECONDS = 60  # a notifier's hold on the alerts it posts (see `notify`)


@contextmanager
def alerts_connection(where: Path | str, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Iterator[object]:
    """The alerts' store for one transaction: the alerts file under its lock, or with a PostgreSQL URL one
    transaction holding the alerts' advisory lock (so two hosts never raise one condition twice), committed
    when the block ends, rolled back if it raises."""
    if not in_postgres(where):
        with connect(where, wait_seconds=wait_seconds) as con:
            ensure_alerts(con)
            yield con
        return
    from pipeline.postgres import locked_transaction

    with locked_transaction(where, "calendar.alerts") as con:
        yield con


def post_alert(
    webhook_url: str, payload: dict[str, object], timeout: float = POST_TIMEOUT_SECONDS
) -> str | None:
    """POST one alert; None when the receiver answered 2xx, else what went wrong (naming the host only)."""
    try:
        parts = urlsplit(webhook_url)
        host = (f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname) or "the webhook"
    except ValueError:
        host = "the webhook (its URL does not parse)"
    try:
        response = httpx.post(webhook_url, json=payload, timeout=timeout)
    except httpx.HTTPError as error:
        return f"could not reach {host}: {type(error).__name__}"
    except Exception as error:  # a malformed ALERT_WEBHOOK_URL, say: noted on the alert, never raised
        return f"could not post to {host}: {type(error).__name__}"
    return None if response.is_success else f"{host} answered HTTP {response.status_code}"


def notify(
    alerts_at: Path | str,
    webhook_url: str | None,
    *,
    budget_seconds: float = 15.0,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> int:
    """Post the open alerts not delivered yet, oldest first, for at most about `budget_seconds`; returns
    how many were delivered. Without a webhook, does nothing."""
    if not webhook_url:
        return 0
    with alerts_connection(alerts_at, wait_seconds) as con:
        outbox = store.claim_undelivered_alerts(con, CLAIM_SECONDS)
    deadline = time.monotonic() + budget_seconds
    answers = []
    for alert, raised_at in outbox:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        answers.append((alert, raised_at, post_alert(webhook_url, alert.payload(raised_at), min(left, 5.0))))
    if outbox:
        with alerts_connection(alerts_at, wait_seconds) as con:
            for alert, raised_at, problem in answers:
                notified_at = None if problem else datetime.now(UTC)
                store.record_notification(con, alert.key, raised_at, notified_at=notified_at, error=problem)
            store.release_alerts(con, [(alert.key, raised_at) for alert, raised_at in outbox[len(answers) :]])
    return sum(problem is None for *_, problem in answers)


def raise_alerts(
    alerts_at: Path | str,
    webhook_url: str | None,
    alerts: Iterable[Alert],
    now: datetime | None = None,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> list[Alert]:
    """Record the alerts not open yet and post what is undelivered; returns the new ones."""
    with alerts_connection(alerts_at, wait_seconds) as con:
        new = store.raise_alerts(con, alerts, now or datetime.now(UTC))
    for alert in new:
        log.warning("alert %s: %s", alert.kind, alert.message)
    notify(alerts_at, webhook_url, wait_seconds=wait_seconds)
    return new


def resolve_alerts(
    alerts_at: Path | str,
    *,
    kinds: Sequence[str],
    business_numbers: Sequence[str],
    keep: Iterable[str] = (),
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> int:
    """Close the open alerts of `kinds` about `business_numbers` that are not in `keep`."""
    with alerts_connection(alerts_at, wait_seconds) as con:
        return store.resolve_alerts(
            con, kinds=kinds, business_numbers=business_numbers, keep=keep, now=datetime.now(UTC)
        )


def open_alerts(alerts_at: Path | str, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> list[dict[str, object]]:
    """Every open alert (kind, key, business number, partition date, message, raised at), oldest first."""
    with alerts_connection(alerts_at, wait_seconds) as con:
        return store.open_alerts(con)
