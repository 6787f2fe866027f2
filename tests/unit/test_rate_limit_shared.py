"""The per-key request budget holds across processes: no window ever sees more grants than its capacity.

Each test runs on both stores of the budget: a file on this machine, and PostgreSQL (`DATABASE_URL`, a real
server: tests/postgres_server.py) shared by hosts."""

from __future__ import annotations

import multiprocessing
import struct
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from pipeline.ratelimit import PostgresRateLimiter, SharedRateLimiter

KEY = "MS0xMjM0NTY3ODkwMTIzNDU2Nzg5LWFiY2RlZmdoaWprbG1ub3Bx-au2"


def make_limiter(store: str, where: str, **limits) -> SharedRateLimiter | PostgresRateLimiter:
    """The budget of KEY in `store` ("file": directory `where`; "postgres": database URL `where`)."""
    if store == "file":
        return SharedRateLimiter(KEY, Path(where), **limits)
    return PostgresRateLimiter(KEY, where, **limits)


@pytest.fixture(params=["file", "postgres"])
def store(request, tmp_path) -> tuple[str, str]:
    """Where the budget lives: (store, directory or database URL)."""
    if request.param == "file":
        return "file", str(tmp_path)
    return "postgres", request.getfixturevalue("database_url")


def _grab(store: str, where: str, start_at: float, count: int, out: str) -> None:
    grabber = make_limiter(store, where, limit=20, window_seconds=1.0)
    time.sleep(max(0.0, start_at - time.time()))
    stamps = []
    for _ in range(count):
        grabber.acquire()
        stamps.append(time.time())
    Path(out).write_text("\n".join(map(repr, stamps)) + f"\nwaited={grabber.waited_seconds}\n")


def max_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_four_processes_share_one_budget(store, tmp_path: Path) -> None:
    # fork: the children need nothing but the limiter, which opens its file afresh for every grant (or its
    # own connection).
    ctx = multiprocessing.get_context("fork")
    start_at = time.time() + 0.5
    outs = [tmp_path / f"p{i}.txt" for i in range(4)]
    procs = [ctx.Process(target=_grab, args=(*store, start_at, 12, str(out))) for out in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    stamps: list[float] = []
    waited = 0.0
    for out in outs:
        *lines, last = out.read_text().split()
        stamps += map(float, lines)
        waited += float(last.split("=")[1])
    budget = make_limiter(*store, limit=20, window_seconds=1.0)
    assert len(stamps) == 48
    assert max_in_any_window(stamps, 1.0) <= 20
    # 48 grants at 20 per 1.01 s need at least two full windows after the first burst, and not much more.
    span = max(stamps) - min(stamps)
    assert 2 * budget.effective_window - 0.05 <= span <= 2 * budget.effective_window + 1.0
    assert waited > 1.0


def test_threads_of_one_process_share_one_limiter_without_overrunning_it(store) -> None:
    """The Birdeye sender's pool: eight threads acquire through one limiter object at once."""
    shared = make_limiter(*store, limit=20, window_seconds=1.0)
    stamps: list[float] = []
    start = threading.Barrier(8)

    def grab() -> None:
        start.wait()
        for _ in range(6):
            shared.acquire()
            stamps.append(time.time())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(stamps) == 48
    assert max_in_any_window(stamps, 1.0) <= 20
    assert max(stamps) - min(stamps) >= 2 * shared.effective_window - 0.05


def test_the_file_is_named_by_a_hash_never_the_key(tmp_path: Path) -> None:
    limiter = SharedRateLimiter(KEY, tmp_path, limit=5, window_seconds=0.5)
    limiter.acquire()
    names = [p.name for p in tmp_path.iterdir()]
    assert names == [limiter.path.name]
    assert KEY not in names[0] and KEY[-12:] not in names[0]
    assert KEY not in repr(limiter)


def test_block_until_holds_back_every_user_of_the_key(store) -> None:
    first = make_limiter(*store, limit=100, window_seconds=60)
    second = make_limiter(*store, limit=100, window_seconds=60)
    first.block_until(time.time() + 0.4)
    assert 0.3 <= second.acquire() <= 1.0
    assert second.acquire() < 0.05


def test_a_changed_limit_keeps_the_newest_grants(store) -> None:
    wide = make_limiter(*store, limit=10, window_seconds=0.6)
    for _ in range(wide.capacity):
        wide.acquire()
    narrow = make_limiter(*store, limit=4, window_seconds=0.6)
    assert narrow.acquire() > 0.3  # the budget is already spent by the grants made under the wider limit


def test_a_wall_clock_that_stepped_back_does_not_block_the_key(tmp_path: Path) -> None:
    limiter = SharedRateLimiter(KEY, tmp_path, limit=2, window_seconds=1.0)
    limiter.acquire()
    limiter.acquire()
    # The grants were stamped an hour ahead of the clock now (NTP stepped it back since): rewrite the ring.
    ahead = struct.pack("<d", time.time() + 3600)
    with open(limiter.path, "r+b") as ring:
        for slot in range(limiter.capacity):
            ring.seek(24 + 8 * slot)
            ring.write(ahead)
    started = time.monotonic()
    limiter.acquire()  # counted as given now: one window's wait at most, not an hour
    assert time.monotonic() - started <= 1.2


def test_in_postgresql_the_budget_is_named_by_a_hash_and_counted_on_the_servers_clock(database_url) -> None:
    budget = PostgresRateLimiter(KEY, database_url, limit=2, window_seconds=1.0)
    budget.acquire()
    budget.acquire()
    con = psycopg2.connect(database_url)
    try:
        with con, con.cursor() as cur:
            cur.execute("select budget, stamps from rate_budgets")
            [(name, stamps)] = cur.fetchall()
            assert KEY not in name and KEY[-12:] not in name and KEY not in repr(budget)
            cur.execute("select extract(epoch from clock_timestamp())::float8")
            (server_now,) = cur.fetchone()
            assert all(0 <= server_now - stamp < 5 for stamp in stamps)
            # The server's clock stepped back an hour since: the grants look an hour ahead of it.
            cur.execute("update rate_budgets set stamps = array[%s, %s]::float8[]", (stamps[0] + 3600,) * 2)
    finally:
        con.close()
    started = time.monotonic()
    budget.acquire()  # counted as given now: one window's wait at most, not an hour
    assert time.monotonic() - started <= 1.2
