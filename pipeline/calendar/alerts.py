"""Raising alerts: recorded in `calendar.alerts`, then posted as JSON to `ALERT_WEBHOOK_URL` when it is set.

The webhook is best effort: an alert is recorded first, a failed POST is retried a few times and then only
noted on the alert (`notify_error`); it never fails the run or the sensor tick that raised it. The URL can
carry a token (Slack and Teams webhooks do), so errors name its host only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from pipeline.calendar import store
from pipeline.calendar.store import Alert
from pipeline.warehouse import connect
from pipeline.warehouse.slices import ensure_tables

log = logging.getLogger(__name__)
ATTEMPTS = 3


def post_alert(webhook_url: str, payload: dict[str, object]) -> str | None:
    """POST one alert; None when the receiver answered 2xx, else what went wrong (without the URL's path)."""
    host = urlsplit(webhook_url).netloc or "the webhook"
    problem = None
    for attempt in range(ATTEMPTS):
        try:
            response = httpx.post(webhook_url, json=payload, timeout=5.0)
            if response.is_success:
                return None
            problem = f"{host} answered HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                return problem
        except httpx.HTTPError as error:
            problem = f"could not reach {host}: {type(error).__name__}"
        time.sleep(0.5 * 2**attempt)
    return problem


def raise_alerts(
    warehouse_path: Path, webhook_url: str | None, alerts: Iterable[Alert], now: datetime | None = None
) -> list[Alert]:
    """Record the alerts not open yet and post each to the webhook; returns the new ones."""
    now = now or datetime.now(UTC)
    with connect(warehouse_path) as con:
        ensure_tables(con)
        new = store.raise_alerts(con, alerts, now)
    for alert in new:
        log.warning("alert %s: %s", alert.kind, alert.message)
    if not webhook_url or not new:
        return new
    outcomes = [(alert, post_alert(webhook_url, alert.payload(now))) for alert in new]
    with connect(warehouse_path) as con:
        for alert, problem in outcomes:
            notified = None if problem else datetime.now(UTC)
            store.record_notification(con, alert, notified_at=notified, error=problem)
    return new


def resolve_alerts(
    warehouse_path: Path, *, kinds: Sequence[str], business_numbers: Sequence[str], keep: Iterable[str] = ()
) -> int:
    """Close the open alerts of `kinds` about `business_numbers` that are not in `keep`."""
    with connect(warehouse_path) as con:
        ensure_tables(con)
        return store.resolve_alerts(
            con, kinds=kinds, business_numbers=business_numbers, keep=keep, now=datetime.now(UTC)
        )
