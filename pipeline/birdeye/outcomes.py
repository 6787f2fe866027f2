"""What one check-in POST came to. The sink's ledger needs four answers, not an exception hierarchy.

Every outcome says whether Birdeye may have received the check-in, because the endpoint is not idempotent: a
check-in can start a review request, so anything that might have reached Birdeye must never be re-posted
automatically.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accepted:
    """HTTP 2xx: Birdeye took the check-in; `customer_id` is its enterprise customer id (None if absent)."""

    customer_id: str | None


@dataclass(frozen=True)
class Unauthorized:
    """HTTP 401/403: Birdeye refused the API key (or the key's access to the business). Nothing was processed,
    so the check-in is safe to post later, once the key is fixed; posting more with this key is pointless."""

    status: int
    code: str | None
    message: str


@dataclass(frozen=True)
class Rejected:
    """A 4xx other than 401, 403 and 429, or a certain 400 caught before sending (`local=True`). Never
    retried.

    `code` is Birdeye's business code as text (e.g. "1087"), or None when the body carried none.
    """

    status: int
    code: str | None
    message: str
    local: bool = False


@dataclass(frozen=True)
class Retryable:
    """Nothing was processed: 429, 5xx, or no connection before sending. Safe to post again."""

    reason: str
    status: int | None = None
    code: str | None = None


@dataclass(frozen=True)
class Unknown:
    """The request was sent but no answer came back (read timeout, connection dropped). Never retried."""

    reason: str


Outcome = Accepted | Unauthorized | Rejected | Retryable | Unknown
