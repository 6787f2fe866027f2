"""Benchmark: a day's runs launched the way the scheduler launches them, against `cliniko-reviews run`.

Not a test. The path users take: the sandbox emulators in their own process, N mappings over 40 Cliniko keys
all due a minute ago (first due a day before), and Dagster's standard deployment on the project's own
instance configuration (`dagster.yaml` as `ensure_dagster_home` writes it): the code location as its own
gRPC server and `dagster-daemon run` beside it. The calendar sensor plans the partitions and the daemon
launches them, one run process per partition, three at a time; the benchmark waits until every run has
ended. Then the same partitions, in another data directory against the same sandbox, through
`cliniko-reviews run --workers 3`.

Prints wall time and CPU time (all processes: the daemon, the code server and every run) per partition of
both, their ratio (the issue's goal: the daemon's wall time per partition <= 1.3 x the command line's), and
the peak memory of a process. The daemon's wall time counts from its start, so it includes the seconds before
the calendar sensor's first tick.

With `--database-url postgresql://...` (a server's maintenance database), each side keeps its shared state
(Dagster's instance, the registry, the request budgets) in a new database of that server, as `DATABASE_URL`
does, instead of in files.

    uv run python benchmarks/bench_daemon.py [--mappings 300] [--dir DIR] [--database-url URL]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import yaml

from benchmarks.support import (
    PROJECT_ROOT,
    Command,
    Figure,
    PeakMemory,
    create_mappings,
    environment,
    free_port,
    process_tree,
    report,
    run_command,
    sandbox,
)
from pipeline.automation.instance import DAGSTER_YAML, POSTGRES_STORAGE_YAML, POSTGRES_URL_VARIABLE
from pipeline.automation.partitions import MAPPING_DIMENSION, mapping_day
from pipeline.registry.inputs import MappingPatch
from pipeline.registry.store import RegistryStore
from pipeline.settings import load_settings

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
QUIET_SECONDS = 75  # the calendar sensor ticks at most once a minute: no new run for longer means it is done


def make_due(data_dir: Path, business_numbers: list[str], due: datetime) -> None:
    """Every mapping due at `due` (its first due time too), as a support engineer's PATCH would set it."""
    store = RegistryStore.open(replace(load_settings(), data_dir=data_dir))
    for business_number in business_numbers:
        store.update_mapping(business_number, MappingPatch(next_run_time=due))


def shared_state(server_url: str | None, side: str) -> dict[str, str]:
    """The environment that puts a side's shared state in a new database of `server_url` (nothing without
    one). Also set in this process, which writes the side's registry and reads its runs."""
    if not server_url:
        return {}
    import psycopg2

    name = f"bench_{side}_{os.getpid()}"
    con = psycopg2.connect(server_url)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f"create database {name}")
    finally:
        con.close()
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    dagster_url = replace(load_settings(), database_url=url).dagster_postgres_url
    variables = {"DATABASE_URL": url, POSTGRES_URL_VARIABLE: dagster_url}
    os.environ.update(variables)
    return variables


