"""What the run launcher's fork server imports once, so that the runs it forks start with the code loaded
(pipeline/automation/launcher.py). If the code cannot be imported, each run imports it again and fails with
the error in its own event log, where a data engineer looks for it."""

import contextlib

with contextlib.suppress(Exception):
    # Each forked run re-runs the launching process's main script as `__mp_main__` (multiprocessing's rule);
    # for the daemon that is `dagster-daemon`, whose one import is this module.
    import dagster._daemon.cli  # noqa: F401

    import pipeline.definitions  # noqa: F401
