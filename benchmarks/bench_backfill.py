"""Benchmark: a parallel backfill of 20 mappings x 7 days, launched through Dagster's GraphQL API.

Not a test. What issue 6 asks the orchestration to survive, measured on the real thing:
- the sandbox emulators (`cliniko-reviews sandbox`) and the admin API (`cliniko-reviews admin`) as processes;
  four integration groups over the sandbox's two Cliniko accounts, five mappings each, set up over HTTP;
- `dagster dev` (webserver + daemon) on the project's own instance (`ensure_dagster_home` writes
  `dagster.yaml`: three runs at a time), the mapping partitions added and one asset backfill of every asset
  for the 140 `YYYY-MM-DD|<businessNumber>` partitions launched over GraphQL, as the UI's "Materialize" does;
- meanwhile another process opens `$DATA_DIR/analytics.duckdb` read-only in a loop, as an analyst would,
  and counts the times it could not (must stay 0 once the file exists);
- afterwards, rows per partition (raw appointments, eligibility rows, eligible, ledger rows) compared with
  one `cliniko-reviews run` of the same partitions into a separate data directory against the same sandbox.

    uv run python benchmarks/bench_backfill.py [--dir DIR] [--mappings 20] [--days 7] [--no-reference]

With `--dir` the state stays behind (DATA_DIR=DIR/data, DAGSTER_HOME=DIR/data/dagster_home) for a look in
the UI: `DATA_DIR=DIR/data DAGSTER_HOME=DIR/data/dagster_home uv run cliniko-reviews ui`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb
import httpx

from pipeline.automation.instance import ensure_dagster_home
from pipeline.definitions import defs
from pipeline.demo import wait_until
from pipeline.registry.manual import STEP
from pipeline.settings import PROJECT_ROOT, load_settings
from pipeline.warehouse import connect

SEED = 11
BIRDEYE_KEY = "bench-birdeye-key-0001"
GROUPS_PER_ACCOUNT = 2
FIRST_PARENT = 700_000_000_000_000
FIRST_LOCATION = 710_000_000_000_000
# Every asset of the code location, as the UI's "materialize all" selects them: Dagster refuses a backfill
# that names only part of a multi-asset step (`cliniko_patients` is one with `cliniko_practitioners`).
ASSETS = [key.to_user_string() for assets in defs.assets for key in assets.keys]
RUNNING_BACKFILL = {"REQUESTED", "CANCELING", "FAILING"}
FINISHED_RUN = {"SUCCESS", "FAILURE", "CANCELED"}

PER_PARTITION = """
with slices as (
    select business_number, partition_date from raw.cliniko_appointments
    union select business_number, partition_date from marts.appointment_eligibility
    union select business_number, partition_date from sink.review_request_ledger
)
select s.business_number, s.partition_date,
       (select count(*) from raw.cliniko_appointments a
         where a.business_number = s.business_number and a.partition_date = s.partition_date) as raw,
       (select count(*) from marts.appointment_eligibility e
         where e.business_number = s.business_number and e.partition_date = s.partition_date) as eligibility,
       (select count(*) filter (where e.is_eligible) from marts.appointment_eligibility e
         where e.business_number = s.business_number and e.partition_date = s.partition_date) as eligible,
       (select count(*) from sink.review_request_ledger l
         where l.business_number = s.business_number and l.partition_date = s.partition_date) as ledger
from slices s
order by all
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A child in a session of its own, so the whole group (dagster dev's daemon, code server and run
    workers included) is interrupted, then killed, on the way out."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            args, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _properties(**values: str) -> list[dict]:
    return [
        {"propertyKey": k, "propertyValue": v, "isSecure": k.endswith(".api.key")} for k, v in values.items()
    ]


