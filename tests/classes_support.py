"""What the generator's data says about classes, for tests that derive expected candidates from it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from pipeline.sandbox.generator import Account


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def expected_class_visits(
    account: Account, business_ids: Collection[str], start: float, end: float
) -> list[str]:
    """The candidate visits (`attendee-<id>`) of the classes of `business_ids` ending in [start, end) (epoch
    seconds): attendees neither cancelled, archived nor deleted, of classes neither archived nor deleted."""
    wanted = {str(b) for b in business_ids}
    classes = {
        c["id"]
        for c in account.group_appointments
        if c["business_id"] in wanted
        and start <= _epoch(c["ends_at"]) < end
        and c["archived_at"] is None
        and c["deleted_at"] is None
    }
    return sorted(
        f"attendee-{a['id']}"
        for a in account.attendees
        if a["booking_id"] in classes and a["cancelled_at"] is None and a["archived_at"] is None
    )
