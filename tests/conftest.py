"""Shared by every test directory. Its presence puts `tests/` on `sys.path` (pytest's default `prepend`
import mode), which lets any test import the helpers beside it, e.g. `from ingest_support import ...`."""

import os
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

# Many tests build partitions of fixed days, some older than the default first day of the partitions (the
# catch-up horizon back from today): they run as a deployment that set PARTITIONS_START does. The default
# itself is tested in tests/unit/test_partitions_start.py, in processes of its own.
os.environ.setdefault("PARTITIONS_START", "2024-01-01")


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


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/postgres_server.py)."""
    from postgres_server import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def database_url(postgres_server_url, request) -> str:
    """A new, empty PostgreSQL database for this test: its URL, as DATABASE_URL takes it."""
    import re

    from postgres_server import create_database

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return create_database(postgres_server_url, f"{name}_{uuid.uuid4().hex[:8]}")