def set_up_mappings(admin_url: str, accounts: list[dict], mappings: int) -> list[str]:
    """Groups (two per Cliniko account, distinct parents) and `mappings` mappings spread over the accounts'
    businesses, one business per mapping and never twice in a group. Returns the business numbers."""
    groups = []
    with httpx.Client(base_url=admin_url, timeout=10) as admin:
        for index, account in enumerate(a for a in accounts for _ in range(GROUPS_PER_ACCOUNT)):
            body = {
                **STEP["smb_group"].payload,
                "parentBusinessNumber": FIRST_PARENT + index,
                "integrationGroupProperties": _properties(
                    **{
                        "cliniko.api.key": account["api_key"],
                        "birdeye.api.key": BIRDEYE_KEY,
                        "customer.fetch.delay": "0",
                    }
                ),
            }
            response = admin.put("/integration/add/businessintegrationgroup", json=body)
            response.raise_for_status()
            groups.append((response.json()["groupId"], account["businesses"]))
        per_group = -(-mappings // len(groups))
        numbers = []
        for n in range(mappings):
            (group_id, businesses), slot = groups[n // per_group], n % per_group
            if slot >= len(businesses):
                raise RuntimeError(
                    f"{per_group} mappings per group but an account has {len(businesses)} businesses"
                )
            number = FIRST_LOCATION + n
            body = {
                **STEP["smb_mapping"].payload,
                "businessNumber": number,
                "integrationGroupId": group_id,
                "integrationProperties": _properties(**{"cliniko.location.name": businesses[slot]}),
            }
            admin.put("/integration/add/businessintegrationmapping", json=body).raise_for_status()
            numbers.append(str(number))
    return numbers


def analyst(path: str, stop, counts, first_error) -> None:
    """Opens the analysts' database read-only over and over, as a notebook would; counts what fails."""
    while not stop.is_set():
        if os.path.exists(path):
            try:
                con = duckdb.connect(path, read_only=True)
                try:
                    con.execute("select count(*) from restriction_reasons").fetchone()
                finally:
                    con.close()
                with counts.get_lock():
                    counts[0] += 1
            except Exception as error:  # every failure counts, whatever DuckDB raises
                with counts.get_lock():
                    counts[1] += 1
                if not first_error.value:
                    first_error.value = f"{type(error).__name__}: {error}"[:500].encode()
        time.sleep(0.05)


class GraphQL:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60)

    def __call__(self, query: str, **variables) -> dict:
        response = self.client.post("/graphql", json={"query": query, "variables": variables})
        try:
            body = response.json()
        except ValueError:
            response.raise_for_status()  # not GraphQL's answer: the server's own error
            raise
        if body.get("errors"):  # Dagster answers a failed mutation with HTTP 500 and says why in the body
            raise RuntimeError(json.dumps(body["errors"])[:2000])
        response.raise_for_status()
        return body["data"]


REPOSITORY = (
    """{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"""
)
ADD_PARTITION = """
mutation($repo: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: "mapping", partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
  }
}"""
LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on PartitionSetNotFoundError { message }
  }
}"""
BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions error { message } }
  }
}"""
RUNS = """
query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status startTime endTime tags { key value } } }
  }
}"""
MATERIALIZED = """
{
  assetNodes { assetKey { path } partitionStats { numMaterialized numFailed numPartitions } }
}"""


