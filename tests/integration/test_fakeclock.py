"""The shared fake clock (tests/fakeclock.py) with real processes: Python, SQLite, DuckDB, grandchildren and
a real `dagster-daemon run` whose sensor keeps ticking, and whose runs keep succeeding, across jumps of days.

Every fake time a child reports is checked against `clock.now()` read just before and just after asking it:
the test process computes fake time from the same real clock and the same whole-second offset, so the
child's answer must fall inside that bracket, jump or no jump.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorTick, TickStatus
from fakeclock import SHM_DIR, FakeClock, require_faketime

START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
EPSILON = 0.002  # float rounding of timestamps between processes, seconds
PER_PID_OBJECT = re.compile(r"^(?:faketime_shm_|sem\.faketime_sem_)\d+$")

# A child that answers one named probe per line of stdin with one line of JSON: it stays running, so the
# test can jump the clock under it.
CHILD = r"""
import ctypes, datetime, json, queue, sqlite3, subprocess, sys, threading, time

import duckdb
import grpc

def probe():
    return {"time": time.time(), "now": datetime.datetime.now(datetime.UTC).timestamp(),
            "monotonic": time.monotonic()}

def timed(wait):
    start = time.monotonic()
    wait()
    return time.monotonic() - start

def queue_get():
    try:
        queue.Queue().get(timeout=0.2)
    except queue.Empty:
        pass

def monotonic_condition_wait():
    # pthread_cond_timedwait on a CLOCK_MONOTONIC condition variable, as Python's GIL waits
    libc = ctypes.CDLL(None)
    attr, cond, mutex = (ctypes.create_string_buffer(64) for _ in range(3))
    libc.pthread_condattr_init(attr)
    libc.pthread_condattr_setclock(attr, time.CLOCK_MONOTONIC)
    libc.pthread_cond_init(cond, attr)
    libc.pthread_mutex_init(mutex, None)
    libc.pthread_mutex_lock(mutex)
    deadline = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 200_000_000
    timespec = (ctypes.c_long * 2)(deadline // 1_000_000_000, deadline % 1_000_000_000)
    return libc.pthread_cond_timedwait(cond, mutex, timespec)

def grpc_deadline():
    # a call that waits for a server that never comes: it ends with its 0.2 s deadline
    channel = grpc.insecure_channel("unix:/nonexistent/fakeclock.sock")
    try:
        channel.unary_unary("/fakeclock/Probe")(b"", timeout=0.2, wait_for_ready=True)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
    finally:
        channel.close()

def waits():
    return {
        "time.sleep": timed(lambda: time.sleep(0.2)),
        "Event.wait": timed(lambda: threading.Event().wait(0.2)),
        "Queue.get": timed(queue_get),
        "pthread_cond_timedwait": timed(monotonic_condition_wait),
        "grpc deadline": timed(grpc_deadline),
    }

DUCKDB = duckdb.connect()

def databases():
    sqlite_now = sqlite3.connect(":memory:").execute("select current_timestamp").fetchone()[0]
    duck_now, duck_now_fn = DUCKDB.execute("select current_timestamp, now()").fetchone()
    return {
        "sqlite": datetime.datetime.fromisoformat(sqlite_now).replace(tzinfo=datetime.UTC).timestamp(),
        "duckdb current_timestamp": duck_now.timestamp(),
        "duckdb now()": duck_now_fn.timestamp(),
    }

def grandchildren():
    python = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                            capture_output=True, text=True, check=True)
    shell = subprocess.run(["sh", "-c", "date -u +%s.%N"], capture_output=True, text=True, check=True)
    return {"python": float(python.stdout), "sh -c date": float(shell.stdout)}

for line in sys.stdin:
    print(json.dumps(globals()[line.strip()]()), flush=True)
