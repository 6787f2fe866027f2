"""The analysts' database: `analytics.duckdb`, a small file of views over Parquet files that grow by changes.

DuckDB lets only one process open a file, and a reader blocks a writer. Analysts therefore never open the
warehouse (a file per integration group), and the pipeline never writes a file an analyst may be reading:

- The history lives in Parquet under `analytics/` beside `analytics.duckdb`, one directory per table kept
  per mapping-day (`restriction_reasons`, `review_requests`, `partition_runs`). A refresh exports only the
  partitions written since the last refresh (see `CHANGES`; a watermark per group file), as one new *delta*
  file per table and group file read, so it costs what changed, not what the history or the other groups
  hold. Each exported partition also gets a *marker* row: it says "this
  is the partition as of export `_exported_at`", and stands for the partition even when it has no rows left.
  The views keep, per partition, the rows of the file with its newest marker.
- Once `COMPACT_AFTER` deltas pile up, a refresh first merges them into one *base* file per partition month.
  Files are written under a temporary name and renamed into place, and never changed after: DuckDB reads a
  file's footer when a query starts and its row groups later, so a file changed in between breaks the query.
- `analytics.duckdb` holds the views, which name their files one by one, and the small tables
  (`restriction_codes`, `alerts`, and what a caller adds, e.g. `partition_calendar` for `coverage`). Each
  refresh builds it anew and `os.replace`s it over the old name. A connection an analyst keeps open goes on
  reading the files its views name, undisturbed; a new connection sees the new exports. A file a compaction
  superseded is deleted `GRACE_SECONDS` (a day) after the first catalog that no longer names it.
- A caller's table that changes seldom but grows (the registry's audit trail) is kept whole in one file per
  version (`add_whole_table`), written only by the first refresh that sees the version, and superseded
  like the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import duckdb

from pipeline.settings import in_postgres
from pipeline.warehouse.connection import DEFAULT_WAIT_SECONDS, WAREHOUSE_ALIAS, attached, locked
from pipeline.warehouse.slices import ALERTS_DDL
from pipeline.warehouse.sql_files import run_sql_file

# Analysts' table -> its source in the warehouse: rows of one mapping-day each, exported per partition.
PARTITIONED = {
    "restriction_reasons": "analytics.restriction_reasons",
    "review_requests": "analytics.review_requests",
    "partition_runs": "calendar.partition_runs",
}
# Where a partition's rows change, and the column that says when: a refresh exports the partitions of a
# warehouse file written since the newest write of that file the refresh before it saw. The writers stamp
# that time inside their transaction, under the file's lock, so a write the previous refresh did not see has
# a later time. (A build rewrites
# the partition's mart rows and records itself in `partition_runs` in one transaction.)
CHANGES = {"calendar.partition_runs": "updated_at", "sink.review_request_ledger": "updated_at"}
# Analysts' table -> its source and order: small tables, copied whole into analytics.duckdb by every refresh.
COPIED = {
    "restriction_codes": ("seeds.restriction_codes", "precedence"),
    "alerts": ("calendar.alerts", "raised_at, alert_key"),
}
# Deltas per table that make a refresh merge them into the month files first (a few minutes of a busy day).
COMPACT_AFTER = 200
# How long a superseded file stays for the connections opened before the compaction (see the module's doc).
GRACE_SECONDS = 24 * 3600.0
# What a caller adds to the new analytics.duckdb before it is swapped in: given the connection and the new
# file's alias, it creates its tables and views there and returns their row counts.
Addition = Callable[[duckdb.DuckDBPyConnection, str], Mapping[str, int]]
Partition = tuple[str, date]  # (business_number, partition_date)


@dataclass(frozen=True)
class Export:
    """What a refresh exports into one table: the rows of `rows` (a query on the refresh's connection, with
    `business_number` and `partition_date` columns) standing for the (business_number, partition_date) keys
    of `keys` (a key without rows is exported as emptied). `whole`: these are all of the table's rows, and
    the files exported before are superseded. `exported` is called once the files are in place."""

    rows: str
    keys: str
    whole: bool = False
    exported: Callable[[], None] | None = None


class Exports(Protocol):
    """What a caller exports besides the partitions' tables (e.g. `partition_calendar`)."""

    def read(self, con: duckdb.DuckDBPyConnection, whole: bool, partitions: Sequence[Partition]) -> None:
        """Called for each warehouse file the refresh reads, attached as `con`'s default catalog: whether
        this refresh exports every file whole, and the partitions it exports from this one."""

    def exports(self, con: duckdb.DuckDBPyConnection, whole: bool) -> Mapping[str, Export]:
        """Called once after: an `Export` per table of its own, whose queries run on `con` (no warehouse
        attached; temp tables that `read` made are there)."""


