"""Processes the end-to-end tests start as a deployment does (a code server, a daemon, the command line), each
in a session of its own, so that stopping one stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from pipeline.settings import PROJECT_ROOT


def _default_interrupts() -> None:
    """In the child, before it runs: SIGINT back to its default. A shell starts background jobs
    (`make test &`) with SIGINT ignored, which their children inherit, and Dagster's servers give SIGTERM
    whatever SIGINT does (`dagster._utils.interrupts.setup_interrupt_handlers`): they would ignore SIGTERM,
    and outlive the test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `args` in the project's directory and a new session, its output appended to `log`."""
    with log.open("a") as out:
        return subprocess.Popen(
            args,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_interrupts,
        )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """Send `sig` to the process's session and wait for it; what is left after `grace` seconds is killed.

    The tests check what ran, not how a server shuts down: Dagster's code server first waits for the calls in
    flight, up to its gRPC grace period (60 s).
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