"""


class Child:
    def __init__(self, clock: FakeClock) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            env=clock.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, probe: str) -> dict[str, float]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(probe + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"child exited with {self.process.wait()}"
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        assert self.process.wait(timeout=10) == 0


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def per_pid_objects() -> set[str]:
    return {entry.name for entry in SHM_DIR.iterdir() if PER_PID_OBJECT.match(entry.name)}


@pytest.fixture
def clock(tmp_path: Path) -> Iterator[FakeClock]:
    before = per_pid_objects()
    with FakeClock(tmp_path / "clock", START) as clock:
        yield clock
        deadline = time.monotonic() + 10
        while clock.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert clock.processes() == [], "processes started with the fake clock outlived the test"
    assert not any(path.exists() for path in clock.shared_objects)
    assert per_pid_objects() - before == set(), "libfaketime left per-process /dev/shm objects"


@pytest.fixture
def child(clock: FakeClock) -> Iterator[Child]:
    child = Child(clock)
    try:
        yield child
    finally:
        child.close()


def assert_fake_now(clock: FakeClock, child: Child, probe: str) -> dict[str, float]:
    """Asks the child for `probe`; every time it reports must lie between clock.now() before and after."""
    before, real_before = clock.now().timestamp(), time.monotonic()
    answer = child.ask(probe)
    after, real_after = clock.now().timestamp(), time.monotonic()
    for name, value in answer.items():
        if name == "monotonic":
            assert real_before - EPSILON <= value <= real_after + EPSILON, "monotonic clock is not real"
        else:
            low = int(before) if name == "sqlite" else before  # SQLite keeps whole seconds
            assert low - EPSILON <= value <= after + EPSILON, (
                f"{name}: {iso(value)} is not between {iso(before)} and {iso(after)}"
            )
    return answer


def test_the_clock_only_moves_forward(tmp_path: Path) -> None:
    assert require_faketime().is_file()
    with FakeClock(tmp_path / "clock", START) as clock:
        # A jump returns once every process can see it (up to a second later): allow 3 s of slack.
        assert START <= clock.now() < START + timedelta(seconds=3)
        assert clock.clock_file.read_text().strip().lstrip("+-").isdigit()
        clock.advance(timedelta(days=2))
        assert START + timedelta(days=2) <= clock.now() < START + timedelta(days=2, seconds=3)
        target = START + timedelta(days=9, hours=3)
        clock.set(target)
        assert target <= clock.now() < target + timedelta(seconds=3)
        with pytest.raises(ValueError):
            clock.set(START + timedelta(days=1))
        with pytest.raises(ValueError):
            clock.advance(timedelta(seconds=-1))
        assert target <= clock.now() < target + timedelta(seconds=3)


def test_python_sees_the_fake_time_and_a_running_child_sees_each_jump(clock: FakeClock, child: Child) -> None:
    first = assert_fake_now(clock, child, "probe")
    assert datetime.fromtimestamp(first["now"], UTC).date() == START.date()
    clock.advance(timedelta(days=3, hours=4))
    jumped = assert_fake_now(clock, child, "probe")  # asked right after the jump
    assert jumped["time"] - first["time"] >= timedelta(days=3, hours=4).total_seconds()
    clock.set(START + timedelta(days=40))
    assert_fake_now(clock, child, "probe")


def test_sleeps_and_timed_waits_take_real_time_also_after_a_jump(clock: FakeClock, child: Child) -> None:
    for moment in ("at the start", "right after a jump of 5 days"):
        if moment != "at the start":
            clock.advance(timedelta(days=5))
        waits = child.ask("waits")
        print(f"\n{moment}: " + ", ".join(f"{name} {seconds:.3f}s" for name, seconds in waits.items()))
        for name, seconds in waits.items():
            assert 0.19 <= seconds < 0.6, f"{name} waited {seconds:.3f}s of real time {moment}, not 0.2s"
    assert_fake_now(clock, child, "probe")


def test_sqlite_and_duckdb_see_the_fake_time(clock: FakeClock, child: Child) -> None:
    answer = assert_fake_now(clock, child, "databases")
    assert datetime.fromtimestamp(answer["duckdb now()"], UTC).date() == START.date()
    clock.advance(timedelta(days=2, hours=1))
    answer = assert_fake_now(clock, child, "databases")  # the same DuckDB connection, after the jump
    assert datetime.fromtimestamp(answer["sqlite"], UTC).date() == (START + timedelta(days=2)).date()


def test_grandchildren_see_the_same_fake_time(clock: FakeClock, child: Child) -> None:
    assert_fake_now(clock, child, "grandchildren")
    clock.advance(timedelta(days=1))
    assert_fake_now(clock, child, "grandchildren")


SENSOR_CODE = """
from datetime import UTC, datetime

import dagster as dg


@dg.op
def stamp() -> str:
    return datetime.now(UTC).isoformat()


@dg.job(executor_def=dg.in_process_executor)  # as the project's jobs run
def tick_job():
    stamp()


