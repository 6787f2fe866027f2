"""Ingestion throughput against dlt: `uv run --group bench python benchmarks/bench_ingest_throughput.py`.

Not a test. One Cliniko emulator account (>= 200,000 visible individual appointments and their patients, no
rate limit) is served from a separate process, so the server's CPU is not charged to the loader, through the
replay front of `benchmarks/replay.py`: the emulator renders each page once (an untimed warm-up run of each
method), and timed runs get the same bytes from memory, so that the server is never the bottleneck (the
emulator alone serves ~300 pages/s, below the loaders). Each run reports the pages the front had not seen;
they should be 0. Each method then runs in a fresh child process of its own (so its peak RSS is its own) and
loads the same data into a fresh DuckDB file:

- `floor`: sequential httpx + `orjson.loads` of the same pages, nothing stored (the JSON parse floor);
- `ours`: `ClinikoClient` raw pages -> typed and checked by DuckDB -> one `INSERT OR REPLACE` per table
  (the assets' path);
- `dlt`: dlt's `rest_api` source, merge on `id`, default settings (SQL `INSERT ... VALUES` files);
- `dlt_parquet`: the same with `loader_file_format="parquet"`.

Rows/s is rows stored (or parsed, for the floor) over the wall time from the first request to the commit;
imports and process start are not counted. rows/CPU-s divides by the loading process's own CPU time (all its
threads) instead: the figure other load on the machine distorts least. Peak memory is the child's
`ru_maxrss`. The server's CPU time is
read from /proc while each method runs, to show what share of the 2 cores the emulator took.

    uv run --group bench python benchmarks/bench_ingest_throughput.py [--appointments 205000] [--runs 3]
        [--dlt-default-runs 1] [--methods floor,ours,dlt,dlt_parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

SEED = 8
START, END = date(2025, 1, 1), date(2026, 1, 1)
USER_AGENT = "cliniko-reviews-bench (bench@example.com)"
METHODS = ("floor", "ours", "dlt_parquet", "dlt")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


# -- the server process ------------------------------------------------------------------------------------


def serve(appointments: int) -> None:
    """Generate the account and serve it through the replay front (`benchmarks/replay.py`) until stdin closes;
    print one JSON line with what clients need."""
    import asyncio

    from benchmarks.replay import serve_replay
    from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig
    from pipeline.sandbox.generator import generate_account

    account = generate_account(SEED, businesses=7, appointments=appointments, start=START, end=END)
    emulator = ClinikoEmulator(ClinikoEmulatorConfig(accounts=[account], rate_limit=10**9))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        task = asyncio.create_task(serve_replay(emulator, "127.0.0.1", ready))
        _, port = await ready
        print(
            json.dumps(
                {
                    "url": f"http://127.0.0.1:{port}/v1",
                    "stats_url": f"http://127.0.0.1:{port}/__replay_stats",
                    "api_key": account.api_key,
                    "business_ids": sorted(str(b["id"]) for b in account.businesses),
                }
            ),
            flush=True,
        )
        await loop.run_in_executor(None, sys.stdin.read)
        task.cancel()

    asyncio.run(run())


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the methods, each run in its own child process --------------------------------------------------------


def _window() -> tuple[datetime, datetime]:
    return (
        datetime.combine(START - timedelta(days=2), datetime.min.time(), tzinfo=UTC),
        datetime.combine(END + timedelta(days=2), datetime.min.time(), tzinfo=UTC),
    )


def _appointment_params(business_ids: list[str]) -> list[tuple[str, str]]:
    from pipeline.cliniko import format_datetime

    start, end = _window()
    return [
        ("q[]", f"business_id:={','.join(business_ids)}"),
        ("q[]", f"ends_at:>={format_datetime(start)}"),
        ("q[]", f"ends_at:<{format_datetime(end)}"),
        ("q[]", "archived_at:*"),
        ("q[]", "cancelled_at:*"),
        ("sort", "ends_at,id"),
        ("per_page", "100"),
    ]


def method_floor(server: dict, workdir: Path) -> int:
    """Sequential httpx + orjson of the pages `ours` fetches (appointments, then patients by id)."""
    import httpx
    import orjson

    rows = 0
    patient_ids: set[str] = set()
    with httpx.Client(
        base_url=server["url"], auth=(server["api_key"], ""), headers={"User-Agent": USER_AGENT}
    ) as http:
        url: str | None = "/individual_appointments"
        params: Any = _appointment_params(server["business_ids"])
        while url:
            body = orjson.loads(http.get(url, params=params).content)
            page = body["individual_appointments"]
            rows += len(page)
            patient_ids.update(a["patient"]["links"]["self"].rsplit("/", 1)[1] for a in page)
            url, params = body["links"].get("next"), None
        wanted = sorted(patient_ids)
        for first in range(0, len(wanted), 100):
            chunk = ",".join(wanted[first : first + 100])
            query = [("q[]", f"id:={chunk}"), ("q[]", "archived_at:*"), ("sort", "id"), ("per_page", "100")]
            rows += len(orjson.loads(http.get("/patients", params=query).content)["patients"])
    return rows


def method_ours(server: dict, workdir: Path) -> int:
    """The assets' path: fetch raw pages (rate limiter off), type and check them in DuckDB, store; with
    upsert by primary key where the assets replace their partition's slice (the same statement otherwise)."""
    from pipeline.cliniko import ClinikoClient
    from pipeline.settings import load_settings
    from pipeline.warehouse.pages import type_pages
    from pipeline.warehouse.raw_store import store_records

    settings = load_settings()
    start, end = _window()
    warehouse = workdir / "warehouse.duckdb"
    with ClinikoClient(
        server["api_key"],
        settings=settings,
        base_url=server["url"],
        user_agent=USER_AGENT,
        rate_limit_per_minute=0,
    ) as client:
        appointments = type_pages(
            "appointments", client.individual_appointment_pages(server["business_ids"], start, end)
        )
        patient_ids = sorted(set(appointments.frame["patient_id"].dropna()))
        stored, _ = store_records(
            warehouse,
            "BENCH",
            start.date(),
            "appointments",
            "raw.cliniko_appointments",
            appointments,
            upsert=True,
        )
        del appointments
        patients = type_pages("patients", client.patient_pages(patient_ids))
        stored_patients, _ = store_records(
            warehouse, "BENCH", start.date(), "patients", "raw.cliniko_patients", patients, upsert=True
        )
    return stored + stored_patients


