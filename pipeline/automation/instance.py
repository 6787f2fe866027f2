"""The project's own Dagster instance configuration, created under DAGSTER_HOME on first use."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pipeline.settings import Settings

# Two cores: three runs at a time keep both busy while one waits on HTTP. Runs queue on the warehouse
# file lock for their short writes instead of failing on DuckDB's lock. Each run is forked from a warm
# process that imported the code once (pipeline/automation/launcher.py): a fresh interpreter per run cost
# more CPU than the run's own work. The queue is looked at every second, not every 5 s, by three threads: a
# run of a partition lasts 1-3 s, so a slot left idle until the next look cost a third of the daemon's
# throughput (benchmarks/bench_daemon.py).
# Event storage stays Dagster's default (a SQLite file per run): one consolidated SQLite file was a third
# faster per partition (benchmarks/bench_daily_run.py) but puts every concurrent run of a backfill on one
# SQLite writer lock. A deployment past one machine uses Postgres instead (docs/scaling.md).
# Two runs of one partition never overlap (a schedule's run and a UI backfill, say): the second waits in the
# queue. Runs of one integration group may overlap: their decisions and claims are one warehouse transaction
# (sql/sink/claims.sql), so the cool-off and duplicate rules hold whatever runs side by side.
# Run monitoring fails a run that never got past STARTING (its worker never came up). A run whose worker
# died once STARTED Dagster cannot see (the launcher has no health check): the calendar sensor finds
# those by their free lease (pipeline/automation/partitions.py: runs_in_flight) and fails them itself.
DAGSTER_YAML = """\
# Written by cliniko-reviews (pipeline/automation/instance.py); edit freely, it is not overwritten.
run_launcher:
  module: pipeline.automation.launcher
  class: ForkServerRunLauncher
run_queue:
  max_concurrent_runs: 3
  dequeue_interval_seconds: 1
  dequeue_use_threads: true
  dequeue_num_workers: 3
  tag_concurrency_limits:
    - key: "dagster/backfill"
      limit: 3
    - key: "dagster/partition"
      value:
        applyLimitPerUniqueValue: true
      limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  poll_interval_seconds: 60
telemetry:
  enabled: false
"""
# With DATABASE_URL, Dagster keeps runs, events and schedules in PostgreSQL (`dagster-postgres`), which
# every host of a deployment reaches. The URL stays in the environment, never in the file:
# `ensure_dagster_home` exports it, with the driver Dagster needs, as DAGSTER_POSTGRES_URL for the Dagster
# processes it starts.
POSTGRES_URL_VARIABLE = "DAGSTER_POSTGRES_URL"
POSTGRES_STORAGE_YAML = f"""\
storage:
  postgres:
    postgres_url:
      env: {POSTGRES_URL_VARIABLE}
"""


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME from the environment, else `$DATA_DIR/dagster_home`; created with our dagster.yaml,
    which keeps Dagster's storage in PostgreSQL when `DATABASE_URL` is set.

    Raises ValueError when `DATABASE_URL` is set but an existing dagster.yaml keeps the storage in SQLite
    files: the runs would silently stay on this host.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML + (POSTGRES_STORAGE_YAML if settings.database_url else ""))
    elif settings.database_url and "postgres" not in (
        (yaml.safe_load(config.read_text()) or {}).get("storage") or {}
    ):
        raise ValueError(
            f"DATABASE_URL is set, but {config} keeps Dagster's runs in SQLite files on this host. Add "
            f"this to it (or delete it to have it written again):\n{POSTGRES_STORAGE_YAML}"
        )
    os.environ["DAGSTER_HOME"] = str(home)
    if settings.dagster_postgres_url:
        os.environ[POSTGRES_URL_VARIABLE] = settings.dagster_postgres_url
    return home
