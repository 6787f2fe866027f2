"""The analysts' database: `analytics.duckdb`, a small file of views over Parquet files that grow by changes.

DuckDB lets only one process open a file, and a reader blocks a writer. Analysts therefore never open the
warehouse, and the pipeline never writes a file an analyst may be reading:

- The history lives in Parquet under `analytics/` beside `analytics.duckdb`, one directory per table kept
  per mapping-day (`restriction_reasons`, `review_requests`, `partition_runs`). A refresh exports only the
  partitions written since the last refresh (see `CHANGES`), as one new *delta* file per table, so it costs
  what changed, not what the history holds. Each exported partition also gets a *marker* row: it says "this
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
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from pipeline.warehouse.connection import connect
from pipeline.warehouse.sql_files import run_sql_file

# Analysts' table -> its source in the warehouse: rows of one mapping-day each, exported per partition.
PARTITIONED = {
    "restriction_reasons": "analytics.restriction_reasons",
    "review_requests": "analytics.review_requests",
    "partition_runs": "calendar.partition_runs",
}
# Where a partition's rows change, and the column that says when: a refresh exports the partitions written
# since the newest write the refresh before it saw. The writers stamp that time inside their transaction,
# under the warehouse lock, so a write the previous refresh did not see has a later time. (A build rewrites
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
    """What a refresh exports into one table: the rows of `rows` (a query on the warehouse connection, with
    `business_number` and `partition_date` columns) standing for the (business_number, partition_date) keys
    of `keys` (a key without rows is exported as emptied). `whole`: these are all of the table's rows, and
    the files exported before are superseded. `exported` is called once the files are in place."""

    rows: str
    keys: str
    whole: bool = False
    exported: Callable[[], None] | None = None


# What a caller exports besides the partitions' tables: given the warehouse connection, whether this refresh
# exports the whole warehouse and the partitions it exports otherwise, an `Export` per table of its own (e.g.
# `partition_calendar`), or none.
Exports = Callable[[duckdb.DuckDBPyConnection, bool, Sequence[Partition]], Mapping[str, Export]]
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


def _export_name() -> str:
    """A new delta file's name, its export stamp first: taken under the warehouse lock, so a later export
    of a partition has the later stamp."""
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.parquet"


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
    con: duckdb.DuckDBPyConnection, root: Path, partitions: Iterable[Partition] | None, name: str
) -> dict[str, int]:
    """Export the rows of `partitions` (every partition the warehouse has, if None) from the warehouse open
    on `con`: one new delta file per table, with a marker row per partition. Returns the rows per table."""
    con.execute("create or replace temp table exported (business_number varchar, partition_date date)")
    if partitions is None:
        every = " union ".join(
            f"select business_number, partition_date from {s}" for s in PARTITIONED.values()
        )
        con.execute(f"insert into exported {every}")
    elif chosen := sorted(set(partitions)):
        con.executemany("insert into exported values (?, ?)", chosen)
    if not con.execute("select count(*) from exported").fetchone()[0]:
        return dict.fromkeys(PARTITIONED, 0)
    return {
        table: _export(
            con,
            root,
            table,
            Export(
                f"from {source} semi join exported using (business_number, partition_date)", "from exported"
            ),
            name,
        )
        for table, source in PARTITIONED.items()
    }


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
    con: duckdb.DuckDBPyConnection, root: Path, tables: Mapping[str, str], name: str, before: Mapping
) -> None:
    """After a whole export of `tables` (table -> rows query; delta files `name`): the deltas merged into new
    month files and deleted (no view named them), the tables' files from `before` superseded, and last the
    schema file that says the table is whole."""
    deltas = {table: [root / table / "delta" / name] for table in tables}
    present = {table: files for table, files in deltas.items() if files[0].exists()}  # none if no rows
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


class NothingToRefresh(RuntimeError):
    """The warehouse has no partition built yet: there is no analysts' database to make."""


def _check_sources(con: duckdb.DuckDBPyConnection, warehouse_path: Path | str) -> None:
    sources = [*PARTITIONED.values(), *(source for source, _ in COPIED.values())]
    present = {
        name
        for (name,) in con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "union all select schema_name || '.' || view_name from duckdb_views()"
        ).fetchall()
    }
    missing = [source for source in sources if source not in present]
    if missing:
        raise NothingToRefresh(
            f"{warehouse_path} has no {', '.join(missing)} yet: build at least one partition of the "
            "models (pipeline.warehouse.models.build_partition) before refreshing the analysts' database"
        )


def refresh_analytics(
    warehouse_path: Path | str,
    analytics_path: Path | str,
    addition: Addition | None = None,
    exports: Exports | None = None,
    *,
    compact_after: int = COMPACT_AFTER,
    grace_seconds: float = GRACE_SECONDS,
) -> dict[str, int]:
    """Export the partitions written since the last refresh (all of them the first time) and what `exports`
    returns from the warehouse at `warehouse_path` into the analysts' database at `analytics_path`
    (`$DATA_DIR/analytics.duckdb`), with `addition`'s tables, and swap the new catalog in. A refresh that
    fails or is killed leaves its partitions to the next one.

    Holds the warehouse (read-only, through the pipeline's lock) only for the export and the small tables,
    and never writes it. Call it outside any other `connect` to the same warehouse in this process. Returns
    the rows exported per partitioned table and the row count of each table copied.
    """
    analytics_path = Path(analytics_path)
    root = parquet_root(analytics_path)
    temporary = _temporary(analytics_path)
    with _locked(root):
        _compact(root, compact_after)
        try:
            with connect(warehouse_path, read_only=True) as con:
                before = live_files(root)
                if not before["restriction_reasons"]:
                    _check_sources(con, warehouse_path)
                name = _export_name()
                # The first refresh, one killed before it was complete, or a release with new columns:
                # export every partition.
                sources = {table: f"from {source}" for table, source in PARTITIONED.items()}
                watermark = root / _WATERMARK
                since = json.loads(watermark.read_text()) if watermark.exists() else None
                whole = since is None or not all(
                    _schema_current(before[t], _schema_digest(con, r)) for t, r in sources.items()
                )
                partitions, mark = _changes(con, None if whole else since)
                counts = export_partitions(con, root, None if whole else partitions, name)
                if whole:
                    _settle_whole_export(con, root, sources, name, before)
                for table, export in (exports(con, whole, partitions) if exports else {}).items():
                    if not export.whole and not _schema_current(
                        before.get(table, []), _schema_digest(con, export.rows)
                    ):
                        raise RuntimeError(
                            f"{table}'s files have other columns than its export: delete {root / table} and "
                            "the state beside it to export it whole"
                        )
                    counts[table] = _export(con, root, table, export, name)
                    if export.whole:
                        _settle_whole_export(con, root, {table: export.rows}, name, before)
                    if export.exported:
                        export.exported()
                counts.update(_write_catalog(con, temporary, root, addition, counts))
            os.replace(temporary, analytics_path)
            write_json(watermark, mark)
        finally:
            for leftover in (temporary, temporary.with_name(temporary.name + ".wal")):
                leftover.unlink(missing_ok=True)
        _delete_expired(root, grace_seconds)
    return counts
