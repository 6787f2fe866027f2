"""DuckDB connection discipline, sql/ file runner and partition slices.

DuckDB lets one process at a time open a database file. Every run of the pipeline therefore opens the
warehouse only for short, write-then-close transactions, and queues on an advisory file lock beside the
database instead of spinning on DuckDB's own lock error. Analysts never open the warehouse: they get
`analytics.duckdb`, views over Parquet files that each refresh adds what changed to (see `analysts_db.py`).
"""

from pipeline.warehouse.connection import WarehouseBusy, connect
from pipeline.warehouse.sql_files import SQL_DIR, run_sql, run_sql_file

__all__ = ["SQL_DIR", "WarehouseBusy", "connect", "run_sql", "run_sql_file"]