def _dlt_source(server: dict) -> Any:
    from dlt.sources.rest_api import rest_api_source

    params = _appointment_params(server["business_ids"])
    q = [value for key, value in params if key == "q[]"]
    return rest_api_source(
        {
            "client": {
                "base_url": server["url"] + "/",
                "auth": {"type": "http_basic", "username": server["api_key"], "password": ""},
                "headers": {"User-Agent": USER_AGENT},
                "paginator": {"type": "json_link", "next_url_path": "links.next"},
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                {
                    "name": "individual_appointments",
                    "endpoint": {
                        "path": "individual_appointments",
                        "params": {"q[]": q, "sort": "ends_at,id", "per_page": 100},
                        "data_selector": "individual_appointments",
                    },
                },
                {
                    "name": "patients",
                    "endpoint": {
                        "path": "patients",
                        "params": {"q[]": ["archived_at:*"], "sort": "id", "per_page": 100},
                        "data_selector": "patients",
                    },
                },
            ],
        }
    )


def _method_dlt(server: dict, workdir: Path, file_format: str | None) -> int:
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name="bench_cliniko",
        destination=dlt.destinations.duckdb(str(workdir / "dlt.duckdb")),
        dataset_name="cliniko_raw",
        pipelines_dir=str(workdir / "dlt_pipelines"),
    )
    options = {"loader_file_format": file_format} if file_format else {}
    pipeline.run(_dlt_source(server), **options)
    with pipeline.sql_client() as sql:
        return sum(
            sql.execute_sql(f"select count(*) from {table}")[0][0]
            for table in ("individual_appointments", "patients")
        )


def method_dlt(server: dict, workdir: Path) -> int:
    return _method_dlt(server, workdir, None)


def method_dlt_parquet(server: dict, workdir: Path) -> int:
    return _method_dlt(server, workdir, "parquet")