_ALIAS = "analytics_snapshot"
_SUPERSEDED = "superseded.json"  # file -> since when no catalog names it
_WATERMARK = "watermark.json"  # the newest write to the `CHANGES` the last refresh exported


def parquet_root(analytics_path: Path | str) -> Path:
    """`$DATA_DIR/analytics/`, the Parquet files the views of `$DATA_DIR/analytics.duckdb` read."""
    return Path(analytics_path).with_suffix("")


def _sql_string(value: str) -> str:
    """A SQL string literal: ATTACH and COPY take no bound parameter for a path, and these paths are ours."""
    return "'" + value.replace("'", "''") + "'"


def _listed(paths: Iterable[Path]) -> str:
    return "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _copy_into_place(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Write `query`'s rows to the Parquet file `path`, atomically: under a temporary name, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    try:
        con.execute(f"copy ({query}) to {_sql_string(str(temporary))} (format parquet)")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _newest(files: Sequence[Path], where: str = "true") -> str:
    """A FROM clause: the rows of `files` (markers included) that are their partition's newest export, i.e.
    the rows of the file that holds the partition's newest marker (files that tie hold the same export)."""
    parts = f"(select * from read_parquet({_listed(files)}, filename = true) where {where})"
    newest = (
        "select business_number, partition_date, arg_max(filename, _exported_at) as filename "
        f"from {parts} where _marker group by business_number, partition_date"
    )
    return f"from {parts} semi join ({newest}) using (business_number, partition_date, filename)"


def _view(files: Sequence[Path]) -> str:
    """A table's rows: those of the month files, but for the partitions that a newer delta exported, whose
    rows come from their newest delta. The live month files never share a partition (each month has one), so
    only the few partitions in deltas need sorting out, not the whole history."""
    bases = [p for p in files if p.parent.name == "base"]  # at least the schema file
    deltas = [p for p in files if p.parent.name == "delta"] or bases[-1:]
    in_deltas = f"(select business_number, partition_date from read_parquet({_listed(deltas)}) where _marker)"
    return (
        f"select * exclude (_marker, _exported_at) from read_parquet({_listed(bases)}) "
        f"anti join {in_deltas} using (business_number, partition_date) where not _marker "
        f"union all select * exclude (filename, _marker, _exported_at) {_newest(deltas)} where not _marker"
    )


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One refresh or compaction at a time per analysts' database: each lists the files the next one sees."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock, also when the process dies


def _superseded(root: Path) -> dict[str, float | None]:
    """File -> since when no catalog names it (None: the current catalog may still name it)."""
    path = root / _SUPERSEDED
    return json.loads(path.read_text()) if path.exists() else {}


def _supersede(root: Path, files: Iterable[Path]) -> None:
    """Record `files` as superseded; the next catalog swapped in no longer names them."""
    _save_superseded(root, {**{str(p): None for p in files}, **_superseded(root)})


def _save_superseded(root: Path, superseded: Mapping[str, float | None]) -> None:
    write_json(root / _SUPERSEDED, superseded)


def write_json(path: Path, value: object) -> None:
    """Write `value` as JSON to `path`, atomically: under a temporary name, then renamed."""
    temporary = _temporary(path)
    temporary.write_text(json.dumps(value, sort_keys=True, indent=0))
    os.replace(temporary, path)


def live_files(root: Path) -> dict[str, list[Path]]:
    """Per table, the files its view reads: the deltas no compaction merged, and of the base files the newest
    of each month (and the newest `_schema`). A base file's name says what it replaces, so a process killed
    between writing a month's new file and recording the old one as superseded leaves no duplicate."""
    superseded = _superseded(root)
    live = {}
    present = [d for d in os.listdir(root) if d not in PARTITIONED and os.path.isdir(root / d / "base")]
    for table in [*PARTITIONED, *sorted(present)]:
        newest: dict[str, str] = {}  # month (or "_schema") -> file name, the newest stamp
        for name in _names(root / table / "base"):
            prefix = name.split(".")[0]
            if name > newest.get(prefix, ""):
                newest[prefix] = name
        bases = [f"{root / table / 'base'}/{n}" for n in newest.values()]
        deltas = [f"{root / table / 'delta'}/{n}" for n in _names(root / table / "delta")]
        live[table] = [Path(f) for f in sorted([*bases, *deltas]) if f not in superseded]
    return live


