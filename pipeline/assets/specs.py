"""What the Dagster UI shows of an asset beside its data: its partitioned checks and its column schema."""

from __future__ import annotations

import warnings

import dagster as dg
import duckdb

from pipeline.automation.partitions import mapping_day_partitions


def partition_check(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    """A check of one mapping-day: its result belongs to the partition it ran for, so one failed partition
    turns only its own checks red in the UI, and the lineage counts partitions that passed. Partitioned
    checks are a preview of Dagster 1.13 (it warns at every load): the one place that says so."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, description=description, partitions_def=mapping_day_partitions
        )


def column_schema(table: str, *files: str) -> dg.TableSchema:
    """The UI's column schema of `table`, read from its own definition so the two never disagree: the
    `create` and `alter` statements of `files` (in order), run on an empty in-memory DuckDB."""
    from pipeline.warehouse.sql_files import read_sql

    con = duckdb.connect()
    try:
        for path in files:
            for statement in con.extract_statements(read_sql(path)):
                code = [line for line in statement.query.splitlines() if not line.strip().startswith("--")]
                if " ".join(code).strip().lower().startswith(("create", "alter")):
                    con.execute(statement.query)
        rows = con.execute(f"describe {table}").fetchall()
    finally:
        con.close()
    return dg.TableSchema(
        columns=[dg.TableColumn(name, data_type.lower(), constraints=None) for name, data_type, *_ in rows]
    )
