"""Run the plain `.sql` files of `sql/` with bound parameters, one statement at a time.

DuckDB binds parameters only to the last statement of a multi-statement string, so a file is split with
`extract_statements` and each statement gets exactly the named parameters it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

_PACKAGED = Path(__file__).resolve().parent.parent / "sql"  # wheel install (hatch force-include)
SQL_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "sql"


@cache
def read_sql(relative_path: str) -> str:
    """The text of `sql/<relative_path>` (read once per process)."""
    return (SQL_DIR / relative_path).read_text()


_parsed: dict[str, tuple[duckdb.Statement, ...]] = {}


def _statements(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[duckdb.Statement, ...]:
    """`sql` parsed into statements once per process (a parsed statement runs on any connection)."""
    statements = _parsed.get(sql)
    if statements is None:
        statements = _parsed[sql] = tuple(con.extract_statements(sql))
    return statements


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None) -> None:
    """Execute every statement of `sql`, binding to each only the parameters it names."""
    params = params or {}
    for statement in _statements(con, sql):
        names = statement.named_parameters
        missing = set(names) - set(params)
        if missing:
            raise KeyError(f"SQL statement needs parameters {sorted(missing)}: {statement.query[:120]}...")
        con.execute(statement, {name: params[name] for name in names} if names else None)


def run_sql_file(
    con: duckdb.DuckDBPyConnection, relative_path: str, params: Mapping[str, Any] | None = None
) -> None:
    """Run `sql/<relative_path>`."""
    run_sql(con, read_sql(relative_path), params)