def _names(directory: Path) -> list[str]:
    names = os.listdir(directory) if directory.is_dir() else []
    return [n for n in names if n.endswith(".parquet") and not n.startswith(".")]


def _schema_query(rows: str) -> str:
    return f"select *, false as _marker, 0::bigint as _exported_at from ({rows}) limit 0"


def _schema_digest(con: duckdb.DuckDBPyConnection, rows: str) -> str:
    columns = con.execute(f"describe {_schema_query(rows)}").fetchall()
    return hashlib.sha256(repr([(c[0], c[1]) for c in columns]).encode()).hexdigest()[:16]


def _schema_current(live: Sequence[Path], digest: str) -> bool:
    """Whether a table's live schema file (`base/_schema.<stamp>.<digest>.parquet`, among its `live` files)
    has these columns."""
    schema = [p for p in live if p.name.startswith("_schema.")]
    return bool(schema) and schema[0].name.endswith(f".{digest}.parquet")


def _write_schema(con: duckdb.DuckDBPyConnection, root: Path, table: str, rows: str, digest: str) -> None:
    """A file of no rows with the columns of `rows`, written last by a whole export: the views bind before any
    other export, and it says that the table's files have these columns (the views rely on all files of a
    table having the same). Until it is written, every refresh exports the table whole again."""
    path = root / table / "base" / f"_schema.{time.time_ns():020d}.{digest}.parquet"
    _copy_into_place(con, _schema_query(rows), path)


def _export(con: duckdb.DuckDBPyConnection, root: Path, table: str, export: Export, name: str) -> int:
    """One delta file of `table`: `export`'s rows and a marker row per key. Returns the rows."""
    stamp = int(name.split("-")[0])
    rows = f"select *, false as _marker, {stamp}::bigint as _exported_at from ({export.rows})"
    markers = (
        "select business_number, partition_date, true as _marker, "
        f"{stamp}::bigint as _exported_at from ({export.keys})"
    )
    _copy_into_place(con, f"{rows} union all by name {markers}", root / table / "delta" / name)
    return con.execute(f"select count(*) from ({export.rows})").fetchone()[0]


def _changes(con: duckdb.DuckDBPyConnection, since: str | None) -> tuple[list[Partition], str | None]:
    """The partitions written after `since` (an ISO time; all of them if None), and the newest write."""
    where = "true" if since is None else "{column} > cast($since as timestamptz)"
    changed = " union ".join(
        f"select business_number, partition_date from {table} where {where.format(column=column)}"
        for table, column in CHANGES.items()
    )
    newest = " union all ".join(
        f"select max({column}) as written from {table}" for table, column in CHANGES.items()
    )
    params = {} if since is None else {"since": since}
    partitions = [(bn, day) for bn, day in con.execute(changed, params).fetchall()]
    mark = con.execute(f"select max(written) from ({newest})").fetchone()[0]
    return partitions, mark.isoformat() if mark else since


def export_partitions(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    partitions: Iterable[Partition] | None,
    name: str,
    present: Collection[str] | None = None,
) -> dict[str, int]:
    """Export the rows of `partitions` (every partition the warehouse has, if None) from the warehouse open
    on `con`: one new delta file per table, with a marker row per partition. Returns the rows per table.
    `present`: the warehouse's tables, when some of `PARTITIONED`'s may not exist yet (a group whose runs
    failed before their first build): those have no rows to export."""
    tables = {t: s for t, s in PARTITIONED.items() if present is None or s in present}
    con.execute("create or replace temp table exported (business_number varchar, partition_date date)")
    if partitions is None:
        every = " union ".join(f"select business_number, partition_date from {s}" for s in tables.values())
        con.execute(f"insert into exported {every}")
    elif chosen := sorted(set(partitions)):
        con.executemany("insert into exported values (?, ?)", chosen)
    if not con.execute("select count(*) from exported").fetchone()[0]:
        return dict.fromkeys(PARTITIONED, 0)
    counts = dict.fromkeys(PARTITIONED, 0)
    for table, source in tables.items():
        export = Export(
            f"from {source} semi join exported using (business_number, partition_date)", "from exported"
        )
        counts[table] = _export(con, root, table, export, name)
    return counts


