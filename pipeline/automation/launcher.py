"""The run launcher of one machine: each run in its own process, forked from one that imported the code.

Dagster's default launcher asks the code server to start every run in a fresh interpreter, which imports
Dagster and the code location again: about 2.5 s of CPU per run on our machines, more than a mapping-day's
own work (profiled in benchmarks/bench_daemon.py). `ForkServerRunLauncher` keeps one warm process instead, a
`multiprocessing` fork server that imported `pipeline.definitions` once, and forks each run from it. The run
then does exactly what `dagster api execute_run` does, in a process of its own: a run that crashes or is
killed harms neither the others nor the daemon, and the UI shows the same events.

- **Code changes are picked up**: when a file of the project changed since the fork server started, the
  next launch restarts it first, so a run executes the code on disk, as a freshly spawned run would.
- **Runs of any other code location** (or of another Python) go the default way, through their code server.
- **Termination** (the UI's "Terminate") interrupts the run's process, which Dagster reports as canceled; the
  process tags its run with its pid, and a pid that is no longer a run process is never signalled.
- **A run outlives a daemon stop or restart** signalled to the daemon's process group (it has a session of
  its own); a stop that kills a whole cgroup (systemd's default, `docker stop`) interrupts it (canceled).
- **Past one machine** a deployment uses Dagster's Docker or Kubernetes launcher instead (docs/scaling.md).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.launcher import LaunchRunContext
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

import pipeline

if TYPE_CHECKING:
    from dagster._core.instance import InstanceRef

CODE_MODULE = "pipeline.definitions"
PID_TAG = "cliniko-reviews/pid"
_PACKAGE = Path(pipeline.__file__).resolve().parent


def code_stamp() -> int:
    """A hash of every file of the project's code (path, size, mtime): any edit, rename or copy changes it."""
    from pipeline.warehouse.sql_files import SQL_DIR  # here: the webserver never needs DuckDB's import

    code = ((_PACKAGE, "*.py"), (SQL_DIR, "*.sql"))  # what a run executes: the package and its SQL
    files = sorted(path for root, pattern in code for path in root.rglob(pattern))
    stats = [(str(path), path.stat()) for path in files]
    return hash(tuple((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats))


def _execute(run_id: str, instance_ref: InstanceRef, working_directory: str | None) -> None:
    """The forked run process: what `dagster api execute_run` does, with the code already imported."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._utils.error import serializable_error_info_from_exc_info
    from dagster._utils.interrupts import capture_interrupts

    # The fork server exits once no process holds its "alive" pipe: a run must not keep an old server (one
    # the launcher retired after a code change) waiting for it.
    os.close(multiprocessing.forkserver._forkserver._forkserver_alive_fd)
    multiprocessing.forkserver._forkserver._forkserver_alive_fd = None
    # A session of its own, as a run the code server starts lives apart from the daemon: a daemon stopped or
    # restarted by signalling its process group leaves the runs it launched to finish.
    os.setsid()
    if working_directory:
        os.chdir(working_directory)  # as the code server would run it
    with capture_interrupts(), dg.DagsterInstance.from_ref(instance_ref) as instance:
        instance.add_run_tags(run_id, {PID_TAG: str(os.getpid())})
        try:
            _execute_run_command_body(
                run_id, instance, write_stream_fn=lambda _event: None, set_exit_code_on_failure=False
            )
        except BaseException:  # before the run's first event (its code does not import, say): fail it now
            run = instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                error = serializable_error_info_from_exc_info(sys.exc_info()).to_string()
                instance.report_run_failed(run, f"The run's process failed before it started:\n{error}")
            raise


class ForkServerRunLauncher(DefaultRunLauncher):
    """Launches runs of `pipeline.definitions` in processes forked from a warm fork server (see module)."""

    _lock = threading.Lock()  # one fork server per process: the daemon's dequeue threads share it
    _stamp: int | None = None

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        pointer = origin.repository_origin.code_pointer if origin else None
        if (
            origin is None
            or getattr(pointer, "module", None) != CODE_MODULE
            or Path(origin.executable_path) != Path(sys.executable)
        ):
            super().launch_run(context)
            return
        with self._lock:
            self._refresh()
            process = multiprocessing.get_context("forkserver").Process(
                target=_execute,
                args=(run.run_id, self._instance.get_ref(), getattr(pointer, "working_directory", None)),
                name=f"run {run.run_id}",
            )
            process.start()
            # Not a child to join at exit: the daemon stops without waiting for the runs (the fork server
            # reaps them), as it does with the code server's.
            multiprocessing.process._children.discard(process)

    def _refresh(self) -> None:
        stamp = code_stamp()
        if self._stamp is not None and stamp != self._stamp:
            # The code changed: the next process forks from a new server that imported it afresh. The old one
            # exits at once; its runs go on (they hold nothing of it, see `_execute`).
            multiprocessing.forkserver._forkserver._stop()
        type(self)._stamp = stamp
        multiprocessing.forkserver.set_forkserver_preload(["pipeline.warm"])

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or PID_TAG not in run.tags:
            return super().terminate(run_id)
        pid = int(run.tags[PID_TAG])
        self._instance.report_run_canceling(run)
        if not _is_run_process(pid):  # gone (crashed, rebooted); its pid may be another process's now
            self._instance.report_run_canceled(run, "The run's process was already gone.")
            return True
        try:
            os.kill(pid, signal.SIGINT)  # Dagster turns it into an interrupted, canceled run
        except OSError as error:  # another user's process, or it ended just now
            self._instance.report_engine_event(f"Could not interrupt the run's process {pid}: {error}", run)
            return False
        return True


def _is_run_process(pid: int) -> bool:
    """Whether `pid` is still a run process this launcher forked: a session leader forked by a fork server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return os.getsid(pid) == pid and b"multiprocessing.forkserver" in cmdline
    except OSError:
        return False