def child(method: str, server: dict, workdir: Path) -> None:
    """Run one method in this (fresh) process and print its figures as one JSON line."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ["DATA_DIR"] = str(workdir)
    run = globals()[f"method_{method}"]
    if method.startswith("dlt"):
        import dlt  # noqa: F401  (imports are not part of the timed load)
    elif method == "ours":
        import pipeline.warehouse.pages  # noqa: F401
        import pipeline.warehouse.raw_store  # noqa: F401
    cpu0 = time.process_time()
    started = time.perf_counter()
    rows = run(server, workdir)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": elapsed,
                "cpu_seconds": time.process_time() - cpu0,
                "peak_mb": max(usage.ru_maxrss, children.ru_maxrss) / 1024,
            }
        ),
        flush=True,
    )


# -- the driver -------------------------------------------------------------------------------------------


def _run_child(method: str, server: dict, server_pid: int, root: Path) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"{method}-", dir=root))
    server_cpu0 = _cpu_seconds(server_pid)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_ingest_throughput",
            "--child",
            method,
            "--server",
            json.dumps(server),
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
    )
    server_cpu = _cpu_seconds(server_pid) - server_cpu0
    shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{method} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_cpu_seconds"] = server_cpu
    return result


def _replay_misses(server: dict) -> int:
    import httpx

    return httpx.get(server["stats_url"]).json()["misses"]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> list:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=205_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per method (median reported)")
    parser.add_argument("--dlt-default-runs", type=int, default=1, help="dlt default is slow: fewer runs")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.appointments)
        return []
    if args.child:
        child(args.child, json.loads(args.server), Path(args.workdir))
        return []

    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    print(f"machine: {os.cpu_count()} cores, load average {_loadavg()} before start", flush=True)
    started = time.perf_counter()
    server_process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_ingest_throughput", "--serve", "--appointments",
         str(args.appointments)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    try:
        assert server_process.stdout is not None
        server = json.loads(server_process.stdout.readline())
        print(f"emulator ready in {time.perf_counter() - started:.1f} s at {server['url']}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as root:
            # One untimed run per family of URLs fills the replay cache (dlt and dlt_parquet ask alike).
            for family in dict.fromkeys("dlt_parquet" if m.startswith("dlt") else m for m in methods):
                warm = _run_child(family, server, server_process.pid, Path(root))
                print(
                    f"warm-up {family} (the emulator renders every page once; not counted): "
                    f"{warm['seconds']:.1f} s, server CPU {warm['server_cpu_seconds']:.1f} s",
                    flush=True,
                )
            results: dict[str, list[dict]] = {}
            for method in methods:
                runs = args.dlt_default_runs if method == "dlt" else args.runs
                for k in range(runs):
                    misses = _replay_misses(server)
                    result = _run_child(method, server, server_process.pid, Path(root))
                    result["misses"] = _replay_misses(server) - misses
                    result["loadavg"] = _loadavg()
                    results.setdefault(method, []).append(result)
                    print(
                        f"  {method} run {k + 1}/{runs}: {result['rows']:,} rows in "
                        f"{result['seconds']:.2f} s = {result['rows'] / result['seconds']:,.0f} rows/s, "
                        f"peak {result['peak_mb']:,.0f} MB, "
                        f"client CPU {result['cpu_seconds']:.1f} s, server CPU "
                        f"{result['server_cpu_seconds']:.1f} s, pages not replayed {result['misses']}, "
                        f"load {result['loadavg']}",
                        flush=True,
                    )
    finally:
        if server_process.stdin is not None:
            server_process.stdin.close()
        server_process.wait(timeout=30)
    return report(results)


def report(results: dict[str, list[dict]]) -> list:
    """The table (median rows/s per method, peak memory, server share, ratios against ours), then the
    issue's goals as figures for `make bench`."""
    from benchmarks.support import Figure
    from benchmarks.support import report as report_figure

    summary = {}
    for method, runs in results.items():
        rates = [r["rows"] / r["seconds"] for r in runs]
        median = statistics.median(rates)
        best = min(runs, key=lambda r: abs(r["rows"] / r["seconds"] - median))
        summary[method] = {
            "rows": best["rows"],
            "rate": median,
            "cpu_rate": statistics.median(r["rows"] / r["cpu_seconds"] for r in runs),
            "runs": len(runs),
            "peak_mb": max(r["peak_mb"] for r in runs),
            "server_share": best["server_cpu_seconds"] / (best["server_cpu_seconds"] + best["cpu_seconds"]),
        }
    ours = summary.get("ours", {}).get("rate")
    print()
    print(
        f"{'method':<12} {'rows':>9} {'rows/s':>9} {'rows/CPU-s':>10} {'runs':>4} {'peak MB':>8} "
        f"{'server CPU':>10} {'ours / it':>9}"
    )
    for method, s in summary.items():
        ratio = f"{ours / s['rate']:.2f}" if ours else "-"
        print(
            f"{method:<12} {s['rows']:>9,} {s['rate']:>9,.0f} {s['cpu_rate']:>10,.0f} {s['runs']:>4} "
            f"{s['peak_mb']:>8,.0f} "
            f"{s['server_share']:>9.0%} {ratio:>9}"
        )
    print(f"machine: {os.cpu_count()} cores, load average {_loadavg()} at the end")
    if not ours:
        return []
    mine = summary["ours"]
    figures = [
        Figure(
            "ingestion throughput",
            ours,
            50_000,
            "rows/s",
            "the issue's goal",
            ">= 50,000 rows/s",
            ours >= 50_000,
            f"{mine['rows']:,} rows stored with upsert and typed columns, median of {mine['runs']} runs; "
            f"{mine['cpu_rate']:,.0f} rows per CPU-second",
        ),
        Figure("ingestion peak memory", mine["peak_mb"], 1536, "MB", "the issue's bound", "<= 1,536 MB",
               mine["peak_mb"] <= 1536),
    ]  # fmt: skip
    if "floor" in summary:
        floor = summary["floor"]["rate"]
        figures.append(
            Figure("ingestion against the parse floor", ours, floor, "rows/s",
                   "sequential httpx + orjson of the same pages, nothing stored", "ratio >= 0.5 (within 2 x)",
                   ours >= floor / 2)
        )  # fmt: skip
    labels = {"dlt_parquet": "dlt rest_api, merge, parquet loader", "dlt": "dlt rest_api, merge, defaults"}
    dlt_methods = [m for m in labels if m in summary]
    best = max(dlt_methods, key=lambda m: summary[m]["rate"], default=None)
    for method in dlt_methods:
        rate = summary[method]["rate"]
        figures.append(
            Figure(f"ingestion against {method}", ours, rate, "rows/s", labels[method],
                   "ratio >= 7 (dlt at its best)" if method == best else "none (dlt's best is the goal)",
                   ours >= 7 * rate if method == best else None,
                   f"{method} peak {summary[method]['peak_mb']:,.0f} MB")
        )  # fmt: skip
    print()
    return [report_figure(f) for f in figures]


if __name__ == "__main__":
    main()
