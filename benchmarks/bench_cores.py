"""Benchmark: do more cores help? The same day of 300 mappings over 40 integration groups, run by
`cliniko-reviews run --workers 1` and by `--workers 2`, each in a data directory of its own with the same
registry, against one sandbox (Cliniko's 200 requests/minute per key enforced).

Not a test. Each integration group has its own warehouse file, so two workers never queue on each other's
writes; what is left between them is the machine (2 cores shared with the sandbox's emulators) and the
per-key rate of a group's Cliniko key. Prints the speed-up (goal: >= 1.7) and, for context, the CPU the
sandbox used meanwhile: on a 2-core machine the emulators' share is CPU the workers do not have.

    uv run python benchmarks/bench_cores.py [--mappings 300] [--accounts 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

from benchmarks.support import (
    Figure,
    create_mappings,
    environment,
    process_tree,
    report,
    run_command,
    sandbox,
)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of process `pid` and its descendants (the sandbox), from /proc."""
    total = 0
    for each in process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> list[Figure]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mappings", type=int, default=300)
    parser.add_argument("--accounts", type=int, default=40, help="Cliniko API keys (integration groups)")
    parser.add_argument("--businesses", type=int, default=5, help="Cliniko businesses per account")
    parser.add_argument("--appointments", type=int, default=2000, help="per account over 21 days")
    parser.add_argument("--dir", type=Path, help="keep the data here (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="bench_cores_"))
    workdir.mkdir(parents=True, exist_ok=True)
    day = date.today() - timedelta(days=1)
    # Each group posts with its own Birdeye key, as clinics do: one key shared by the 40 groups would make
    # its rate (10 requests/s, shared by every process) the bound instead of the cores.
    birdeye_keys = {account: f"bench-birdeye-key-{account:04d}" for account in range(args.accounts)}
    options = [
        *(f"--birdeye-key={key}" for key in birdeye_keys.values()),
        "--size=tiny",
        f"--accounts={args.accounts}",
        f"--businesses={args.businesses}",
        f"--appointments={args.appointments}",
    ]
    results = {}
    with sandbox(workdir, *options) as box:
        accounts = len(box.accounts)
        mappings = []
        for i in range(args.mappings):
            names = box.accounts[i % accounts]["businesses"]
            mappings.append((str(700_000_000 + i), i % accounts, names[(i // accounts) % len(names)]))
        print(f"{args.mappings} mappings over {accounts} groups; {day} with 1 and 2 workers", flush=True)
        for workers in (1, 2):
            data_dir = workdir / f"data_{workers}"
            create_mappings(data_dir, box, mappings, birdeye_keys)
            env = environment(data_dir, box)
            sandbox_cpu = _cpu_seconds(box.process.pid)
            run = run_command(
                ["run", f"--date={day}", f"--workers={workers}"], env, workdir / f"workers_{workers}.log"
            )
            if run.status != 0:
                raise SystemExit(f"the run with {workers} worker(s) failed; see {workdir}/workers_*.log")
            results[workers] = (run, _cpu_seconds(box.process.pid) - sandbox_cpu)
            print(
                f"  --workers {workers}: {run.wall:.1f} s wall, {run.cpu:.1f} s CPU (sandbox "
                f"{results[workers][1]:.1f} s CPU)",
                flush=True,
            )
    (one, one_sandbox), (two, two_sandbox) = results[1], results[2]
    speedup = one.wall / two.wall
    return [
        report(
            Figure(
                f"cores help: {args.mappings} mappings, 2 workers against 1",
                two.wall,
                one.wall,
                "s",
                "--workers 1, same day, same registry",
                "speed-up >= 1.7 (ratio <= 0.59)",
                speedup >= 1.7,
                f"speed-up {speedup:.2f}; CPU per partition {one.cpu / args.mappings:.2f} s (1 worker) and "
                f"{two.cpu / args.mappings:.2f} s (2 workers); the sandbox's emulators used "
                f"{one_sandbox / one.wall:.0%} and {two_sandbox / two.wall:.0%} of a core meanwhile",
            )
        )
    ]


if __name__ == "__main__":
    main()
