"""Shared by every test directory. Its presence puts `tests/` on `sys.path` (pytest's default `prepend`
import mode), which lets any test import the helpers beside it, e.g. `from ingest_support import ...`."""

from collections.abc import Iterator

import dagster as dg
import pytest


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """A throw-away Dagster instance (run and event storage in a temporary directory)."""
    with dg.instance_for_test() as instance:
        yield instance
