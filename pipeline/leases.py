"""Leases: how one process tells whether another, on the same machine, is still alive.

A holder keeps an exclusive `flock` on `<directory>/<name>.lock` for as long as it works. The kernel drops the
lock when the process dies, SIGKILL included, so "the lock file exists and can be locked" means exactly "its
holder is gone". While the holder lives, nobody else can take the lock. No heartbeat and no timeout to tune:
a slow holder is never mistaken for a dead one. flock locks belong to an open file description, so this also
works between two holders in one process. Same-host only, like the warehouse's own lock.

Two users: a posting run of the sink (its `sending` rows become `uncertain` once it is gone) and a Dagster run
of a partition (the calendar sensor fails a run whose worker died, so its partition is retried).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path


class Lease:
    """A lease named `name` (a fresh uuid by default) in `directory`; use as a context manager, or `acquire`
    it and let the process's exit release it."""

    def __init__(self, directory: Path | str, name: str | None = None) -> None:
        self.name = name or uuid.uuid4().hex
        self.path = Path(directory) / f"{self.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> Lease:
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

    def release(self) -> None:
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


def sweep(directory: Path | str) -> int:
    """Remove the lease files whose holders are gone (a holder the process exit released never unlinks
    its file); returns how many. Files of live holders are locked and stay."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    return sum(holder_alive(directory, path.stem) is False for path in directory.glob("*.lock"))


def holder_alive(directory: Path | str, name: str) -> bool | None:
    """True while lease `name` is held, False if its holder is gone (the lease file is then removed), None if
    there is no lease file (never taken, or released)."""
    path = Path(directory) / f"{name}.lock"
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


_held: dict[str, Lease] = {}


def hold(directory: Path | str, name: str) -> None:
    """Take lease `name` once per process (a Dagster run's steps share one); the process's exit releases it,
    or `release(name)` when one process works for many holders in turn."""
    if name not in _held:
        _held[name] = Lease(directory, name).acquire()


def release(name: str) -> None:
    lease = _held.pop(name, None)
    if lease is not None:
        lease.release()
