"""DuckDB connection discipline, sql/ file runner and partition slices.

The warehouse is one DuckDB file per integration group (`$DATA_DIR/warehouse/group-<id>.duckdb`): a group's
Cliniko rows, models, ledger and partition runs, everything its cool-off and its calendar need, so runs of
different groups never wait on each other. DuckDB lets one process at a time open a database file. Every run
therefore opens its group's file only for short, write-then-close transactions, and queues on an advisory file
lock beside it instead of spinning on DuckDB's own lock error. Analysts never open the warehouse: they get
`analytics.duckdb`, views over Parquet files that each refresh adds what changed to (see `analysts_db.py`).
"""

from pipeline.warehouse.connection import WarehouseBusy, connect
from pipeline.warehouse.sql_files import SQL_DIR, run_sql, run_sql_file

__all__ = ["SQL_DIR", "WarehouseBusy", "connect", "run_sql", "run_sql_file"]
