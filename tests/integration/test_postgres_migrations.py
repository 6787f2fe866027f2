"""Our PostgreSQL tables are migrated on start, each file once, also when several processes start at once.

Real parts: a PostgreSQL server of Debian's package (tests/postgres_server.py), processes started together."""

import multiprocessing
import time

import psycopg2
import pytest

from pipeline.postgres import connect, migrate, migrations


def _start(url: str, start_at: float, result: "multiprocessing.Queue") -> None:
    time.sleep(max(0.0, start_at - time.time()))
    try:
        connect(url).close()
        result.put("ok")
    except Exception as exc:  # reported to the test, which fails on it
        result.put(repr(exc))


def test_processes_starting_at_once_apply_each_migration_exactly_once(database_url):
    ctx = multiprocessing.get_context("spawn")  # fresh processes, as hosts starting at once would be
    result = ctx.Queue()
    start_at = time.time() + 3.0
    processes = [ctx.Process(target=_start, args=(database_url, start_at, result)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert sorted(result.get(timeout=5) for _ in processes) == ["ok"] * 6

    con = psycopg2.connect(database_url)
    try:
        with con, con.cursor() as cur:
            cur.execute("select version, name from schema_migrations order by version")
            assert cur.fetchall() == migrations()
            cur.execute("select count(*) from rate_budgets")  # the first migration's table is there
            assert cur.fetchone() == (0,)
    finally:
        con.close()
    assert [name for _, name in migrations()][0] == "0001_rate_budgets.sql"


def test_a_database_migrated_by_a_newer_release_is_refused_in_words(database_url):
    connect(database_url).close()
    con = psycopg2.connect(database_url)
    try:
        with con, con.cursor() as cur:
            cur.execute("insert into schema_migrations (version, name) values (9999, '9999_later.sql')")
        with pytest.raises(RuntimeError, match="newer than this code's .*upgrade cliniko-reviews"):
            migrate(con)
    finally:
        con.close()
