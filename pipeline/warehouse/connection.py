"""Short-lived DuckDB connections serialised across processes by an advisory lock file."""

from __future__ import annotations

import fcntl
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

DEFAULT_WAIT_SECONDS = 600.0


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse for longer than we were willing to wait."""


@contextmanager
def locked(path: Path | str, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Iterator[None]:
    """Hold the pipeline's lock of the DuckDB file at `path` (`<path>.lock`), waiting up to `wait_seconds`."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{lock_path.with_suffix('')} was held by another process for more than "
                        f"{wait_seconds:.0f} s; is a run stuck? (`fuser {lock_path}` shows who holds it)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock, also when the process dies


_process_lock = threading.Lock()
_process_database: tuple[int, duckdb.DuckDBPyConnection] | None = None
_aliases = itertools.count()


def _in_memory() -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB, that `connect` attaches files to (made anew after a fork)."""
    global _process_database
    with _process_lock:
        if _process_database is None or _process_database[0] != os.getpid():
            _process_database = (os.getpid(), duckdb.connect())
        return _process_database[1]


def _detach(alias: str) -> None:
    """Detach `alias` from this process's DuckDB; if that fails, close the whole DuckDB, which closes every
    file it has open: a file must never stay open past its lock, or other processes fail on DuckDB's own."""
    global _process_database
    try:
        cursor = _in_memory().cursor()
        try:
            cursor.execute(f"detach database if exists {alias}")
        finally:
            cursor.close()
    except Exception:
        with _process_lock:
            if _process_database is not None:
                _process_database[1].close()
                _process_database = None
        raise


def _attach(con: duckdb.DuckDBPyConnection, path: Path | str, alias: str, read_only: bool) -> None:
    """Attach the file at `path` to `con` as `alias`, its default catalog from now on."""
    mode = " (read_only)" if read_only else ""
    con.execute(f"attach '{str(path).replace(chr(39), chr(39) * 2)}' as {alias}{mode}")
    con.execute(f"use {alias}")


@contextmanager
def connect(
    path: Path | str, *, read_only: bool = False, wait_seconds: float = DEFAULT_WAIT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path` for one short unit of work and always close it.

    Writers and readers of the pipeline queue on `<path>.lock`, so concurrent runs wait their turn instead of
    failing on DuckDB's "Conflicting lock is held". Fetch from HTTP first, then connect, write, leave.

    The file is attached, as the default catalog, to a connection of one in-memory DuckDB per process, and
    detached after (which closes and checkpoints it as closing a connection would): a new DuckDB costs about
    15 ms of CPU, an attach about 1, and a partition's run connects a dozen times.
    """
    path = Path(path)
    with locked(path, wait_seconds):
        alias = f"warehouse_{os.getpid()}_{next(_aliases)}"
        con = _in_memory().cursor()
        try:
            _attach(con, path, alias, read_only)
            yield con
        finally:
            con.close()  # rolls back what the unit of work left open
            _detach(alias)


WAREHOUSE_ALIAS = "warehouse"


@contextmanager
def attached(
    con: duckdb.DuckDBPyConnection,
    path: Path | str,
    *,
    read_only: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> Iterator[None]:
    """`path` attached to `con` (an in-memory connection) as its default catalog, under the file's lock, for
    one short unit of work; detached (and so closed and checkpointed) after. Attaching costs about a
    millisecond where a new connection costs fifteen: a process that works through many group files in a
    row (the calendar sensor, the analysts' refresh) attaches them one after another on one connection."""
    with locked(path, wait_seconds):
        _attach(con, path, WAREHOUSE_ALIAS, read_only)
        try:
            yield
        finally:
            con.execute("use memory")
            con.execute(f"detach {WAREHOUSE_ALIAS}")
