"""Benchmark: the daily run at scale, 200 mappings x 1 day end to end on this machine.

Not a test. Starts the sandbox in its own process with many Cliniko accounts (one API key per integration
group, several locations each, Cliniko's 200 requests/minute per key enforced), puts 200 mappings in a fresh
registry, and runs `cliniko-reviews run --date YESTERDAY` (every active mapping) as its own process, the way
the daily schedule's runs would go. Prints:

- wall time of the 200 partitions, against the floor the Cliniko API sets for the same requests (each key's
  requests at 200/minute, keys in parallel): how far the run is from being API-bound;
- per-partition overhead: the time of a partition whose day has no appointments (two runs of 1 and 11 such
  partitions, so the process start-up cancels out), against Dagster's own cost for the same graph shape (six
  no-op partitioned assets with as many checks, on the same kind of instance);
- peak memory (RSS) of the run process, against the same process that only loads the definitions.

    uv run python benchmarks/bench_daily_run.py [--mappings 200] [--accounts 40] [--businesses 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from benchmarks.support import (
    PROJECT_ROOT,
    Figure,
    create_mappings,
    environment,
    read_request_log,
    report,
    run_command,
    sandbox,
)
from pipeline.automation.instance import DAGSTER_YAML
from pipeline.automation.partitions import MAPPING_DIMENSION, MappingDay, mapping_day_partitions
from pipeline.automation.runner import QUIET
from pipeline.warehouse.models import CHECKS

CLINIKO_RATE = 200 / 60.0  # requests per second per key
EMPTY_DAY_OFFSET = 60  # days before today: before the sandbox's generated history, so no appointments


def _noop_asset(name: str, dep: dg.AssetsDefinition | None, checks: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=mapping_day_partitions,
        deps=[dep] if dep else [],
        check_specs=[dg.AssetCheckSpec(c, asset=name) for c in checks],
    )
    def _asset() -> dg.MaterializeResult:
        results = [dg.AssetCheckResult(check_name=c, passed=True) for c in checks]
        return dg.MaterializeResult(metadata={"rows": 0}, check_results=results)

    return _asset


def dagster_floor(home: Path, partitions: int) -> tuple[float, float]:
    """Median wall and CPU seconds per run of six no-op assets shaped like ours (same partitions, as many
    checks), one run per partition in process on an instance configured like ours: what Dagster itself
    costs per run."""
    shape = [("b", ["q"]), ("a", ["q"]), ("p", ["q"]), ("m", list(CHECKS)), ("s", ["d"]), ("x", [])]
    assets: list[dg.AssetsDefinition] = []
    for name, checks in shape:
        assets.append(_noop_asset(name, assets[-1] if assets else None, checks))
    job = dg.Definitions(assets=assets, jobs=[dg.define_asset_job("noop", selection="*")]).resolve_job_def(
        "noop"
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.replace("env: DAGSTER_HOME", str(home)))
    walls, cpus = [], []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(MAPPING_DIMENSION, ["1"])
        for k in range(partitions + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            job.execute_in_process(
                instance=instance,
                partition_key=MappingDay("1", date(2024, 1, 1) + timedelta(k)).key,
                run_config=QUIET,
            )
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls[1:]), statistics.median(cpus[1:])


def idle_rss_mb() -> float:
    """Peak RSS of a process that loads the definitions and nothing else."""
    process = subprocess.Popen([sys.executable, "-c", "import pipeline.definitions"], cwd=PROJECT_ROOT)
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024


def api_floor(requests: list[dict]) -> tuple[float, int, int]:
    """Seconds the Cliniko API needs at least for these requests (the busiest key at 200/minute; keys run
    in parallel), the number of requests and of 429s."""
    per_key = Counter(r["key"] for r in requests)
    busiest = max(per_key.values(), default=0)
    return busiest / CLINIKO_RATE, len(requests), sum(r["status"] == 429 for r in requests)


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mappings", type=int, default=200)
    parser.add_argument("--accounts", type=int, default=40, help="Cliniko API keys (integration groups)")
    parser.add_argument("--businesses", type=int, default=5, help="Cliniko businesses per account")
    parser.add_argument(
        "--appointments", type=int, default=2000, help="per account over 21 days (~19 per business-day)"
    )
    parser.add_argument("--empty-partitions", type=int, default=10)
    parser.add_argument("--dir", type=Path, help="keep the data here (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="bench_daily_run_"))
    workdir.mkdir(parents=True, exist_ok=True)
    request_log = workdir / "cliniko_requests.jsonl"
    request_log.unlink(missing_ok=True)
    today = date.today()
    day = today - timedelta(days=1)
    figures: list[Figure] = []
    options = [
        "--size=tiny",
        f"--accounts={args.accounts}",
        f"--businesses={args.businesses}",
        f"--appointments={args.appointments}",
        f"--request-log={request_log}",
    ]
    with sandbox(workdir, *options) as box:
        data_dir = workdir / "data"
        env = environment(data_dir, box)
        mappings = [
            (
                str(700_000_000 + i),
                i % len(box.accounts),
                box.accounts[i % len(box.accounts)]["businesses"][
                    (i // len(box.accounts)) % len(box.accounts[i % len(box.accounts)]["businesses"])
                ],
            )
            for i in range(args.mappings)
        ]
        create_mappings(data_dir, box, mappings)
        print(
            f"{args.mappings} mappings over {len(box.accounts)} Cliniko keys; running {day} for all of them",
            flush=True,
        )
        run = run_command(["run", f"--date={day}"], env, workdir / "daily_run.log")
        if run.status != 0:
            raise SystemExit(f"the daily run failed (exit {run.status}); see {workdir / 'daily_run.log'}")
        requests = read_request_log(request_log)
        floor, count, throttled = api_floor(requests)
        log = (workdir / "daily_run.log").read_text().splitlines()
        summary = next((line for line in reversed(log) if "succeeded" in line), "")
        print(f"{summary} {count} Cliniko requests, {throttled} answered 429", flush=True)
        figures.append(
            report(
                Figure(
                    "daily run wall time",
                    run.wall,
                    floor,
                    "s",
                    "Cliniko API floor: busiest key's requests at 200/min",
                    "info (CPU-bound; see per-partition overhead)",
                    None,
                    f"{args.mappings} partitions: {run.wall / args.mappings:.2f} s wall and "
                    f"{run.cpu / args.mappings:.2f} s CPU each; {count} requests, {throttled} x 429",
                )
            )
        )
        figures.append(
            report(
                Figure(
                    "daily run peak memory",
                    run.peak_rss_mb,
                    idle_rss_mb(),
                    "MB",
                    "process that only loads the definitions",
                    "<= 1,500 MB",
                    run.peak_rss_mb <= 1500,
                )
            )
        )
        empty_day = today - timedelta(days=EMPTY_DAY_OFFSET)
        first = mappings[0][0]
        one = run_command(["run", f"--date={empty_day}", f"--mapping={first}"], env, workdir / "empty_1.log")
        last = empty_day + timedelta(days=args.empty_partitions)
        many = run_command(
            ["run", f"--date={empty_day + timedelta(days=1)}", f"--date-to={last}", f"--mapping={first}"],
            env,
            workdir / "empty_n.log",
        )
        if one.status or many.status:
            raise SystemExit(f"an empty-day run failed; see {workdir}/empty_*.log")
        overhead = (many.wall - one.wall) / (args.empty_partitions - 1)
        overhead_cpu = (many.cpu - one.cpu) / (args.empty_partitions - 1)
        floor_wall, floor_cpu = dagster_floor(workdir / "floor_home", args.empty_partitions)
        figures.append(
            report(
                Figure(
                    "per-partition overhead",
                    overhead,
                    floor_wall,
                    "s",
                    "Dagster alone: six no-op assets, same checks",
                    "ratio <= 1.5",
                    overhead <= 1.5 * floor_wall,
                    f"a partition with 0 appointments; CPU {overhead_cpu:.2f} s against Dagster's "
                    f"{floor_cpu:.2f} s; process start-up {one.wall - overhead:.1f} s per command",
                )
            )
        )
    return figures


if __name__ == "__main__":
    main()