def _merge(root: Path, deltas: Mapping[str, list[Path]], live: Mapping[str, list[Path]] | None) -> list[Path]:
    """For each table and partition month its `deltas` touch, write `base/<YYYY-MM>.<stamp>.parquet`: the
    newest export of every partition of that month, from the deltas and the month's base file among the
    `live` files (none for a whole export). Returns the files the new ones supersede."""
    stamp = time.time_ns()
    superseded: list[Path] = []
    con = duckdb.connect()
    try:
        for table, files in deltas.items():
            if not files:
                continue
            months = con.execute(
                f"select distinct strftime(partition_date, '%Y-%m') from read_parquet({_listed(files)}) "
                "where _marker"
            ).fetchall()
            for (month,) in months:
                older = [
                    p
                    for p in (live or {}).get(table, [])
                    if p.parent.name == "base" and p.name.startswith(f"{month}.")
                ]
                where = f"strftime(partition_date, '%Y-%m') = '{month}'"
                query = (
                    f"select * exclude (filename) {_newest([*files, *older], where)} "
                    "order by partition_date, business_number"
                )
                _copy_into_place(con, query, root / table / "base" / f"{month}.{stamp:020d}.parquet")
                superseded.extend(older)
            superseded.extend(files)
    finally:
        con.close()
    return superseded


def _compact(root: Path, at_least: int) -> int:
    live = live_files(root)
    deltas = {table: [p for p in files if p.parent.name == "delta"] for table, files in live.items()}
    due = {table: files for table, files in deltas.items() if len(files) >= at_least}
    if not due:
        return 0
    _supersede(root, _merge(root, due, live))
    return max(len(files) for files in due.values())


def compact(root: Path, *, at_least: int = COMPACT_AFTER) -> int:
    """Merge the live deltas into the month files once `at_least` have piled up (per table). Returns the
    deltas merged (0: nothing to do). The views see the result from the next refresh on."""
    with _locked(root):
        return _compact(root, at_least)


def _delete_expired(root: Path, grace_seconds: float) -> None:
    """Once a new catalog is in place: start the grace period of the files it no longer names, and delete
    those whose grace is over (no connection younger than `grace_seconds` names them)."""
    superseded = _superseded(root)
    now = time.time()
    for name, since in list(superseded.items()):
        if since is None:
            superseded[name] = now
        elif now - since >= grace_seconds:
            Path(name).unlink(missing_ok=True)
            del superseded[name]
    _save_superseded(root, superseded)


def _settle_whole_export(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    tables: Mapping[str, str],
    names: Sequence[str],
    before: Mapping,
) -> None:
    """After a whole export of `tables` (table -> a query with its columns; delta files `names`): the deltas
    merged into new month files and deleted (no view named them), the tables' files from `before`
    superseded, and last the schema file that says the table is whole."""
    deltas = {table: [root / table / "delta" / n for n in names] for table in tables}
    present = {table: [p for p in files if p.exists()] for table, files in deltas.items()}  # none if no rows
    for delta in _merge(root, present, None):
        delta.unlink()
    _supersede(root, [p for table in tables for p in before.get(table, [])])
    for table, rows in tables.items():
        _write_schema(con, root, table, rows, _schema_digest(con, rows))


def _write_catalog(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    root: Path,
    addition: Addition | None,
    exported: Mapping[str, int],
) -> dict[str, int]:
    """Build `path`, a new analytics.duckdb: views over the live files of `root`, the small tables copied from
    the warehouse open on `con`, `addition`'s tables, and `snapshot_info` with the rows this refresh
    `exported`. Returns the copied tables' row counts."""
    live = live_files(root)
    counts: dict[str, int] = {}
    con.execute(f"attach {_sql_string(str(path))} as {_ALIAS} (read_write)")
    warehouse = con.execute("select current_database()").fetchone()[0]
    try:
        for table, (source, order_by) in COPIED.items():
            con.execute(f"create table {_ALIAS}.{table} as select * from {source} order by {order_by}")
            counts[table] = con.execute(f"select count(*) from {_ALIAS}.{table}").fetchone()[0]
        con.execute(f"use {_ALIAS}")  # the views' names bind inside the analysts' database
        try:
            for table, files in live.items():
                con.execute(f"create view {table} as {_view(files)}")
            con.execute("create schema calendar")  # partition_states' own rule, over the exported runs
            con.execute("create view calendar.partition_runs as select * from main.partition_runs")
            run_sql_file(con, "calendar/partition_states.sql")
            con.execute("create view partition_states as select * from calendar.partition_states")
        finally:
            con.execute(f'use "{warehouse}"')
        if addition is not None:
            counts.update(addition(con, _ALIAS))
        con.execute(
            f"create table {_ALIAS}.snapshot_info as select current_timestamp as refreshed_at, "
            "$counts::json as row_counts",
            {"counts": {**exported, **counts}},
        )
    finally:
        con.execute(f"detach {_ALIAS}")
    return counts


