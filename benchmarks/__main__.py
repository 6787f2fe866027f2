"""`python -m benchmarks [--only NAME ...] [-- ARGS]`: every `benchmarks/bench_*.py` in turn, then a summary.

`bench_backfill.py` (issue 6's UI backfill, most of an hour) runs only when named: `--only backfill`.

Each module's `main()` runs with its own defaults (ARGS after `--` go to it when exactly one `--only` is
given), its temporary files in a directory of its own, deleted after it unless it failed (10 M rows of
history are gigabytes). A module that is not in this checkout is skipped with a note; one that fails is
reported and the others still run. The exit status is non-zero only if a benchmark failed to run, not when
a figure misses its goal: a miss is a measurement, reported with its reason.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from unittest import mock

from benchmarks.support import Figure, machine_lines

# The issues' order: API efficiency, rate-limit floor, ingestion throughput, models, analysts' refresh, sink,
# daily run.
KNOWN = (
    "ingest_requests",
    "rate_floor",
    "ingest_throughput",
    "models",
    "analytics",
    "sink",
    "daily_run",
    "daemon",
    "cores",
)
# Run only when named with --only: the UI backfill through `dagster dev` takes most of an hour.
OPT_IN = ("backfill",)
HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [*[n for n in KNOWN if n in found], *[n for n in found if n not in KNOWN]]


def run_one(name: str, argv: list[str]) -> tuple[list[Figure], bool]:
    """Import `benchmarks.bench_<name>` and call its `main()` with `argv` as its command line."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    saved = sys.argv
    sys.argv = [f"benchmarks/bench_{name}.py", *argv]
    try:
        result = module.main()
    finally:
        sys.argv = saved
    return [f for f in (result or []) if isinstance(f, Figure)], True


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only bench_NAME (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="after --: arguments for the one --only")
    options = parser.parse_args()
    extra = [a for a in options.args if a != "--"]
    if extra and len(options.only) != 1:
        parser.error("arguments after -- need exactly one --only NAME")
    present = available()
    if options.list:
        notes = {n: "  (not in this checkout)" for n in (*KNOWN, *OPT_IN) if n not in present}
        notes |= {n: "  (only with --only)" for n in OPT_IN if n in present}
        print("\n".join(f"{n}{notes.get(n, '')}" for n in (*KNOWN, *OPT_IN)))
        return 0
    wanted = [n.removeprefix("bench_").removesuffix(".py") for n in options.only] or [
        *KNOWN,
        *[n for n in present if n not in KNOWN and n not in OPT_IN],
    ]

    print("\n".join(machine_lines()), flush=True)
    figures: list[Figure] = []
    failed: list[str] = []
    for name in wanted:
        print(f"\n=== bench_{name} ===", flush=True)
        if name not in present:
            print(f"skipped: benchmarks/bench_{name}.py is not in this checkout", flush=True)
            continue
        started = time.perf_counter()
        scratch = tempfile.mkdtemp(prefix=f"bench_{name}_")
        try:  # the module's temporary files go to `scratch`, and its child processes' too
            with mock.patch.object(tempfile, "tempdir", scratch), mock.patch.dict(os.environ, TMPDIR=scratch):
                found, _ = run_one(name, extra)
            figures.extend(found)
        except (Exception, SystemExit) as error:
            if not (isinstance(error, SystemExit) and error.code in (None, 0)):
                traceback.print_exc()
                failed.append(name)
        if name in failed:
            print(f"its temporary files are kept in {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"(bench_{name}: {time.perf_counter() - started:.0f} s)", flush=True)

    print("\n=== summary ===")
    print("\n".join(machine_lines()[:1]))
    for figure in figures:
        print(figure.line())
    misses = [f.name for f in figures if f.passed is False]
    print(f"{len(figures)} figures: {sum(f.passed is True for f in figures)} PASS, {len(misses)} MISS"
          + (f" ({', '.join(misses)})" if misses else "")
          + (f"; failed to run: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
