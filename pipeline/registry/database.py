"""How the registry's database is opened, locked and migrated: SQLite, or PostgreSQL with `DATABASE_URL`.

Several processes (the admin API, Dagster's sensor and runs) open the file at once, so every connection runs
in WAL mode with a busy timeout, and every write takes the write lock up front (`BEGIN IMMEDIATE`, so two
writers never deadlock upgrading a read lock). Connections are opened per transaction, which keeps the store
safe to use from FastAPI's thread pool.

With `DATABASE_URL` the same tables live in PostgreSQL (`sql/postgres/0002_registry.sql`, migrated by
`pipeline.postgres`), where every host sees them; the same queries run there (`PostgresConnection` takes
SQLite's `?` parameters), and a write transaction takes the registry's advisory lock first, as `BEGIN
IMMEDIATE` takes SQLite's write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.registry.schema import TABLES, migrate, sync_catalogue

BUSY_TIMEOUT_SECONDS = 30.0
REGISTRY_LOCK_ID = 0x72656769  # pg_advisory_xact_lock id of registry writes ("regi")


class RegistryDatabase:
    """The registry's file at `path`, or its tables in PostgreSQL when `database_url` is set: migrated and
    given the current catalogue on construction, then one transaction per `transaction()`."""

    def __init__(self, path: Path, database_url: str | None = None) -> None:
        self.path = Path(path)
        self.database_url = database_url
        self.initialise()

    def connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode (transactions are explicit), rows readable by name."""
        if self.database_url is not None:
            return PostgresConnection(self.database_url)  # type: ignore[return-value]
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    def initialise(self) -> None:
        """Create or migrate the SQLite file in WAL mode, and upsert the catalogue (in PostgreSQL too)."""
        if self.database_url is not None:  # the tables are migrated by `pipeline.postgres.connect`
            with self.transaction(write=True) as con:
                sync_catalogue(con)
                empty = con.execute("SELECT count(*) FROM integration_group").fetchone()[0] == 0
            if empty:
                self._refuse_a_forgotten_file()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self.connect()
        try:
            enable_wal(con)
            con.execute("BEGIN IMMEDIATE")
            migrate(con)
            sync_catalogue(con)
            con.execute("COMMIT")
        finally:
            if con.in_transaction:
                con.execute("ROLLBACK")
            con.close()

    def _refuse_a_forgotten_file(self) -> None:
        """With `DATABASE_URL` set and its registry empty, a registry file with groups beside it is one the
        deployment ran on before: refuse, or every clinic set up in it would silently stop running."""
        if not self.path.exists():
            return
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            groups = con.execute("SELECT count(*) FROM integration_group").fetchone()[0]
        except sqlite3.DatabaseError:
            groups = 0
        finally:
            con.close()
        if groups:
            raise RuntimeError(
                f"DATABASE_URL is set and its registry is empty, but {self.path} holds {groups} integration "
                "group(s) that would no longer run. Set them up again through the admin API against the "
                "new registry (the manual's commands replay unchanged), then move that file away; or unset "
                "DATABASE_URL."
            )

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction on a connection of its own: committed if the block returns, else rolled back."""
        con = self.connect()
        try:
            if self.database_url is None:
                con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            elif write:  # writers queue on one lock, as on SQLite's, and give up after as long
                con.execute("BEGIN")
                con.execute(f"SET LOCAL lock_timeout = '{int(BUSY_TIMEOUT_SECONDS * 1000)}ms'")
                con.execute("SELECT pg_advisory_xact_lock(?)", (REGISTRY_LOCK_ID,))
            else:  # one snapshot for every statement of a read, as SQLite's read transaction
                con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield con
            con.execute("COMMIT")
        finally:
            if con.in_transaction:
                con.execute("ROLLBACK")
            con.close()

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, ordered: two snapshots are equal iff the registry did not change."""
        with self.transaction(write=False) as con:
            dump: dict[str, list[tuple]] = {
                table: sorted(tuple(row) for row in con.execute(f"SELECT * FROM {table}")) for table in TABLES
            }
            if self.database_url is None:
                dump["sqlite_sequence"] = sorted(
                    tuple(row) for row in con.execute("SELECT * FROM sqlite_sequence")
                )
                dump["user_version"] = [(con.execute("PRAGMA user_version").fetchone()[0],)]
            else:
                sequence = "SELECT last_value, is_called FROM integration_group_group_id_seq"
                dump["group_id_sequence"] = [tuple(con.execute(sequence).fetchone())]
                dump["schema_migrations"] = [
                    tuple(row) for row in con.execute("SELECT version FROM schema_migrations ORDER BY 1")
                ]
            return dump


def enable_wal(con: sqlite3.Connection) -> None:
    """Switch the file to WAL (persistent); retried by hand because SQLite answers a concurrent switch with
    "database is locked" at once instead of calling the busy handler."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = 0.005
    while True:
        try:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
            continue
        if mode.lower() != "wal":
            raise RuntimeError(f"the registry file could not be put in WAL mode (journal mode {mode})")
        return


class PostgresConnection:
    """The part of `sqlite3.Connection` the store uses, over a psycopg2 connection: `execute` with SQLite's
    `?` parameters (the store's SQL has no other `?` nor `%`), rows readable by name and by index,
    `BEGIN`/`COMMIT`/`ROLLBACK` as statements, `in_transaction`."""

    def __init__(self, url: str) -> None:
        from pipeline.postgres import take

        self._url = url
        self._con = take(url)
        self._con.autocommit = True  # transactions are the store's own BEGIN ... COMMIT

    @property
    def in_transaction(self) -> bool:
        import psycopg2.extensions

        if self._con.closed:  # the server went away: nothing to roll back
            return False
        return self._con.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg2.extras

        cursor = self._con.cursor(cursor_factory=psycopg2.extras.DictCursor)
        cursor.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        return cursor

    def close(self) -> None:
        from pipeline.postgres import give_back

        give_back(self._url, self._con)  # kept for the next operation of this process
