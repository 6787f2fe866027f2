"""Run leases: how one run tells whether another run's `sending` rows are still in flight.

Every posting run holds an exclusive `flock` on `<warehouse>.sink-runs/<run_id>.lock` for its whole life,
taken before it claims anything and released only after its last outcome is recorded. The kernel drops the
lock when the process dies, SIGKILL included, so "the lock file is missing or can be locked" means exactly
"that run is gone": its `sending` rows can never be recorded and become `uncertain`. While the run lives, its
rows are left alone. No heartbeat and no timeout to tune: a slow run is never mistaken for a dead one. flock
locks belong to an open file description, so this also works between two runs in one process. Same-host only,
like the warehouse's own lock (a DuckDB file is not shared over the network).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path


def lease_dir(warehouse_path: Path | str) -> Path:
    path = Path(warehouse_path)
    return path.with_name(path.name + ".sink-runs")


class RunLease:
    """The lease of one posting run; use as a context manager around everything the run claims."""

    def __init__(self, warehouse_path: Path | str) -> None:
        self.run_id = uuid.uuid4().hex
        self.path = lease_dir(warehouse_path) / f"{self.run_id}.lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLease:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh uuid: nobody else can hold it
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Unlink first, then release: a reaper that opens the file after this sees no lease (run gone); one
        # that opened it before gets the lock but finds no `sending` rows left by a run that ended cleanly.
        self.path.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_is_alive(warehouse_path: Path | str, run_id: str) -> bool:
    """True while the run holding `run_id`'s lease is alive. Removes the lease file of a dead run."""
    path = lease_dir(warehouse_path) / f"{run_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True
    path.unlink(missing_ok=True)
    os.close(fd)
    return False
