"""What the run launcher's fork server imports once, so that the runs it forks start with the code loaded
(pipeline/automation/launcher.py). If the code cannot be imported, each run imports it again and fails with
the error in its own event log, where a data engineer looks for it."""

import contextlib

with contextlib.suppress(Exception):
    import pipeline.definitions  # noqa: F401
