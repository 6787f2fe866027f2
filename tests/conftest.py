"""Shared by every test directory. Its presence puts `tests/` on `sys.path` (pytest's default `prepend`
import mode), which lets any test import the helpers beside it, e.g. `from ingest_support import ...`."""

from collections.abc import Iterator

import dagster as dg
import pytest


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """A throw-away Dagster instance with in-memory run and event storage: a materialization costs half
    what it does with `dg.instance_for_test()`'s SQLite files. Sensor and schedule tests that need a real
    instance use `instance_for_test()` themselves."""
    instance = dg.DagsterInstance.ephemeral()
    try:
        yield instance
    finally:
        instance.dispose()