def launch_backfill(gql: GraphQL, business_numbers: list[str], dates: list[date]) -> str:
    [repo] = gql(REPOSITORY)["repositoriesOrError"]["nodes"]
    selector = {"repositoryName": repo["name"], "repositoryLocationName": repo["location"]["name"]}
    for number in business_numbers:
        added = gql(ADD_PARTITION, repo=selector, key=number)["addDynamicPartition"]
        if added["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise RuntimeError(f"adding partition {number}: {added}")
    params = {
        "assetSelection": [{"path": [name]} for name in ASSETS],
        "partitionNames": [f"{d.isoformat()}|{n}" for d in dates for n in business_numbers],
        "title": f"bench: {len(business_numbers)} mappings x {len(dates)} days",
    }
    launched = gql(LAUNCH, params=params)["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {launched}")
    return launched["backfillId"]


def wait_for_backfill(gql: GraphQL, backfill_id: str, expected_runs: int) -> tuple[dict, list[dict], int]:
    """Polls until the backfill is done and every run finished; returns (backfill, runs, peak parallel)."""
    peak = 0
    last_line = ""
    while True:
        backfill = gql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        runs = gql(RUNS, id=backfill_id)["runsOrError"]["results"]
        statuses = [r["status"] for r in runs]
        peak = max(peak, statuses.count("STARTED") + statuses.count("STARTING"))
        done = sum(s in FINISHED_RUN for s in statuses)
        line = (
            f"  backfill {backfill['status']}: {len(runs)}/{expected_runs} runs launched, {done} finished, "
            f"{statuses.count('FAILURE')} failed, {statuses.count('STARTED')} running"
        )
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if backfill["status"] not in RUNNING_BACKFILL and done == len(runs):
            return backfill, runs, peak
        time.sleep(2)


def first_errors(dagster_home: Path, run_ids: list[str]) -> dict[str, str]:
    """The first step or run failure message of each failed run, read from the instance."""
    import dagster as dg

    messages = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in run_ids:
            for entry in instance.all_logs(run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.is_step_failure and event.step_failure_data.error:
                    messages[run_id] = f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
                    break
                if event.event_type == dg.DagsterEventType.RUN_FAILURE:
                    messages[run_id] = entry.message
                    break
    return messages


def rows_per_partition(data_dir: Path) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """Rows per partition, over every group's warehouse file of `data_dir`."""
    rows = {}
    for warehouse in sorted((data_dir / "warehouse").glob("group-*.duckdb")):
        with connect(warehouse, read_only=True) as con:
            rows.update({(bn, str(d)): tuple(c) for bn, d, *c in con.execute(PER_PARTITION).fetchall()})
    return rows


def reference_run(data_dir: Path, ref_dir: Path, env: dict[str, str], dates: list[date], log: Path) -> float:
    """One `cliniko-reviews run` of the same partitions in a separate data directory (registry copied)."""
    ref_dir.mkdir(parents=True)
    with (
        sqlite3.connect(data_dir / "registry.sqlite3") as source,
        sqlite3.connect(ref_dir / "registry.sqlite3") as target,
    ):
        source.backup(target)
    shutil.copy2(data_dir / ".registry_secret_key", ref_dir / ".registry_secret_key")
    ref_env = {**env, "DATA_DIR": str(ref_dir), "DAGSTER_HOME": str(ref_dir / "dagster_home")}
    started = time.monotonic()
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", f"--date={dates[0]}", f"--date-to={dates[-1]}"],
            cwd=PROJECT_ROOT,
            env=ref_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return time.monotonic() - started


def compare(backfill: dict, reference: dict, wanted: set[tuple[str, str]]) -> None:
    labels = ("raw appointments", "eligibility rows", "eligible", "ledger rows")
    for name, rows in (("backfill", backfill), ("cliniko-reviews run", reference)):
        totals = ", ".join(f"{label} {sum(r[i] for r in rows.values())}" for i, label in enumerate(labels))
        print(f"{name:<20}{totals}")
    differing = sorted(k for k in wanted if backfill.get(k) != reference.get(k))
    print(f"partitions differing {len(differing)} of {len(wanted)}")
    for key in differing[:5]:
        print(f"  {key}: backfill {backfill.get(key)} vs run {reference.get(key)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="Keep the state here (default: a temporary directory).")
    parser.add_argument("--mappings", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--no-reference", action="store_true", help="Skip the `cliniko-reviews run` comparison."
    )
    args = parser.parse_args()

    with ExitStack() as outer:
        root = args.dir.resolve() if args.dir else Path(outer.enter_context(tempfile.TemporaryDirectory()))
        data_dir = root / "data"
        if data_dir.exists():
            raise SystemExit(f"{data_dir} exists; the benchmark starts from an empty data directory")
        logs = root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True)
        cliniko_port, birdeye_port, admin_port, ui_port = (_free_port() for _ in range(4))
        env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "DAGSTER_HOME": str(data_dir / "dagster_home"),
            "CLINIKO_BASE_URL": f"http://127.0.0.1:{cliniko_port}/v1",
            "BIRDEYE_BASE_URL": f"http://127.0.0.1:{birdeye_port}/resources",
        }
        os.environ.update({k: env[k] for k in ("DATA_DIR", "DAGSTER_HOME")})
        dagster_home = ensure_dagster_home(load_settings())
        today = date.today()
        dates = [today - timedelta(days=i) for i in range(args.days, 0, -1)]
        wanted = {
            (n, d.isoformat()) for d in dates for n in (str(FIRST_LOCATION + m) for m in range(args.mappings))
        }
        print(f"State in {root} (logs in {logs})", flush=True)

        cli = [sys.executable, "-m", "pipeline.cli"]
        manifest = data_dir / "sandbox.json"
        sandbox_args = [
            *cli,
            "sandbox",
            f"--cliniko-port={cliniko_port}",
            f"--birdeye-port={birdeye_port}",
            f"--seed={args.seed}",
            "--size=demo",
            f"--birdeye-key={BIRDEYE_KEY}",
            f"--manifest={manifest}",
        ]
        sandbox = outer.enter_context(_process(sandbox_args, env, logs / "sandbox.log"))
        with ExitStack() as stack:
            admin = stack.enter_context(
                _process([*cli, "admin", f"--port={admin_port}"], env, logs / "admin.log")
            )
            wait_until(manifest.exists, "the sandbox", sandbox, 120)
            admin_url = f"http://127.0.0.1:{admin_port}"
            wait_until(lambda: httpx.get(f"{admin_url}/admin/health").is_success, "the admin API", admin, 60)
            accounts = json.loads(manifest.read_text())["cliniko_accounts"]
            business_numbers = set_up_mappings(admin_url, accounts, args.mappings)
            print(
                f"{len(business_numbers)} mappings over {len(accounts)} Cliniko accounts; "
                f"days {dates[0]}..{dates[-1]}"
            )

            dagster = stack.enter_context(
                _process(
                    ["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(ui_port)],
                    env,
                    logs / "dagster_dev.log",
                )
            )
            ui_url = f"http://127.0.0.1:{ui_port}"
            gql = GraphQL(ui_url)
            wait_until(
                lambda: bool(gql(REPOSITORY)["repositoriesOrError"]["nodes"]), "dagster dev", dagster, 180
            )
            print(f"dagster dev on {ui_url}, instance {dagster_home / 'dagster.yaml'}", flush=True)

            context = multiprocessing.get_context("spawn")
            stop, counts, first_error = context.Event(), context.Array("q", 2), context.Array("c", 501)
            reader = context.Process(
                target=analyst,
                args=(str(data_dir / "analytics.duckdb"), stop, counts, first_error),
                daemon=True,
            )
            reader.start()

            started = time.monotonic()
            backfill_id = launch_backfill(gql, business_numbers, dates)
            print(f"Backfill {backfill_id} launched: {len(wanted)} partitions", flush=True)
            backfill, runs, peak = wait_for_backfill(gql, backfill_id, len(wanted))
            wall = time.monotonic() - started
            stats = {
                "/".join(n["assetKey"]["path"]): n["partitionStats"] for n in gql(MATERIALIZED)["assetNodes"]
            }
            stop.set()
            reader.join(timeout=10)

        failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
        errors = first_errors(dagster_home, failed) if failed else {}
        durations = sorted(r["endTime"] - r["startTime"] for r in runs if r["startTime"] and r["endTime"])
        print("\n== Backfill ==")
        print(f"backfill status     {backfill['status']} {(backfill.get('error') or {}).get('message', '')}")
        print(f"runs                {len(runs)} (expected {len(wanted)}), peak {peak} at a time")
        print(f"failed runs         {len(failed)}")
        for run_id in failed[:5]:
            print(f"  {run_id}: {errors.get(run_id, 'no failure event')[:400]}")
        print(f"wall time           {wall:.0f} s ({wall / max(len(runs), 1):.1f} s per partition)")
        if durations:
            print(
                f"run duration        median {durations[len(durations) // 2]:.1f} s, "
                f"max {durations[-1]:.1f} s"
            )
        for name in ASSETS:
            s = stats[name]
            print(
                f"materialized        {name}: {s['numMaterialized']}/{len(wanted)}, {s['numFailed']} failed"
            )
        reads = f"analyst reads       {counts[0]} ok, {counts[1]} failed"
        if counts[1]:
            reads += f" (first: {first_error.value.decode(errors='replace')})"
        print(reads)

        rows = rows_per_partition(data_dir)
        no_eligibility = sorted(k for k in wanted if rows.get(k, (0, 0))[0] and not rows[k][1])
        print("\n== Rows ==")
        print(
            f"partitions          {len(wanted & rows.keys())}/{len(wanted)} with rows; "
            f"{len(no_eligibility)} with raw appointments but no eligibility rows"
        )
        if args.no_reference:
            labels = ("raw appointments", "eligibility rows", "eligible", "ledger rows")
            print(", ".join(f"{label} {sum(r[i] for r in rows.values())}" for i, label in enumerate(labels)))
            return
        print("Reference: one `cliniko-reviews run` of the same partitions, in a separate data directory ...")
        seconds = reference_run(data_dir, root / "reference", env, dates, logs / "reference_run.log")
        print(f"reference run       {seconds:.0f} s in one process")
        compare(rows, rows_per_partition(root / "reference"), wanted)


if __name__ == "__main__":
    main()