def add_whole_table(
    con: duckdb.DuckDBPyConnection, alias: str, root: Path, name: str, version: int, rows: Callable[[], str]
) -> int:
    """For an `Addition` (it runs under the refresh's lock): the view `name` in the analysts' database
    attached as `alias`, over `<root>/<name>/<version>.parquet`, a table kept whole in one file. Only when
    no file of `version` exists yet is it written from `rows()` (a query on `con`, called only then), and
    the files of older versions superseded. So a refresh pays for the table only when it changed. Returns
    the view's row count."""
    path = root / name / f"{version:020d}.parquet"
    if not path.exists():
        _copy_into_place(con, rows(), path)
        _supersede(root, [p for p in path.parent.glob("*.parquet") if p != path])
    con.execute(f"create view {alias}.{name} as from read_parquet({_sql_string(str(path))})")
    return con.execute(f"select count(*) from {alias}.{name}").fetchone()[0]


class NothingToRefresh(RuntimeError):
    """No warehouse has a partition built yet: there is no analysts' database to make."""


@contextmanager
def _attached(con: duckdb.DuckDBPyConnection, path: Path, wait_seconds: float) -> Iterator[set[str]]:
    """`path` attached read-only as `con`'s default catalog (see `connection.attached`); yields the tables and
    views it has (`schema.name`)."""
    with attached(con, path, read_only=True, wait_seconds=wait_seconds):
        yield {
            name
            for (name,) in con.execute(
                "select schema_name || '.' || table_name from duckdb_tables() where database_name = $db "
                "union all "
                "select schema_name || '.' || view_name from duckdb_views() where database_name = $db",
                {"db": WAREHOUSE_ALIAS},
            ).fetchall()
        }


def _marks(root: Path) -> dict[str, str]:
    """Warehouse file name -> the newest write to its `CHANGES` that a refresh exported."""
    path = root / _WATERMARK
    marks = json.loads(path.read_text()) if path.exists() else {}
    return marks if isinstance(marks, dict) else {}  # a release before per-group files kept one string


def _copy_small_tables(
    con: duckdb.DuckDBPyConnection, alerts_at: Path | str | None, wait_seconds: float
) -> None:
    """`seeds.restriction_codes` and `calendar.alerts` (from the alerts file or PostgreSQL at `alerts_at`,
    empty without it) in the refresh's own database, for `_write_catalog` to copy."""
    run_sql_file(con, "seeds/restriction_codes.sql")
    run_sql_file(con, ALERTS_DDL)
    if in_postgres(alerts_at):
        from pipeline.postgres import give_back, take

        shared = take(alerts_at)
        try:
            shared.autocommit = True
            cursor = shared.cursor()
            cursor.execute("select * from calendar.alerts")
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        finally:
            give_back(alerts_at, shared)
        if rows:
            marks = ", ".join("?" * len(names))
            con.executemany(f"insert into memory.calendar.alerts ({', '.join(names)}) values ({marks})", rows)
        return
    alerts_path = None if alerts_at is None else Path(alerts_at)
    if alerts_path is not None and alerts_path.exists():
        with locked(alerts_path, wait_seconds):
            con.execute(f"attach {_sql_string(str(alerts_path))} as alerts_file (read_only)")
            try:
                present = con.execute(
                    "select count(*) from duckdb_tables() where database_name = 'alerts_file' "
                    "and schema_name = 'calendar' and table_name = 'alerts'"
                ).fetchone()[0]
                if present:
                    con.execute(
                        "insert into memory.calendar.alerts by name select * from alerts_file.calendar.alerts"
                    )
            finally:
                con.execute("detach alerts_file")


