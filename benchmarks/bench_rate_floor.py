"""Benchmark: the rate-limit floor, a 30-day backfill of one mapping against a rate-limited Cliniko emulator.

Not a test. Starts the sandbox in its own process with one large clinic account (six active locations in six
time zones, ~100 thousand appointments) and Cliniko's rate, 200 requests a minute, scaled to a shorter window
(default 100 requests per 30 s: the same 3.3 requests/s, half the burst) so the run takes minutes. Then runs
the real assets, `cliniko-reviews run --date D --date-to D+29 --mapping M`, as its own process with the
client's shared limiter set to the same window (`CLINIKO_RATE_LIMIT_PER_MINUTE`,
`CLINIKO_RATE_LIMIT_WINDOW_SECONDS`), and reads the emulator's request log:

- the time from the first to the last request, against the floor as the issue defines it: requests / allowed
  rate, N x W / L. Goal: at most 1.05 x the floor. A client that spends the first window's burst at once
  can beat it by up to one window: the note gives that bound too, ((N - 1) // L) x W, the least time in
  which N requests fit when no window of W seconds may hold more than L of them.
- the 429s the emulator answered. Goal: 0.
- where the time went: the partitions' Cliniko phases (first to last request of each) summed, and the CPU per
  partition against the API budget per partition (below it, the run waits on the limiter, not on itself).

Birdeye's own limit (10 posts/s by default) is lifted here: with ~250 review requests a day the sink would
take 25 s of each partition, and this figure is about Cliniko's floor.

    uv run python benchmarks/bench_rate_floor.py [--limit 100] [--window 30] [--days 30]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

from benchmarks.support import (
    Figure,
    create_mappings,
    environment,
    read_request_log,
    report,
    run_command,
    sandbox,
)

MAPPING = "800000001"


def request_phases(requests: list[dict]) -> float:
    """Seconds from each partition's first Cliniko request (its `/businesses`) to its last, summed: the time
    the run spent inside the Cliniko phase of its partitions, without what came between them."""
    total, start, last = 0.0, None, None
    for request in sorted(requests, key=lambda r: r["epoch"]):
        if request["path"].endswith("/businesses"):
            if start is not None:
                total += last - start
            start = request["epoch"]
        last = request["epoch"]
    return total + (last - start if start is not None else 0.0)


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=100, help="requests per window (Cliniko: 200)")
    parser.add_argument("--window", type=float, default=30.0, help="window in seconds (Cliniko: 60)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--appointments", type=int, default=100_000, help="in the clinic account")
    parser.add_argument(
        "--birdeye-rate",
        type=float,
        default=1000.0,
        help="Birdeye posts/s (product default 10: ~250 review requests a day would then take 25 s of the "
        "partition, which measures Birdeye's limit, not Cliniko's)",
    )
    parser.add_argument("--dir", type=Path, help="keep the data here (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="bench_rate_floor_"))
    workdir.mkdir(parents=True, exist_ok=True)
    request_log = workdir / "cliniko_requests.jsonl"
    request_log.unlink(missing_ok=True)
    last = date.today() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    options = [
        "--size=demo",
        "--accounts=1",
        f"--appointments={args.appointments}",
        f"--rate-limit={args.limit}",
        f"--rate-window={args.window}",
        f"--request-log={request_log}",
    ]
    with sandbox(workdir, *options) as box:
        data_dir = workdir / "data"
        names = box.accounts[0]["businesses"]
        create_mappings(data_dir, box, [(MAPPING, 0, ", ".join(names))])
        env = environment(
            data_dir,
            box,
            CLINIKO_RATE_LIMIT_PER_MINUTE=str(args.limit),
            CLINIKO_RATE_LIMIT_WINDOW_SECONDS=str(args.window),
            BIRDEYE_RATE_LIMIT_PER_SECOND=str(args.birdeye_rate),
        )
        print(
            f"backfill {first} .. {last} of one mapping naming {len(names)} locations; "
            f"limit {args.limit} requests per {args.window:g} s",
            flush=True,
        )
        run = run_command(
            ["run", f"--date={first}", f"--date-to={last}", f"--mapping={MAPPING}"],
            env,
            workdir / "backfill.log",
        )
        if run.status != 0:
            raise SystemExit(f"the backfill failed (exit {run.status}); see {workdir / 'backfill.log'}")
    requests = read_request_log(request_log)
    times = sorted(r["epoch"] for r in requests)
    n = len(times)
    if n < 2:
        raise SystemExit(f"the backfill made {n} Cliniko request(s): nothing to time; see {request_log}")
    span = times[-1] - times[0]
    floor = n * args.window / args.limit
    burst_bound = ((n - 1) // args.limit) * args.window
    burst_ratio = f"ratio {span / burst_bound:.2f}" if burst_bound else "all in the first window"
    throttled = sum(r["status"] == 429 for r in requests)
    phases = request_phases(requests)
    print(
        f"{n} requests ({n / args.days:.1f} per partition) from first to last in {span:.1f} s; "
        f"whole command {run.wall:.1f} s wall, {run.cpu:.1f} s CPU",
        flush=True,
    )
    return [
        report(
            Figure(
                "rate-limit floor",
                span,
                floor,
                "s",
                f"floor N/rate = N*W/L for N={n}, L={args.limit}, W={args.window:g} s",
                "ratio <= 1.05",
                span <= 1.05 * floor,
                f"with the first window's burst spent at once, N requests fit in ((N-1)//L)*W = "
                f"{burst_bound:.0f} s ({burst_ratio}); the partitions' Cliniko phases "
                f"(first to last request) add up to {phases:.1f} s; CPU per partition "
                f"{run.cpu / args.days:.1f} s against {floor / args.days:.1f} s of API budget per partition: "
                "below it, the run waits on the limiter, not on its own work",
            )
        ),
        report(
            Figure(
                "429s met in the backfill",
                throttled,
                0,
                "responses",
                "none allowed",
                "0",
                throttled == 0,
            )
        ),
    ]


if __name__ == "__main__":
    main()
