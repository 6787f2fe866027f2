"""What the benchmarks share: the figure line, the machine, the sandbox as a process, a registry of mappings.

Every benchmark reports through `report()` so that `make bench` prints one uniform line per figure:

    FIGURE rate-limit floor: ours 61.2 s | baseline 60.0 s (floor) | ratio 1.02 | goal ratio <= 1.05 | PASS
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figure:
    """One measured figure: ours against a baseline from the same run, and whether it meets its goal.

    `passed` is None for a figure without a goal (reported for context, never PASS or MISS).
    """

    name: str
    ours: float
    baseline: float
    unit: str
    baseline_label: str
    goal: str
    passed: bool | None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")

    @property
    def verdict(self) -> str:
        return "info" if self.passed is None else ("PASS" if self.passed else "MISS")

    def line(self) -> str:
        text = (
            f"FIGURE {self.name}: ours {_number(self.ours)} {self.unit} | "
            f"baseline {_number(self.baseline)} {self.unit} ({self.baseline_label}) | "
            f"ratio {f'{self.ratio:.3g}' if self.baseline else 'n/a'} | goal {self.goal} | {self.verdict}"
        )
        return f"{text}\n       {self.note}" if self.note else text


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def report(figure: Figure) -> Figure:
    """Print the figure's line now (a long benchmark shows results as they come) and return it."""
    print(figure.line(), flush=True)
    return figure


def machine_lines() -> list[str]:
    """CPU model, cores, load average, Python and library versions: figures mean little without them."""
    import dagster
    import duckdb

    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024**2:.1f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"machine: {model}, {os.cpu_count()} cores{memory}, load average {load} (1, 5, 15 min)",
        f"software: Python {platform.python_version()}, duckdb {duckdb.__version__}, "
        f"dagster {dagster.__version__}, {platform.system()} {platform.release()}",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Sandbox:
    cliniko_url: str
    birdeye_url: str
    birdeye_key: str
    accounts: list[dict]
    process: subprocess.Popen


@contextmanager
def sandbox(workdir: Path, *options: str, birdeye_key: str = "bench-birdeye-key-0001") -> Iterator[Sandbox]:
    """`cliniko-reviews sandbox` in its own process on free ports (the emulators' CPU is not ours to count);
    waits for its manifest, yields its URLs and accounts, and stops it on the way out."""
    manifest = workdir / "sandbox.json"
    manifest.unlink(missing_ok=True)
    cliniko_port, birdeye_port = free_port(), free_port()
    log = (workdir / "sandbox.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "sandbox",
            f"--cliniko-port={cliniko_port}",
            f"--birdeye-port={birdeye_port}",
            f"--manifest={manifest}",
            f"--birdeye-key={birdeye_key}",
            *options,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )
    try:
        deadline = time.monotonic() + 300
        while not manifest.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start; see {workdir / 'sandbox.log'}")
            time.sleep(0.1)
        body = json.loads(manifest.read_text())
        yield Sandbox(
            body["cliniko_base_url"], body["birdeye_base_url"], birdeye_key, body["cliniko_accounts"], process
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def environment(data_dir: Path, box: Sandbox, **extra: str) -> dict[str, str]:
    """The environment of a run against the sandbox, with its own DATA_DIR and DAGSTER_HOME."""
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(home),
        "CLINIKO_BASE_URL": box.cliniko_url,
        "BIRDEYE_BASE_URL": box.birdeye_url,
        **extra,
    }


def create_mappings(
    data_dir: Path,
    box: Sandbox,
    mappings: Sequence[tuple[str, int, str]],
    birdeye_keys: Mapping[int, str] | None = None,
) -> None:
    """A registry under `data_dir` with one group per Cliniko account used and the given mappings.

    `mappings` holds (business number, account index, comma-separated Cliniko business names).
    `birdeye_keys`: each group's own Birdeye key by account index (the sandbox must accept them); by default
    every group posts with the sandbox's one key, whose rate they then share.
    """
    from dataclasses import replace

    from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
    from pipeline.registry.store import RegistryStore
    from pipeline.settings import load_settings

    store = RegistryStore.open(replace(load_settings(), data_dir=data_dir))
    groups: dict[int, int] = {}
    for business_number, account, names in mappings:
        if account not in groups:
            group, _ = store.create_group(
                str(900_000_000 + account),
                118,
                [
                    PropertyInput("cliniko.api.key", box.accounts[account]["api_key"], True, "p0"),
                    PropertyInput(
                        "birdeye.api.key", (birdeye_keys or {}).get(account, box.birdeye_key), True, "p1"
                    ),
                ],
                [TriggerInput(129, 1, None, "t0")],
            )
            groups[account] = group["groupId"]
        store.create_mapping(
            MappingInput(
                business_number, groups[account], [PropertyInput("cliniko.location.name", names, False, "p")]
            )
        )


@dataclass(frozen=True)
class Command:
    """What one `cliniko-reviews` process cost. CPU seconds are reported beside wall time because the
    benchmark machine is shared: wall time there measures the neighbours as much as us."""

    wall: float
    cpu: float
    status: int
    peak_rss_mb: float


def run_command(args: Sequence[str], env: dict[str, str], log_path: Path) -> Command:
    """Run `cliniko-reviews ARGS` as its own process and measure it.

    Peak memory is the largest `VmHWM` of the process and its workers, sampled from /proc while it runs.
    (`ru_maxrss` would not do: Linux carries a process's high-water mark across `exec`, so a child of a large
    benchmark process reports the parent's size.)
    """
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        peak = PeakMemory(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        peak_kb = peak.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Command(elapsed, usage.ru_utime + usage.ru_stime, process.returncode, peak_kb / 1024)


class PeakMemory:
    """The largest `VmHWM` (kB) among processes and their descendants, polled every 0.2 s in a thread."""

    def __init__(self, *pids: int) -> None:
        self.pids, self.peak_kb = pids, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak_kb

    def _poll(self) -> None:
        while not self._done.wait(0.2):
            for pid in (p for root in self.pids for p in process_tree(root)):
                self.peak_kb = max(self.peak_kb, _vm_hwm_kb(pid))


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (Linux)."""
    pids = [pid]
    for parent in pids:
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                pids += map(int, Path(f"/proc/{parent}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return pids


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def read_request_log(path: Path) -> list[dict]:
    """The emulator's request log: one JSON object per request, in arrival order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