def deployment(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen, subprocess.Popen, PeakMemory]:
    """The code server (gRPC) and the daemon pointed at it, each in its own process group."""
    port = free_port()
    workspace = work / "workspace.yaml"
    location = {"host": "127.0.0.1", "port": port, "location_name": "cliniko_reviews"}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": location}]}))
    bin_dir = Path(sys.executable).parent
    started = []
    for name, args in (
        ("code_server", [str(bin_dir / "dagster"), "api", "grpc", "-m", "pipeline.definitions",
                         "-d", str(PROJECT_ROOT), "-h", "127.0.0.1", "-p", str(port)]),
        ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)]),
    ):  # fmt: skip
        with (work / f"{name}.log").open("w") as log:
            started.append(
                subprocess.Popen(
                    args,
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return started[0], started[1], PeakMemory(started[0].pid, started[1].pid)


def adopt_orphans() -> None:
    """Make this process the one that reaps its orphaned descendants (Linux `PR_SET_CHILD_SUBREAPER`): the
    daemon's fork server, whose children are the runs, outlives the daemon by a moment and its CPU time
    reaches us only if we are the one that waits for it."""
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _wait(pid: int, deadline: float) -> float | None:
    """CPU seconds of an ended child and the children it reaped, or None if it is not ours by `deadline`."""
    while time.monotonic() < deadline:
        try:
            reaped, _, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:  # not (yet) our child: orphans are adopted when their parent ends
            reaped, usage = 0, None
        if reaped:
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.1)
    return None


def stop(process: subprocess.Popen) -> float:
    """Stop a process group gracefully; returns the CPU seconds of the process and all its descendants."""
    descendants = process_tree(process.pid)[1:]
    os.killpg(process.pid, signal.SIGTERM)
    cpu = _wait(process.pid, time.monotonic() + 60)
    if cpu is None:
        os.killpg(process.pid, signal.SIGKILL)
        cpu = _wait(process.pid, time.monotonic() + 60) or 0.0
    deadline = time.monotonic() + 5  # the ones their parent did not reap come to us (adopt_orphans)
    for pid in descendants:
        cpu += _wait(pid, deadline) or 0.0
    return cpu


def wait_for_runs(instance: dg.DagsterInstance, daemon: subprocess.Popen, log: Path) -> list[dg.RunRecord]:
    """Every run the scheduler launched, once all have ended and no new one came for `QUIET_SECONDS`."""
    last_change, seen = time.monotonic(), -1
    while True:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited; see {log}")
        records = instance.get_run_records()
        in_flight = [r for r in records if r.dagster_run.status in IN_FLIGHT]
        finished = len(records) - len(in_flight)
        if len(records) != seen or in_flight:
            last_change, seen = time.monotonic(), len(records)
        elif records and time.monotonic() - last_change > QUIET_SECONDS:
            return records
        print(f"  {finished} of {len(records)} runs ended", end="\r", flush=True)
        time.sleep(2)


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mappings", type=int, default=300)
    parser.add_argument("--accounts", type=int, default=40, help="Cliniko API keys (integration groups)")
    parser.add_argument("--businesses", type=int, default=5, help="Cliniko businesses per account")
    parser.add_argument("--appointments", type=int, default=2000, help="per account over 21 days")
    parser.add_argument("--dir", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--database-url", help="a PostgreSQL server: the shared state of each side in it")
    args = parser.parse_args()
    adopt_orphans()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="bench_daemon_"))
    workdir.mkdir(parents=True, exist_ok=True)
    options = [
        "--size=tiny",
        f"--accounts={args.accounts}",
        f"--businesses={args.businesses}",
        f"--appointments={args.appointments}",
    ]
    with sandbox(workdir, *options) as box:
        accounts = len(box.accounts)
        mappings = []
        for i in range(args.mappings):
            names = box.accounts[i % accounts]["businesses"]
            mappings.append((str(700_000_000 + i), i % accounts, names[(i // accounts) % len(names)]))
        numbers = [bn for bn, _, _ in mappings]
        # Due a minute ago, and first due a day before: the day before that has closed by now at any
        # hour, even for a clinic whose zones are not known yet (such a day closes at its end in UTC-12).
        due = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1, minutes=1)

        # The scheduler's way: the daemon and its code server on the project's instance configuration.
        daemon_dir = workdir / "daemon" / "data"
        env = environment(daemon_dir, box, **shared_state(args.database_url, "daemon"))
        create_mappings(daemon_dir, box, mappings)
        make_due(daemon_dir, numbers, due)
        home = Path(env["DAGSTER_HOME"])
        storage = POSTGRES_STORAGE_YAML if args.database_url else ""
        (home / "dagster.yaml").write_text(DAGSTER_YAML + storage)
        print(
            f"{args.mappings} mappings over {accounts} Cliniko keys, first due at {due:%Y-%m-%d %H:%M} UTC",
            flush=True,
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # The instance's storage exists before its processes start (as `dagster instance migrate` leaves
            # it): three processes creating the SQLite schema at once can leave it with two heads. The mapping
            # partitions exist too, as `mapping_partitions_sensor` adds them the minute a mapping is created.
            instance.add_dynamic_partitions(MAPPING_DIMENSION, numbers)
            started = time.perf_counter()
            code_server, daemon, peak = deployment(workdir / "daemon", env)
            try:
                records = wait_for_runs(instance, daemon, workdir / "daemon" / "daemon.log")
                ended = max(r.end_time for r in records)
                first = min(r.create_timestamp.timestamp() for r in records)
            finally:
                daemon_cpu = stop(daemon)
                code_server_cpu = stop(code_server)
                peak_kb = peak.stop()
        wall = time.perf_counter() - started - (time.time() - ended)  # up to the last run's end
        failed = [r for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
        days = [mapping_day(r.dagster_run.tags["dagster/partition"]) for r in records]
        print(
            f"daemon: {len(records)} runs ({len(failed)} failed) in {wall:.0f} s from start-up "
            f"({ended - first:.0f} s from the first run's creation); "
            f"CPU: daemon and its runs {daemon_cpu:.0f} s, code server {code_server_cpu:.0f} s",
            flush=True,
        )

        # The command line's way: the same partitions, `run --workers 3`, one command per partition date.
        cli_dir = workdir / "cli" / "data"
        cli_env = environment(cli_dir, box, **shared_state(args.database_url, "cli"))
        create_mappings(cli_dir, box, mappings)
        by_date: dict = defaultdict(list)
        for day in days:
            by_date[day.partition_date].append(day.business_number)
        commands: list[Command] = []
        for partition_date, chosen in sorted(by_date.items()):
            command = run_command(
                ["run", f"--date={partition_date}", "--workers=3", *[f"--mapping={bn}" for bn in chosen]],
                cli_env,
                workdir / f"cli_{partition_date}.log",
            )
            if command.status:
                raise SystemExit(f"the command line's run failed; see {workdir}/cli_{partition_date}.log")
            commands.append(command)
    cli_wall, cli_cpu = sum(c.wall for c in commands), sum(c.cpu for c in commands)
    partitions = len(records)
    daemon_wall_pp, cli_wall_pp = wall / partitions, cli_wall / partitions
    daemon_cpu_pp = (daemon_cpu + code_server_cpu) / partitions
    return [
        report(
            Figure(
                f"daemon path, {partitions} partitions: wall per partition",
                daemon_wall_pp,
                cli_wall_pp,
                "s",
                "`cliniko-reviews run --workers 3` on the same partitions",
                "ratio <= 1.3",
                daemon_wall_pp <= 1.3 * cli_wall_pp,
                f"{wall:.0f} s against {cli_wall:.0f} s; {len(failed)} failed runs",
            )
        ),
        report(
            Figure(
                "daemon path: CPU per partition (all processes)",
                daemon_cpu_pp,
                cli_cpu / partitions,
                "s",
                "the command line's, same partitions",
                "stretch: <= 0.6 s per clinic-day",
                daemon_cpu_pp <= 0.6,
                f"daemon and its runs {daemon_cpu:.0f} s, code server {code_server_cpu:.0f} s",
            )
        ),
        report(
            Figure(
                "daemon path: peak memory of a process",
                peak_kb / 1024,
                400,
                "MB",
                "the issue's bound",
                "<= 400 MB",
                peak_kb / 1024 <= 400,
                "the largest of the daemon, the code server and the run processes",
            )
        ),
    ]


if __name__ == "__main__":
    main()
