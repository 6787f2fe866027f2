"""A lease whose holder is gone, made the real way: a process takes it and is killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

KILLED_HOLDER = """
import os, signal, sys
from pipeline.leases import Lease
Lease(sys.argv[1], sys.argv[2]).acquire()
os.kill(os.getpid(), signal.SIGKILL)
"""


def abandon_lease(where: Path | str, name: str) -> None:
    """Lease `name` in `where` (a directory or a PostgreSQL URL), taken by a process then SIGKILLed."""
    done = subprocess.run([sys.executable, "-c", KILLED_HOLDER, str(where), name], check=False)
    assert done.returncode == -9, done
