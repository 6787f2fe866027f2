"""One run's decision and claims in its own process, for the race tests: `python claim_worker.py JOB`.

The JOB file holds `warehouse`, `database_url` (PostgreSQL's shared ledger, or null) and the keyword arguments
of `build_partition`. The worker prints `ready` once
imported and builds when a line arrives on stdin, so two workers start their builds at the same instant.
It prints the partition's counts as JSON, or `superseded: <message>` when a later run already built it.
"""

import json
import sys
from datetime import date, datetime

from pipeline.sink.ledger import shared_decision
from pipeline.warehouse import connect
from pipeline.warehouse.models import BuiltByNewerRun, build_partition

if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    params = job["build"] | {
        "partition_date": date.fromisoformat(job["build"]["partition_date"]),
        "target_date": date.fromisoformat(job["build"]["target_date"]),
        "run_started_at": datetime.fromisoformat(job["build"]["run_started_at"]),
        "close_at": datetime.fromisoformat(job["build"]["close_at"]),
    }
    print("ready", flush=True)
    sys.stdin.readline()
    with connect(job["warehouse"]) as con:
        try:
            with shared_decision(job.get("database_url"), params["group_id"]) as shared_ledger:
                counts = build_partition(con, **params, shared_ledger=shared_ledger)
            print(json.dumps(counts), flush=True)
        except BuiltByNewerRun as error:
            print(f"superseded: {error}", flush=True)