def refresh_analytics(
    sources: Sequence[Path | str],
    analytics_path: Path | str,
    addition: Addition | None = None,
    exports: Exports | None = None,
    *,
    alerts_path: Path | str | None = None,
    changed: Iterable[Path | str] | None = None,
    compact_after: int = COMPACT_AFTER,
    grace_seconds: float = GRACE_SECONDS,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> dict[str, int]:
    """Export the partitions written since the last refresh into the analysts' database at `analytics_path`
    (`$DATA_DIR/analytics.duckdb`): from the warehouse files of `changed` (every one of `sources` if None),
    each since its own watermark, or from every file of `sources` when the tables' columns changed (a new
    release, or the first refresh). Then what `exports` makes, the alerts of `alerts_path`, `addition`'s
    tables; and swap the new catalog in. A refresh that fails or is killed leaves its partitions to the next.

    Holds each warehouse file (read-only, through the pipeline's lock) only while it exports from it, and
    never writes one. Call it outside any `connect` to these files in this process. Returns the rows
    exported per table and the row count of each table copied.
    """
    analytics_path = Path(analytics_path)
    root = parquet_root(analytics_path)
    temporary = _temporary(analytics_path)
    sources = [Path(p) for p in sources]
    with _locked(root):
        _compact(root, compact_after)
        con = duckdb.connect()
        try:
            before = live_files(root)
            marks = _marks(root)
            stamp, tag = time.time_ns(), f"{os.getpid()}-{secrets.token_hex(4)}"
            present = [p for p in sources if p.exists()]
            wanted = set(present) if changed is None else {Path(p) for p in changed} & set(present)
            # The changed files first: a refresh after one group's run reads no other group's file.
            digests = _digests(con, sorted(present, key=lambda p: p not in wanted), wait_seconds)
            if digests is None and not before["restriction_reasons"]:
                raise NothingToRefresh(
                    f"none of the {len(sources)} warehouse file(s) has a partition of the models yet: build "
                    "at least one partition (pipeline.warehouse.models.build_partition) before refreshing "
                    "the analysts' database"
                )
            whole = digests is not None and not all(_schema_current(before[t], d) for t, d in digests.items())
            counts = dict.fromkeys(PARTITIONED, 0)
            names = []
            for index, path in enumerate(present if whole else [p for p in present if p in wanted]):
                name = f"{stamp:020d}-{tag}-{index}.parquet"
                with _attached(con, path, wait_seconds) as tables:
                    if not all(source in tables for source in CHANGES):
                        continue  # a group file whose runs have written nothing yet
                    since = None if whole else marks.get(path.name)
                    partitions, marks[path.name] = _changes(con, since)
                    exported = export_partitions(
                        con, root, None if since is None else partitions, name, tables
                    )
                    names.append(name)
                    for table, rows in exported.items():
                        counts[table] += rows
                    if exports is not None:
                        exports.read(con, whole, partitions)
            if whole:
                _settle_whole_export(con, root, {t: f"from {_shape(t)}" for t in PARTITIONED}, names, before)
            _copy_small_tables(con, alerts_path, wait_seconds)
            name = f"{stamp:020d}-{tag}-own.parquet"
            for table, export in (exports.exports(con, whole) if exports else {}).items():
                if not export.whole and not _schema_current(
                    before.get(table, []), _schema_digest(con, export.rows)
                ):
                    raise RuntimeError(
                        f"{table}'s files have other columns than its export: delete {root / table} and "
                        "the state beside it to export it whole"
                    )
                counts[table] = _export(con, root, table, export, name)
                if export.whole:
                    _settle_whole_export(con, root, {table: export.rows}, [name], before)
                if export.exported:
                    export.exported()
            counts.update(_write_catalog(con, temporary, root, addition, counts))
            os.replace(temporary, analytics_path)
            write_json(root / _WATERMARK, marks)
        finally:
            con.close()
            for leftover in (temporary, temporary.with_name(temporary.name + ".wal")):
                leftover.unlink(missing_ok=True)
        _delete_expired(root, grace_seconds)
    return counts


def _shape(table: str) -> str:
    return f"temp.main.shape_of_{table}"


def _digests(
    con: duckdb.DuckDBPyConnection, present: Sequence[Path], wait_seconds: float
) -> dict[str, str] | None:
    """The schema digest of each partitioned table, from the first warehouse file that has them all (they
    all have the same columns: the same release's SQL made them), whose empty copies stay on `con` as
    `_shape(table)`; None if no file has them yet."""
    for path in present:
        with _attached(con, path, wait_seconds) as tables:
            complete = all(source in tables for source in PARTITIONED.values())
            for table, source in PARTITIONED.items() if complete else ():
                con.execute(f"create or replace temp table shape_of_{table} as from {source} limit 0")
        if complete:
            return {t: _schema_digest(con, f"from {_shape(t)}") for t in PARTITIONED}
    return None
