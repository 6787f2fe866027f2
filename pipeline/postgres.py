"""The PostgreSQL database of `DATABASE_URL`: connections, and the versioned migrations of our own tables.

Dagster keeps its instance tables there too (`dagster-postgres` migrates those itself). Ours are the numbered
files of `sql/postgres/` (`0001_rate_budgets.sql`, ...), applied in order, each once, by the first process
that connects after a release, in one transaction under an advisory lock: processes that start at once apply
each file exactly once, and the others wait for it.
Plain SQL files, as the rest of `sql/`: a handful of tables without an ORM model does not need Alembic.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import psycopg2
import psycopg2.extensions

from pipeline.warehouse.sql_files import SQL_DIR, read_sql

MIGRATIONS_DIR = SQL_DIR / "postgres"
# Views whose one definition in `sql/` both stores run: (re)created after the migrations, so each release's
# text is the one in use.
SHARED_VIEWS = ("calendar/partition_states.sql",)
CONNECT_TIMEOUT_SECONDS = 10
_LOCK_ID = 0x636C696E  # pg_advisory_xact_lock id of our migrations ("clin")
_migrated: set[tuple[int, str]] = set()  # (process id, url) that ran the migrations
_lock = threading.Lock()
# Idle connections by (process id, url): a forked child never takes its parent's.
_idle: dict[tuple[int, str], list[tuple[psycopg2.extensions.connection, float]]] = {}
_IDLE_MAX = 8
# A connection idle longer than this is tested (`select 1`) before it is handed out again: the server may
# have dropped it meanwhile (a restart, a failover, an idle timeout), and a caller must not fail on that.
_TEST_AFTER_IDLE_SECONDS = 5.0


def migrations() -> list[tuple[int, str]]:
    """(version, file name) of every migration, in order."""
    found = []
    for path in MIGRATIONS_DIR.glob("*.sql"):
        number = re.match(r"(\d+)_", path.name)
        if number is None:
            raise RuntimeError(f"{path} is not named <number>_<what>.sql")
        found.append((int(number.group(1)), path.name))
    return sorted(found)


def connect(url: str) -> psycopg2.extensions.connection:
    """A new connection to `url` (`DATABASE_URL`), once our tables are migrated to this release."""
    # TCP keepalives: a host that vanished (its leases' locks with it) is noticed in about a minute.
    con = psycopg2.connect(
        url,
        application_name="cliniko-reviews",
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    key = (os.getpid(), url)
    if key not in _migrated:
        with _lock:
            if key not in _migrated:
                migrate(con)
                _migrated.add(key)
    return con


def take(url: str) -> psycopg2.extensions.connection:
    """A connection to `url` from this process's idle ones (see `give_back`), or a new one: a connection
    costs the server a process and the client a round trip or three, and the registry makes one per
    operation."""
    while True:
        with _lock:
            idle = _idle.get((os.getpid(), url))
            if not idle:
                break
            con, since = idle.pop()
        if time.monotonic() - since < _TEST_AFTER_IDLE_SECONDS or _usable(con):
            return con
        con.close()
    return connect(url)


def _usable(con: psycopg2.extensions.connection) -> bool:
    try:
        with con.cursor() as cur:
            cur.execute("select 1")
        if not con.autocommit:
            con.rollback()
        return True
    except psycopg2.Error:
        return False


def give_back(url: str, con: psycopg2.extensions.connection) -> None:
    """Return a connection `take` gave: kept for the next caller while it is open and outside any
    transaction, closed otherwise (or when enough are idle already)."""
    healthy = not con.closed and con.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    if healthy:
        with _lock:
            idle = _idle.setdefault((os.getpid(), url), [])
            if len(idle) < _IDLE_MAX:
                idle.append((con, time.monotonic()))
                return
    con.close()


_NAMED = re.compile(r"\$([a-z_]+)")


def run(
    con: duckdb.DuckDBPyConnection | psycopg2.extensions.connection, sql: str, params: dict | None = None
):
    """Run `sql`, written with DuckDB's named parameters (`$name`), on a DuckDB connection or a PostgreSQL
    one; the result has `fetchall`, `fetchone` and `description`. Lets one statement serve both stores where
    the SQL is common to both (the ledger, the alerts)."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        return con.execute(sql, params) if params else con.execute(sql)
    cursor = con.cursor()
    cursor.execute(_NAMED.sub(r"%(\1)s", sql.replace("%", "%%")), params or {})
    return cursor


def insert_rows(
    con: duckdb.DuckDBPyConnection | psycopg2.extensions.connection,
    table: str,
    columns: dict[str, str],
    rows: list[tuple] | tuple[tuple, ...],
    conflict: str = "",
) -> None:
    """Insert `rows` (tuples in the order of `columns`: name -> SQL type) into `table` of either store, in one
    statement (a typed array per column, unnested), with an `on conflict ...` clause if given."""
    if not rows:
        return
    values = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    unnested = ", ".join(f"unnest(${name}::{kind}[])" for name, kind in columns.items())
    run(con, f"insert into {table} ({', '.join(columns)}) select {unnested} {conflict}", values)


@contextmanager
def locked_transaction(url: str, lock: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection in one transaction that holds the advisory lock named `lock` (every host's holders of
    one name take turns), committed when the block ends, rolled back if it raises."""
    con = take(url)
    try:
        con.autocommit = False
        with con.cursor() as cur:
            cur.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
        yield con
        con.commit()
    except BaseException:
        if not con.closed:
            con.rollback()
        raise
    finally:
        give_back(url, con)


def migrate(con: psycopg2.extensions.connection) -> list[str]:
    """Apply the migrations this database has not had, in order, and create the `SHARED_VIEWS`; returns the
    files applied."""
    applied: list[str] = []
    # One transaction: the lock, the bookkeeping table and every file, or nothing.
    with con, con.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        cur.execute(
            "create table if not exists schema_migrations ("
            "version integer primary key, name text not null, applied_at timestamptz not null default now())"
        )
        cur.execute("select version from schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        known = migrations()
        if done - {version for version, _ in known}:
            raise RuntimeError(
                f"the PostgreSQL database has migrations {sorted(done)}, newer than this code's "
                f"{[version for version, _ in known]}; upgrade cliniko-reviews"
            )
        for version, name in known:
            if version not in done:
                cur.execute(read_sql(f"postgres/{name}"))
                cur.execute("insert into schema_migrations (version, name) values (%s, %s)", (version, name))
                applied.append(name)
        for view in SHARED_VIEWS:
            cur.execute(read_sql(view))
    return applied