@dg.sensor(job=tick_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def minute_sensor():
    return dg.RunRequest(run_key=datetime.now(UTC).strftime(\"%Y-%m-%dT%H:%M\"))


defs = dg.Definitions(jobs=[tick_job], sensors=[minute_sensor])
"""

# `local_startup_timeout`: the daemon waits for a code server it starts with a deadline in time.time(), that
# is fake time; a jump while one starts (the daemon starts a new one after every jump, its workspace being
# "older than 60 s") fails the code location ("Timed out waiting for gRPC server to start") until the next
# reload, 60 s later. Ten years outlasts any jump.
DAGSTER_YAML = """\
telemetry:
  enabled: false
code_servers:
  local_startup_timeout: 315360000
"""


def test_dagster_daemon_keeps_ticking_and_running_across_jumps(clock: FakeClock, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    code = tmp_path / "sensor_code.py"
    code.write_text(SENSOR_CODE)
    log_path = tmp_path / "daemon.log"
    jumps: list[tuple[str, datetime | timedelta | None]] = [
        ("daemon start", None),
        ("+5 hours", timedelta(hours=5)),
        ("+2 days", timedelta(days=2)),
        ("set: 6 days 3 hours after the start", START + timedelta(days=6, hours=3)),
    ]
    instance = dg.DagsterInstance.from_config(str(home))
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-f", str(code)],
            cwd=tmp_path,
            env=clock.env({**os.environ, "DAGSTER_HOME": str(home)}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    timings: list[tuple[str, float, float]] = []
    try:
        for label, jump in jumps:
            jumped_real, jumped_fake = time.time(), clock.now().timestamp()
            if isinstance(jump, timedelta):
                clock.advance(jump)
            elif isinstance(jump, datetime):
                clock.set(jump)
            if jump is not None:  # processes may act on the new time as soon as it is written
                jumped_real, jumped_fake = (
                    clock.jumped_at.timestamp() - clock.offset.total_seconds(),
                    (clock.jumped_at.timestamp()),
                )
            run = wait_for_successful_run_started_after(jumped_fake, instance, daemon, log_path)
            fake_now, offset = clock.now().timestamp(), clock.offset.total_seconds()
            run_key = run.dagster_run.tags["dagster/run_key"]
            tick = successful_sensor_tick_for(instance, run_key)
            step = instance.all_logs(run.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            assert len(step) == 1 and run.end_time is not None
            # sensor tick (daemon), run key (the sensor's code, in the code server), run start and step
            # success (run worker): every level saw the fake time, after the jump and no later than now
            moments = {
                "tick": tick.timestamp,
                "run key": datetime.strptime(run_key, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp(),
                "run start": run.start_time,
                "step success": step[0].timestamp,
            }
            for name, moment in moments.items():
                low = jumped_fake - jumped_fake % 60 if name == "run key" else jumped_fake
                assert low - EPSILON <= moment <= fake_now + EPSILON, (
                    f"{label}: {name} at {iso(moment)}, not between the jump ({iso(jumped_fake)}) "
                    f"and now ({iso(fake_now)})"
                )
            timings.append(
                (label, tick.timestamp - offset - jumped_real, run.end_time - offset - jumped_real)
            )
        assert [t for t in all_sensor_ticks(instance) if t.status == TickStatus.FAILURE] == []
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in instance.get_run_records())
    finally:
        stop_process_group(daemon)
        instance.dispose()
        print_daemon_report(log_path, timings)


def wait_for_successful_run_started_after(
    moment: float, instance: dg.DagsterInstance, daemon: subprocess.Popen, log_path: Path
) -> dg.RunRecord:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"dagster-daemon exited:\n{log_path.read_text()}"
        records = instance.get_run_records()
        failed = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
        assert failed == [], f"run failed:\n{log_path.read_text()}"
        done = [
            r
            for r in records
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS and (r.start_time or 0) >= moment
        ]
        if done:
            return min(done, key=lambda r: r.start_time or 0)
        time.sleep(0.1)
    raise AssertionError(f"no successful run within 60 s of the jump:\n{log_path.read_text()}")


def all_sensor_ticks(instance: dg.DagsterInstance) -> list[InstigatorTick]:
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    assert len(states) == 1
    return list(instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=100))


def successful_sensor_tick_for(instance: dg.DagsterInstance, run_key: str) -> InstigatorTick:
    (tick,) = [
        t for t in all_sensor_ticks(instance) if t.status == TickStatus.SUCCESS and run_key in t.run_keys
    ]
    return tick


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group (code servers and run workers are in it), SIGKILL after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)


def print_daemon_report(log_path: Path, timings: list[tuple[str, float, float]]) -> None:
    print("\nreal seconds from each jump until the sensor ticked / the run finished:")
    for label, to_tick, to_done in timings:
        print(f"  {label:40} tick {to_tick:5.1f}s  run done {to_done:5.1f}s")
    noteworthy = [
        line
        for line in log_path.read_text().splitlines()
        if re.search(r"WARNING|ERROR|CRITICAL|Traceback|Exception", line)
    ]
    print("daemon warnings and errors:" if noteworthy else "daemon warnings and errors: none")
    for line in noteworthy:
        print("  " + re.sub(r"\x1b\[[0-9;]*m", "", line)[:240])
