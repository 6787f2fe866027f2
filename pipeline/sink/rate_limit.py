"""A token bucket per Birdeye API key, shared by every posting thread of the process.

Twenty lines did not justify a dependency: the limit only has to pace this process's own workers (Birdeye
publishes no number and no `Retry-After`; an occasional 429 from another user of the key is retried by the
ledger's backoff), and blocking reservations are simpler here than an async limiter's API.
"""

from __future__ import annotations

import hashlib
import threading
import time


class TokenBucket:
    """`acquire()` blocks until a request may go: `rate` per second, at most `burst` at once."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive requests per second, got {rate}")
        self.rate, self.capacity = rate, float(max(burst, 1))
        self._tokens, self._stamp = self.capacity, time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0  # reserve now, wait outside the lock: callers are served in arrival order
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


_buckets: dict[tuple[str, float, int], TokenBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for_key(api_key: str, rate: float, burst: int = 1) -> TokenBucket:
    """The process-wide bucket of one key, so concurrent partitions with the same key share its rate."""
    fingerprint = hashlib.sha256(api_key.encode()).hexdigest()  # the key itself is never held as a dict key
    with _buckets_lock:
        return _buckets.setdefault((fingerprint, rate, burst), TokenBucket(rate, burst))
