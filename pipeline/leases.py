"""Leases: how one process tells whether another, on the same machine, is still alive.

A holder keeps an exclusive `flock` on `<directory>/<name>.lock` for as long as it works. The kernel drops the
lock when the process dies, SIGKILL included, so "the lock file exists and can be locked" means exactly "its
holder is gone". While the holder lives, nobody else can take the lock. No heartbeat and no timeout to tune:
a slow holder is never mistaken for a dead one. flock locks belong to an open file description, so this also
works between two holders in one process. Same-host only, like the warehouse's own lock.

Across hosts (`DATABASE_URL`), the place of the leases is the PostgreSQL URL, not a directory: the holder
keeps a session advisory lock on its own connection, which the server drops when the connection does (the
process killed, its host gone once TCP notices), and a row in `leases` says the lease was taken.

Two users: a posting run of the sink (its `sending` rows become `uncertain` once it is gone) and a Dagster run
of a partition (the calendar sensor fails a run whose worker died, so its partition is retried).
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.settings import in_postgres

if TYPE_CHECKING:
    import psycopg2.extensions

_ADVISORY_KEY = "hashtextextended(%s, 0)"  # a lease's lock id in PostgreSQL
_SWEEP_BATCH = 500


class LeaseLost(RuntimeError):
    """A PostgreSQL lease whose connection dropped while its holder still worked."""


class Lease:
    """A lease named `name` (a fresh uuid by default) in `where`, a directory or a PostgreSQL URL; use as a
    context manager, or `acquire` it and let the process's exit release it."""

    def __init__(self, where: Path | str, name: str | None = None) -> None:
        self.name = name or uuid.uuid4().hex
        self.where = where
        self.path = Path(where) / f"{self.name}.lock" if not in_postgres(where) else None
        self._fd: int | None = None
        self._con: psycopg2.extensions.connection | None = None

    def acquire(self) -> Lease:
        if self.path is None:
            return self._acquirein_postgres()
        # The file appears under its name already locked (made and locked under a private name, then
        # renamed): a reader can never find it unlocked while its holder is alive, nor take it in between.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if holder_alive(self.path.parent, self.name):
            raise RuntimeError(f"lease {self.name} is held by another live process")
        private = self.path.with_name(f".{self.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(private, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.replace(private, self.path)
        self._fd = fd
        return self

    def _acquirein_postgres(self) -> Lease:
        from pipeline.postgres import connect

        con = connect(str(self.where))  # its own connection: the lock lives exactly as long as it does
        con.autocommit = True
        with con.cursor() as cur:
            # Lock first, then the row: a reader never finds the row with the lock free while we live. A
            # reader's check holds the lock for one statement, so a refused try is retried a moment later.
            for _ in range(50):
                cur.execute(f"select pg_try_advisory_lock({_ADVISORY_KEY})", (self.name,))
                if cur.fetchone()[0]:
                    break
                time.sleep(0.02)
            else:
                con.close()
                raise RuntimeError(f"lease {self.name} is held by another live process")
            cur.execute(
                "insert into leases (name) values (%s) on conflict (name) do update set taken_at = now()",
                (self.name,),
            )
        self._con = con
        return self

    def check(self) -> None:
        """Raise `LeaseLost` if this lease's PostgreSQL connection is gone (a server restart, a failover, a
        proxy's timeout): its lock went with it, so another run may already treat this one as dead. A file
        lease cannot be lost while its process lives."""
        if self._con is None:
            return
        import psycopg2

        try:
            with self._con.cursor() as cur:
                cur.execute("select 1")
        except psycopg2.Error:
            raise LeaseLost(
                f"lost lease {self.name}: its PostgreSQL connection dropped, so another run may take over "
                "its work; stopping here"
            ) from None

    def release(self) -> None:
        if self._con is not None:
            import psycopg2

            try:
                with self._con.cursor() as cur:
                    cur.execute("delete from leases where name = %s", (self.name,))
            except psycopg2.Error:
                pass  # the connection is gone, and the lock with it; `sweep` removes the row
            self._con.close()  # the lock goes with the connection
            self._con = None
            return
        if self.path is None:
            return
        # Unlink first, then release: a reader that opens the file after this sees no lease (holder gone); one
        # that opened it before gets the lock and finds the holder's work finished.
        self.path.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def sweep(where: Path | str) -> int:
    """Remove the leases whose holders are gone (a holder the process exit released never unlinks its file
    or deletes its row); returns how many. Leases of live holders are locked and stay."""
    if in_postgres(where):
        # In batches: each statement holds the locks it tests until it ends, and the server's lock table is
        # finite (a backlog of 100,000 rows in one statement ran out of shared memory).
        removed = 0
        while True:
            batch = _in_transaction(
                str(where),
                "delete from leases where name in (select name from leases "
                f"where pg_try_advisory_xact_lock({_ADVISORY_KEY % 'name'}) limit {_SWEEP_BATCH})",
                (),
            ).rowcount
            removed += batch
            if batch < _SWEEP_BATCH:
                return removed
    directory = Path(where)
    if not directory.is_dir():
        return 0
    return sum(holder_alive(directory, path.stem) is False for path in directory.glob("*.lock"))


def holder_alive(where: Path | str, name: str) -> bool | None:
    """True while lease `name` is held, False if its holder is gone (the lease file or row is then removed),
    None if there is no lease (never taken, or released)."""
    if in_postgres(where):
        # One statement, so the lock taken to test it is released at once (autocommit).
        cursor = _in_transaction(
            str(where),
            f"""
            with probe as (select pg_try_advisory_xact_lock({_ADVISORY_KEY}) as free),
            gone as (delete from leases where name = %s and (select free from probe) returning 1)
            select (select free from probe), exists (select 1 from leases where name = %s)
            """,
            (name, name, name),
        )
        free, taken = cursor.fetchone()
        return True if not free else (False if taken else None)
    path = Path(where) / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True
    path.unlink(missing_ok=True)
    os.close(fd)
    return False


def _in_transaction(url: str, sql: str, params: tuple) -> psycopg2.extensions.cursor:
    """Run one statement on one of this process's idle connections, committed; the cursor keeps its rows."""
    from pipeline.postgres import give_back, take

    con = take(url)
    try:
        con.autocommit = True
        cursor = con.cursor()
        cursor.execute(sql, params)
        return cursor
    finally:
        give_back(url, con)


_held: dict[str, Lease] = {}


def hold(where: Path | str, name: str) -> None:
    """Take lease `name` once per process (a Dagster run's steps share one); the process's exit releases it,
    or `release(name)` when one process works for many holders in turn."""
    if name not in _held:
        _held[name] = Lease(where, name).acquire()


def release(name: str) -> None:
    lease = _held.pop(name, None)
    if lease is not None:
        lease.release()
