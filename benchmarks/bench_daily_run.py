"""Benchmark: the daily run at scale, 200 mappings x 1 day end to end on this machine.

Not a test. Starts the sandbox in its own process with many Cliniko accounts (one API key per integration
group, several locations each, Cliniko's 200 requests/minute per key enforced), puts 200 mappings in a fresh
registry, and runs `cliniko-reviews run --date YESTERDAY` (every active mapping) as its own process, the way
the daily schedule's runs would go. Prints:

- wall time of the 200 partitions with `--workers 3` (one integration group per worker process at a time),
  against one process running one partition after another (measured on 20 mappings of another day, scaled);
  the note gives the floor the Cliniko API sets for the same requests (busiest key at 200/minute);
- per-partition overhead: the CPU time of a partition whose day has no appointments (the median run of
  several, run one after another in one process as `cliniko-reviews run` runs them), against Dagster's own
  CPU time for the same graph shape (our assets and checks as no-op partitioned steps, on the same kind of
  instance), measured the same way: this process and its children (Dagster's log capture starts two per
  run); CPU rather than wall time because the machine is shared;
- peak memory (RSS) of the run process, against the same process that only loads the definitions.

    uv run python benchmarks/bench_daily_run.py [--mappings 200] [--accounts 40] [--businesses 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
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
from pipeline.automation.partitions import (
    MAPPING_DIMENSION,
    PARTITIONS_START_DATE,
    MappingDay,
    mapping_day_partitions,
)
from pipeline.runner import QUIET

CLINIKO_RATE = 200 / 60.0  # requests per second per key
EMPTY_DAY_OFFSET = 60  # days before today: before the sandbox's generated history, so no appointments


def _noop_step(ours: dg.AssetsDefinition, dep: dg.AssetsDefinition | None) -> dg.AssetsDefinition:
    """A no-op step shaped like `ours`: the same asset keys (a multi-asset stays one step), each with the
    same checks, after `dep`."""
    with warnings.catch_warnings():  # partitioned checks, like ours: a preview of Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check_specs = [
            dg.AssetCheckSpec(s.name, asset=s.asset_key, partitions_def=s.partitions_def)
            for s in ours.check_specs
        ]
    after = list(dep.keys) if dep else []

    @dg.multi_asset(
        name=f"noop_{ours.node_def.name}",
        specs=[dg.AssetSpec(key, deps=after) for key in ours.keys],
        partitions_def=mapping_day_partitions,
        check_specs=check_specs,
    )
    def _step() -> Iterator[dg.MaterializeResult]:
        for key in ours.keys:
            results = [
                dg.AssetCheckResult(asset_key=key, check_name=c.name, passed=True)
                for c in check_specs
                if c.asset_key == key
            ]
            yield dg.MaterializeResult(asset_key=key, metadata={"rows": 0}, check_results=results)

    return _step


def _noop_check(asset: str, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name)
    def _check() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return _check


def dagster_floor(home: Path) -> Callable[[int], object]:
    """A run of no-op assets shaped like ours (the assets of `pipeline.definitions` in order, each with its
    checks, and the checks that run as steps of their own) for partition `k`, in process on an instance
    configured like ours (at `home`, kept open until the process ends): what Dagster itself costs per run."""
    from pipeline.definitions import defs

    assets: list[dg.AssetsDefinition] = []
    for ours in defs.assets:
        assets.append(_noop_step(ours, assets[-1] if assets else None))
    checks = [
        _noop_check(spec.asset_key.to_user_string(), spec.name)
        for ours in defs.asset_checks
        for spec in ours.check_specs
    ]
    job = dg.Definitions(
        assets=assets, asset_checks=checks, jobs=[dg.define_asset_job("noop", selection="*")]
    ).resolve_job_def("noop")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.replace("env: DAGSTER_HOME", str(home)))
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["1"])
    return lambda k: job.execute_in_process(
        instance=instance,
        partition_key=MappingDay("1", PARTITIONS_START_DATE + timedelta(k)).key,
        run_config=QUIET,
    )


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_run(runs: int, **sides: Callable[[int], object]) -> dict[str, tuple[float, float]]:
    """Per side, the median wall and CPU seconds of `run(k)` for k = 1..runs, after k = 0 (unmeasured: lazy
    imports). The sides take turns, so a neighbour that slows the machine for a while slows both."""
    walls: dict[str, list[float]] = {name: [] for name in sides}
    cpus: dict[str, list[float]] = {name: [] for name in sides}
    for k in range(runs + 1):
        for name, run in sides.items():
            wall, cpu = time.perf_counter(), _cpu_seconds()
            run(k)
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(_cpu_seconds() - cpu)
    return {n: (statistics.median(walls[n][1:]), statistics.median(cpus[n][1:])) for n in sides}


def empty_partitions(business_number: str, first_day: str, runs: int, floor_home: str) -> None:
    """In a process with a run's environment: our runs of `runs` + 1 partitions of days without appointments
    from `first_day`, each by `run_partitions` as `cliniko-reviews run` runs them, taking turns with
    Dagster's no-op runs of the same shape (`dagster_floor`); prints `per_run`'s figures as JSON, and the
    median CPU seconds of the analysts' refresh that each of our runs ends with (`refresh`)."""
    from pipeline.automation.instance import ensure_dagster_home
    from pipeline.automation.resources import WarehouseResource
    from pipeline.runner import run_partitions
    from pipeline.settings import load_settings

    refreshes: list[float] = []
    refresh = WarehouseResource.refresh_analysts_db

    def timed_refresh(self: WarehouseResource, *args: object, **kwargs: object) -> dict[str, int]:
        started = time.process_time()  # this process's threads: the refresh runs in the run's own thread
        try:
            return refresh(self, *args, **kwargs)
        finally:
            refreshes.append(time.process_time() - started)

    WarehouseResource.refresh_analysts_db = timed_refresh  # type: ignore[method-assign]
    ensure_dagster_home(load_settings())
    first = date.fromisoformat(first_day)
    with dg.DagsterInstance.get() as instance:

        def ours(k: int) -> None:
            day = MappingDay(business_number, first + timedelta(days=k))
            [outcome] = run_partitions([day], instance, show_progress=False)
            if not outcome.success:
                raise SystemExit(f"{day}: {outcome.error}")

        measured = per_run(runs, ours=ours, floor=dagster_floor(Path(floor_home)))
        print(json.dumps({**measured, "refresh": statistics.median(refreshes[1:])}))


