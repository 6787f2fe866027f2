"""A request budget per API key, shared by every process on this machine that uses the key (or, with
`DATABASE_URL`, by every host: `PostgresRateLimiter`).

Cliniko allows 200 requests per minute per user and answers 429 beyond that; Birdeye limits each key too (it
publishes no number: the product paces itself at `BIRDEYE_RATE_LIMIT_PER_SECOND`). Several Dagster runs (one
per mapping-day partition) may use one key at once, so the budget cannot live in one process. It lives in a
small file under `settings.rate_limit_dir`, named by the service and a hash of the key, and holds a
*sliding-window log*: the times of the last `limit` grants in a ring buffer. A request may go when the oldest
of those is more than a window old, so no window of that length ever holds more than `limit` grants, whichever
process made them. Every read-modify-write of the ring happens under an exclusive `fcntl.flock`, which the
kernel releases if a process dies, so a crashed run cannot wedge the others.

Why not a token bucket: a full bucket of N plus N refilled tokens lets 2N requests through in one window,
which is exactly what Cliniko counts. Why not pyrate-limiter's SQLite bucket: it does the same sliding count
but keeps one SQLite row per request and does not report how long callers waited, and its API changed in each
major release; this is one small file, O(1) per request, and easy to test with several processes.

`window_margin` takes the window that much longer than the service's (Cliniko: 1 %, 0.6 s of 60 s): a grant is
recorded when it is given, and the service counts the request when it arrives, so the margin absorbs
differences in that delay (latency jitter) that could otherwise put `limit + 1` arrivals in one of its
windows. The full `limit` is granted: a count margin would only slow every backfill by the same fraction (the
rate-limit benchmark measures this).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<8sIId")  # magic, capacity, head index, blocked_until (epoch s)
_MAGIC = b"clnkrl01"
_SLOT = struct.Struct("<d")


def key_fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for a key's budget file; never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


class _SlidingWindowLog:
    """What both stores of a key's budget share: the limit, the window with its margin, and the loop that
    waits for a slot. A store implements `_try_take()` (grant a slot now and return 0, or return how long
    to wait) and `block_until(epoch)`."""

    def __init__(self, limit: int, window_seconds: float, window_margin: float) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError(
                f"rate limit needs limit >= 1 and window_seconds > 0, got {limit}/{window_seconds}s"
            )
        self.limit = limit
        self.window_seconds = float(window_seconds)
        self.capacity = limit
        self.effective_window = self.window_seconds * (1 + window_margin)
        self.waited_seconds = 0.0
        self.grants = 0

    def acquire(self) -> float:
        """Take one request slot, sleeping as long as needed; returns the seconds slept."""
        started = time.monotonic()
        while (wait := self._try_take()) > 0:
            time.sleep(wait)
        waited = time.monotonic() - started
        self.waited_seconds += waited
        self.grants += 1
        return waited

    def _try_take(self) -> float:
        raise NotImplementedError


class SharedRateLimiter(_SlidingWindowLog):
    """At most `limit` requests per `window_seconds` for one key, across processes.

    `acquire()` blocks until a slot is free and returns the seconds it waited. `block_until(epoch)` pauses
    every process using the key, e.g. until Cliniko's `X-RateLimit-Reset` after an unexpected 429.
    """

    def __init__(
        self,
        api_key: str,
        directory: Path,
        limit: int = 200,
        window_seconds: float = 60.0,
        *,
        service: str = "cliniko",
        window_margin: float = 0.01,
    ) -> None:
        super().__init__(limit, window_seconds, window_margin)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{service}-{key_fingerprint(api_key)}.ratelimit"

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self.capacity}/{self.window_seconds}s, file={self.path.name})"

    def block_until(self, epoch_seconds: float) -> None:
        """Hold back every user of this key until `epoch_seconds` (never shortens an existing block)."""
        with self._locked() as fd:
            capacity, head, blocked_until = self._read_header(fd)
            if epoch_seconds > blocked_until:
                os.pwrite(fd, _HEADER.pack(_MAGIC, capacity, head, epoch_seconds), 0)

    def _try_take(self) -> float:
        """Grant a slot now and return 0, or return how long to wait before trying again."""
        with self._locked() as fd:
            capacity, head, blocked_until = self._read_header(fd)
            now = time.time()
            (oldest,) = _SLOT.unpack(os.pread(fd, _SLOT.size, _HEADER.size + head * _SLOT.size))
            if oldest > now:
                oldest = self._restamp_future_grants(fd, capacity, now)
            wait = max(blocked_until - now, oldest + self.effective_window - now)
            if wait > 0:
                return wait
            os.pwrite(fd, _SLOT.pack(now), _HEADER.size + head * _SLOT.size)
            os.pwrite(fd, _HEADER.pack(_MAGIC, capacity, (head + 1) % capacity, blocked_until), 0)
            return 0.0

    def _restamp_future_grants(self, fd: int, capacity: int, now: float) -> float:
        """Grants stamped after `now`: the wall clock stepped back (NTP) since. Count them as given now, or
        every caller would wait until the clock caught up again. Returns the new stamp."""
        ring = os.pread(fd, capacity * _SLOT.size, _HEADER.size)
        stamps = [min(stamp, now) for (stamp,) in _SLOT.iter_unpack(ring)]
        os.pwrite(fd, b"".join(map(_SLOT.pack, stamps)), _HEADER.size)
        return now

    def _read_header(self, fd: int) -> tuple[int, int, float]:
        raw = os.pread(fd, _HEADER.size, 0)
        if len(raw) == _HEADER.size:
            magic, capacity, head, blocked_until = _HEADER.unpack(raw)
            if magic == _MAGIC and capacity == self.capacity:
                return capacity, head % capacity, blocked_until
            if magic == _MAGIC:
                return self._resize(fd, capacity, head, blocked_until)
        return self._resize(fd, 0, 0, 0.0)

    def _resize(
        self, fd: int, old_capacity: int, old_head: int, blocked_until: float
    ) -> tuple[int, int, float]:
        """Re-lay the ring for a new capacity (another limit was configured), keeping the newest grants."""
        old = [
            _SLOT.unpack_from(
                os.pread(fd, _SLOT.size, _HEADER.size + i * _SLOT.size).ljust(_SLOT.size, b"\0")
            )[0]
            for i in range(old_capacity)
        ]
        newest = sorted(old)[-self.capacity :] if old else []
        ring = [0.0] * (self.capacity - len(newest)) + newest
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, _HEADER.pack(_MAGIC, self.capacity, 0, blocked_until) + b"".join(map(_SLOT.pack, ring)), 0
        )
        return self.capacity, 0, blocked_until

    def _locked(self) -> _FileLock:
        return _FileLock(self.path)


class _FileLock:
    """Open the budget file and hold an exclusive flock on it for the `with` block.

    The file is opened afresh each time so that a forked child never shares (and so never silently "holds")
    its parent's lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> int:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.fd

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class PostgresRateLimiter(_SlidingWindowLog):
    """`SharedRateLimiter`'s budget in PostgreSQL (`DATABASE_URL`), shared by every host that uses the key.

    The same sliding-window log, as one row of `rate_budgets` per key (sql/postgres/0001_rate_budgets.sql),
    taken with `SELECT ... FOR UPDATE`, so grants of every host queue on the row. Times are the server's
    (`clock_timestamp()`), not each host's: hosts whose clocks disagree still share one window. Each grant
    is a transaction on a connection of the process's idle ones (`pipeline.postgres.take`), so the threads of
    one process (the Birdeye sender's pool) queue on the row like every other process.
    """

    def __init__(
        self,
        api_key: str,
        database_url: str,
        limit: int = 200,
        window_seconds: float = 60.0,
        *,
        service: str = "cliniko",
        window_margin: float = 0.01,
    ) -> None:
        super().__init__(limit, window_seconds, window_margin)
        self.budget = f"{service}-{key_fingerprint(api_key)}"
        self._url = database_url

    def __repr__(self) -> str:
        return f"PostgresRateLimiter({self.capacity}/{self.window_seconds}s, budget={self.budget})"

    def block_until(self, epoch_seconds: float) -> None:
        """Hold back every user of this key until `epoch_seconds` of this host's clock (never shortens an
        existing block). The block is stored on the server's clock: this host's delay from now."""
        delay = epoch_seconds - time.time()
        with self._row() as (cur, now, _head, blocked_until, _stamps):
            if now + delay > blocked_until:
                cur.execute(
                    "update rate_budgets set blocked_until = %s where budget = %s", (now + delay, self.budget)
                )

    def _try_take(self) -> float:
        with self._row() as (cur, now, head, blocked_until, stamps):
            oldest = stamps[head]
            if oldest > now:  # the server's clock stepped back: count those grants as given now
                stamps, oldest = [min(stamp, now) for stamp in stamps], now
                blocked_until = min(blocked_until, now + self.effective_window)
                cur.execute(
                    "update rate_budgets set stamps = %s, blocked_until = %s where budget = %s",
                    (stamps, blocked_until, self.budget),
                )
            wait = max(blocked_until - now, oldest + self.effective_window - now)
            if wait > 0:
                return wait
            stamps[head] = now
            cur.execute(
                "update rate_budgets set head = %s, stamps = %s where budget = %s",
                ((head + 1) % self.capacity, stamps, self.budget),
            )
            return 0.0

    @contextmanager
    def _row(self) -> Iterator[tuple[Any, float, int, float, list[float]]]:
        """The key's row locked in a transaction (made on first use, re-laid for a new capacity keeping the
        newest grants): the cursor, the server's time now, head, blocked_until and the ring."""
        from pipeline.postgres import give_back, take

        con = take(self._url)
        try:
            con.autocommit = False  # `with con` below is the transaction
            with con, con.cursor() as cur:
                cur.execute(
                    "insert into rate_budgets (budget, capacity, stamps) values (%s, %s, %s) "
                    "on conflict (budget) do nothing",
                    (self.budget, self.capacity, [0.0] * self.capacity),
                )
                cur.execute(
                    "select extract(epoch from clock_timestamp())::float8, capacity, head, blocked_until, "
                    "stamps from rate_budgets where budget = %s for update",
                    (self.budget,),
                )
                now, capacity, head, blocked_until, stamps = cur.fetchone()
                if capacity != self.capacity or len(stamps) != self.capacity:
                    newest = sorted(stamps)[-self.capacity :]
                    stamps, head = [0.0] * (self.capacity - len(newest)) + newest, 0
                    cur.execute(
                        "update rate_budgets set capacity = %s, head = 0, stamps = %s where budget = %s",
                        (self.capacity, stamps, self.budget),
                    )
                yield cur, now, head % self.capacity, blocked_until, list(stamps)
        finally:
            give_back(self._url, con)  # closed instead when it broke


def shared_rate_limiter(
    api_key: str,
    *,
    rate_limit_dir: Path,
    database_url: str | None,
    limit: int,
    window_seconds: float,
    service: str = "cliniko",
    window_margin: float = 0.01,
) -> SharedRateLimiter | PostgresRateLimiter:
    """The key's budget: in PostgreSQL when `database_url` is set (every host shares it), else in a file of
    `rate_limit_dir` (every process of this machine shares it)."""
    if database_url:
        return PostgresRateLimiter(
            api_key, database_url, limit, window_seconds, service=service, window_margin=window_margin
        )
    return SharedRateLimiter(
        api_key, rate_limit_dir, limit, window_seconds, service=service, window_margin=window_margin
    )
