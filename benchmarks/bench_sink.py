"""Sink throughput against the Birdeye emulator with added latency: `uv run python benchmarks/bench_sink.py`.

Posts 2,000 review requests through `post_review_requests` (ledger included) to an emulator running in its own
process with 20 ms of latency per request, and prints the throughput against the bound
min(concurrency / latency, rate limit) and against posting one by one (concurrency 1). Also compares batch
sizes, since every batch costs one short DuckDB connection and a SIGKILL loses at most one batch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.support import Figure, report
from pipeline.birdeye import Accepted, BirdeyeClient
from pipeline.sandbox.birdeye_emulator import DEFAULT_API_KEY
from pipeline.sink import post_review_requests
from pipeline.sink.post import check_in_for_row
from pipeline.warehouse import connect
from pipeline.warehouse.slices import ensure_tables


def rows(n: int, business_number: str) -> list[dict]:
    return [
        {
            "business_number": business_number,
            "appointment_id": str(i),
            "partition_date": "2026-11-24",
            "target_date": "2026-11-24",
            "group_id": 1,
            "patient_id": str(i),
            "channels": "sms,email",
            "sms_phone": "+61412345678",
            "email": f"p{i}@example.com",
            "patient_name": f"Patient {i}",
            "location_name": "Fitzroy",
        }
        for i in range(n)
    ]


def claim(warehouse: Path, batch: list[dict]) -> None:
    """The rows as the models leave them: claimed, `pending` in the ledger (sql/sink/claims.sql)."""
    with connect(warehouse) as con:
        ensure_tables(con)
        con.execute(
            "insert into sink.review_request_ledger (business_number, appointment_id, partition_date, "
            "target_date, group_id, patient_id, channels, status, updated_at) select unnest($bn), "
            "unnest($ids), date '2026-11-24', date '2026-11-24', 1, unnest($patients), 'sms,email', "
            "'pending', now()",
            {
                "bn": [r["business_number"] for r in batch],
                "ids": [r["appointment_id"] for r in batch],
                "patients": [r["patient_id"] for r in batch],
            },
        )


def run(base_url: str, workdir: Path, label: str, n: int, **options) -> float:
    """Post n freshly claimed rows of a fresh warehouse; returns requests per second."""
    warehouse = workdir / f"{label}.duckdb"
    batch = rows(n, label)
    claim(warehouse, batch)
    started = time.perf_counter()
    counts = post_review_requests(
        warehouse, batch, api_key=DEFAULT_API_KEY, base_url=base_url, rate_limit_dir=workdir, **options
    )
    elapsed = time.perf_counter() - started
    if counts["sent"] != n:
        raise SystemExit(f"{label}: expected {n} sent, got {counts}")
    return n / elapsed


def raw_client(base_url: str, n: int, concurrency: int) -> float:
    """The same POSTs from `concurrency` threads, no ledger, no rate limit: the HTTP stack's own ceiling."""
    check_ins = [check_in_for_row(row) for row in rows(n, "raw")]
    with BirdeyeClient(DEFAULT_API_KEY, base_url=base_url, max_connections=concurrency) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(client.check_in, check_ins))
        elapsed = time.perf_counter() - started
    refused = Counter(repr(o)[:160] for o in outcomes if not isinstance(o, Accepted))
    if refused:
        total = sum(refused.values())
        raise SystemExit(f"raw client: {total} of {n} not accepted: {dict(refused.most_common(3))}")
    return n / elapsed


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--one-by-one-requests", type=int, default=300, help="sequential posting is slow")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1000.0, help="client-side limit, requests per second")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sandbox.birdeye_emulator", "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = emulator.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            common = {"rate_per_second": args.rate, "burst": args.concurrency}
            bound = min(args.concurrency / latency, args.rate)
            print(f"emulator {base_url}, {args.latency_ms:.0f} ms latency; {args.requests} requests")
            print(f"bound min(concurrency/latency, rate) = "
                  f"min({args.concurrency}/{latency}, {args.rate:.0f}) = {bound:.0f}/s")  # fmt: skip
            raw = raw_client(base_url, args.requests, args.concurrency)
            print(f"raw client, {args.concurrency} threads, no ledger: {raw:7.1f}/s = "
                  f"{raw / bound:5.1%} of the bound (this machine's HTTP ceiling)")  # fmt: skip
            serial = run(base_url, workdir, "serial", args.one_by_one_requests, concurrency=1, **common)
            print(f"one by one (concurrency 1, {args.one_by_one_requests} requests): {serial:7.1f}/s "
                  f"(bound {min(1 / latency, args.rate):.0f}/s)")  # fmt: skip
            rates = {}
            for batch in (None, args.concurrency, 2 * args.concurrency, 8 * args.concurrency):
                label = "adaptive" if batch is None else f"batch{batch}"
                rate = run(base_url, workdir, label, args.requests, concurrency=args.concurrency,
                           batch_size=batch, **common)  # fmt: skip
                rates[label] = rate
                print(f"concurrency {args.concurrency}, batch {label:>9}: {rate:7.1f}/s = "
                      f"{rate / bound:5.1%} of the bound, {rate / serial:5.1f}x one by one")  # fmt: skip
            limited = min(args.rate, 100.0)
            limited_requests = min(args.requests, 500)
            rate = run(base_url, workdir, "limited", limited_requests, concurrency=args.concurrency,
                       rate_per_second=limited, burst=1)  # fmt: skip
            print(f"rate-limited to {limited:.0f}/s ({limited_requests} requests): {rate:7.1f}/s = "
                  f"{rate / limited:5.1%} of the limit")  # fmt: skip
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    adaptive = rates["adaptive"]
    return [
        report(Figure("sink throughput against the bound", adaptive, bound, "requests/s",
                      f"min(concurrency/latency, rate): min({args.concurrency}/{latency:g}s, {args.rate:g})",
                      "ratio >= 0.8", adaptive >= 0.8 * bound,
                      f"the HTTP client alone reached {raw:.0f}/s")),
        report(Figure("sink throughput against one-by-one posting", adaptive, serial, "requests/s",
                      "concurrency 1, same ledger", f"ratio >= {args.concurrency / 2:g}",
                      adaptive >= args.concurrency / 2 * serial)),
        report(Figure("sink under a rate limit", rate, limited, "requests/s", "the configured limit",
                      "ratio >= 0.9", rate >= 0.9 * limited)),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