def idle_rss_mb() -> float:
    """Peak RSS (`VmHWM`, as `support.run_command` reads it) of a process that only loads the definitions."""
    code = (
        "import pipeline.definitions, pathlib; "
        "print(next(l.split()[1] for l in pathlib.Path('/proc/self/status').read_text().splitlines() "
        "if l.startswith('VmHWM:')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


def api_floor(requests: list[dict]) -> tuple[float, int, int]:
    """Seconds the Cliniko API needs at least for these requests (the busiest key at 200/minute; keys run
    in parallel), the number of requests and of 429s."""
    per_key = Counter(r["account"] for r in requests)  # the log masks keys: all end with the shard
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
    parser.add_argument("--workers", type=int, default=3, help="`run --workers` for the daily run")
    parser.add_argument(
        "--sequential-sample", type=int, default=20, help="mappings the one-process baseline runs"
    )
    parser.add_argument("--empty-partitions", type=int, default=15)
    parser.add_argument("--dir", type=Path, help="keep the data here (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="bench_daily_run_"))
    workdir.mkdir(parents=True, exist_ok=True)
    request_log = workdir / "cliniko_requests.jsonl"
    request_log.unlink(missing_ok=True)
    today = date.today()
    day = today - timedelta(days=1)
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
        accounts = len(box.accounts)
        mappings = []
        for i in range(args.mappings):
            names = box.accounts[i % accounts]["businesses"]
            mappings.append((str(700_000_000 + i), i % accounts, names[(i // accounts) % len(names)]))
        create_mappings(data_dir, box, mappings)

        # Per-partition overhead first, on an empty warehouse: partitions of days without appointments.
        empty_day = today - timedelta(days=EMPTY_DAY_OFFSET)
        first = mappings[0][0]
        one = run_command(["run", f"--date={empty_day}", f"--mapping={first}"], env, workdir / "empty_1.log")
        code = (
            "from benchmarks.bench_daily_run import empty_partitions; "
            f"empty_partitions({first!r}, {str(empty_day + timedelta(days=1))!r}, {args.empty_partitions}, "
            f"{str(workdir / 'floor_home')!r})"
        )
        many = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True
        )
        (workdir / "empty_n.log").write_text(many.stdout + many.stderr)
        if one.status or many.returncode:
            raise SystemExit(f"an empty-day run failed; see {workdir}/empty_*.log")
        measured = json.loads(many.stdout.splitlines()[-1])
        (overhead, overhead_cpu), (floor_wall, floor_cpu) = measured["ours"], measured["floor"]
        refresh_cpu = measured["refresh"]
        startup = max(one.wall - overhead, 0.0)

        # The one-process baseline: a sample of the mappings on another day, one run per partition.
        sample = mappings[: args.sequential_sample]
        sequential = run_command(
            ["run", f"--date={day - timedelta(days=1)}", *[f"--mapping={bn}" for bn, _, _ in sample]],
            env,
            workdir / "sequential.log",
        )
        if sequential.status:
            raise SystemExit(f"the sequential sample failed; see {workdir / 'sequential.log'}")
        per_partition = (sequential.wall - startup) / len(sample)
        sequential_estimate = startup + per_partition * args.mappings

        print(
            f"{args.mappings} mappings over {accounts} Cliniko keys; running {day} for all of them "
            f"with --workers {args.workers}",
            flush=True,
        )
        request_log.write_text("")
        run = run_command(
            ["run", f"--date={day}", f"--workers={args.workers}"], env, workdir / "daily_run.log"
        )
        if run.status != 0:
            raise SystemExit(f"the daily run failed (exit {run.status}); see {workdir / 'daily_run.log'}")
        floor, count, throttled = api_floor(read_request_log(request_log))
        log = (workdir / "daily_run.log").read_text().splitlines()
        print(next((line for line in reversed(log) if "succeeded" in line), ""), flush=True)

    return [
        report(
            Figure(
                f"daily run, {args.mappings} mappings x 1 day",
                run.wall,
                sequential_estimate,
                "s",
                f"one process, one run per partition: {len(sample)} measured, scaled",
                "info (2 shared cores)",
                None,
                f"{run.wall / args.mappings:.2f} s wall and {run.cpu / args.mappings:.2f} s CPU per "
                f"partition (all processes); {count} Cliniko requests, {throttled} x 429; the API floor "
                f"for them is {floor:.1f} s (busiest key at 200/min), so the run is "
                f"{'CPU-bound' if run.wall > 1.5 * floor else 'bound by the API rate'}",
            )
        ),
        report(
            Figure(
                "daily run peak memory",
                run.peak_rss_mb,
                idle_rss_mb(),
                "MB",
                "a process that only loads the definitions",
                "<= 1,500 MB",
                run.peak_rss_mb <= 1500,
                "largest single process (the parent or one worker)",
            )
        ),
        report(
            Figure(
                "per-partition overhead (CPU)",
                overhead_cpu,
                floor_cpu,
                "s",
                "Dagster alone: no-op assets and checks shaped like ours",
                "ratio <= 1.2",
                overhead_cpu <= 1.2 * floor_cpu,
                f"a partition with 0 appointments; wall {overhead:.2f} s against Dagster's "
                f"{floor_wall:.2f} s (wall time on a shared machine measures the neighbours); process "
                f"start-up {startup:.1f} s per command. Of the {0.2 * floor_cpu:.2f} s the goal leaves for "
                f"all of our steps, the analysts' refresh that SPEC §6 asks after each run takes "
                f"{refresh_cpu:.2f} s",
            )
        ),
    ]


if __name__ == "__main__":
    main()
