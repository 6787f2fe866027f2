"""The project's run launcher under the real daemon: runs forked from a warm fork server, each in a process of
its own, terminated as the UI terminates them, and forked from a fresh server once the code changed.

The registry has four mappings due since two days ago; the calendar sensor asks for their partitions (the
days over in their clinics' time zones) and the daemon launches them through `ForkServerRunLauncher`, three
at a time, against a Cliniko emulator slowed down so that every run lasts a few seconds.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from process_support import start, stop

from pipeline import warm
from pipeline.automation.instance import DAGSTER_YAML, POSTGRES_STORAGE_YAML, POSTGRES_URL_VARIABLE
from pipeline.automation.launcher import PID_TAG
from pipeline.automation.partitions import IN_FLIGHT, MAPPING_DIMENSION
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.store import RegistryStore
from pipeline.sandbox.birdeye_emulator import BirdeyeEmulatorConfig, running_birdeye
from pipeline.sandbox.cliniko_emulator import ClinikoEmulatorConfig, FaultConfig
from pipeline.sandbox.generator import generate_account
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import PROJECT_ROOT, load_settings

pytestmark = pytest.mark.timeout(600)

BIRDEYE_KEY = "birdeye-launcher-key-0001"
NUMBERS = [str(3001 + k) for k in range(4)]  # one more than the queue runs at once


def parent_of(pid: int) -> tuple[int, str] | None:
    """The parent pid of a live process and the parent's command line, or None once it is gone."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return ppid, Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None


def scheduler_done(instance: dg.DagsterInstance, records: list[dg.RunRecord]) -> bool:
    """Runs were launched, all have ended, and the calendar sensor ticked since without asking for more."""
    if not records or any(r.dagster_run.status in IN_FLIGHT for r in records):
        return False
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    [state] = [s for s in states if s.instigator_name == "calendar_sensor"]
    ended = max(r.end_time or 0 for r in records)
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
    return any(t.timestamp > ended and not t.run_ids and t.status != TickStatus.STARTED for t in ticks)


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_runs_fork_from_a_warm_server_terminate_and_follow_code_changes(
    storage, tmp_path, monkeypatch, request
):
    """On Dagster's default storage (SQLite files) and on PostgreSQL (`DATABASE_URL`): a forked run must open
    its own connections, never use its fork server's."""
    now = datetime.now(UTC)
    today = now.date()
    account = generate_account(
        7, businesses=len(NUMBERS), appointments=600, start=today - timedelta(days=5), end=today, now=now
    )
    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    if storage == "postgres":
        (home / "dagster.yaml").write_text(DAGSTER_YAML + POSTGRES_STORAGE_YAML)
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("database_url"))
        monkeypatch.setenv(POSTGRES_URL_VARIABLE, load_settings().dagster_postgres_url)
    slow = FaultConfig(slow_rate=1.0, slow_seconds=0.4)  # every Cliniko request: a run lasts seconds
    with (
        running_cliniko(ClinikoEmulatorConfig(accounts=[account], faults=slow)) as cliniko_url,
        running_birdeye(BirdeyeEmulatorConfig(keys={BIRDEYE_KEY: None})) as birdeye,
    ):
        env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "DAGSTER_HOME": str(home),
            "CLINIKO_BASE_URL": cliniko_url,
            "BIRDEYE_BASE_URL": birdeye.base_url,
        }
        monkeypatch.setenv("DATA_DIR", str(data_dir))
        store = RegistryStore.open(load_settings())
        group, _ = store.create_group(
            "3000",
            118,
            [
                PropertyInput("cliniko.api.key", account.api_key, True, "p0"),
                PropertyInput("birdeye.api.key", BIRDEYE_KEY, True, "p1"),
            ],
            [TriggerInput(129, 1, None, "t0")],
        )
        # First due two days ago (the daemon "was down" since): the partitions of the last days are due now
        # whatever the hour, some of them closed in every time zone.
        due = now.replace(second=0, microsecond=0) - timedelta(days=2)
        for number, business in zip(NUMBERS, account.businesses, strict=True):
            store.create_mapping(
                MappingInput(
                    number,
                    group["groupId"],
                    [PropertyInput("cliniko.location.name", business["business_name"].strip(), False, "p")],
                    next_run_time=due,
                )
            )
        port = 24000 + os.getpid() % 1000
        workspace = tmp_path / "workspace.yaml"
        location = {"host": "127.0.0.1", "port": port, "location_name": "cliniko_reviews"}
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": location}]}))
        bin_dir = Path(sys.executable).parent
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(MAPPING_DIMENSION, NUMBERS)  # as mapping_partitions_sensor does
            code_server = start(
                [str(bin_dir / "dagster"), "api", "grpc", "-m", "pipeline.definitions",
                 "-d", str(PROJECT_ROOT), "-h", "127.0.0.1", "-p", str(port)],
                env,
                tmp_path / "code_server.log",
            )  # fmt: skip
            daemon = start(
                [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env, tmp_path / "daemon.log"
            )
            parents: dict[str, tuple[int, str]] = {}  # run id -> its process's parent, seen while it ran
            terminated = touched = None
            try:
                deadline = time.monotonic() + 400
                while time.monotonic() < deadline:
                    records = instance.get_run_records()
                    for record in records:
                        run = record.dagster_run
                        if run.run_id not in parents and PID_TAG in run.tags:
                            seen = parent_of(int(run.tags[PID_TAG]))
                            if seen is not None:
                                parents[run.run_id] = seen
                        if terminated is None and run.run_id in parents and run.status.value == "STARTED":
                            os.utime(warm.__file__)  # a code change: the next launch restarts the server
                            touched = time.time()
                            assert instance.run_launcher.terminate(run.run_id)  # as the UI's button does
                            terminated = run.run_id
                    if scheduler_done(instance, records):
                        break
                    time.sleep(0.1)
                records = instance.get_run_records()
                messages = {
                    r.dagster_run.run_id: {e.user_message for e in instance.all_logs(r.dagster_run.run_id)}
                    for r in records
                }
            finally:
                stop(daemon)
                stop(code_server)

    logs = (tmp_path / "daemon.log").read_text()[-3000:]
    statuses = {r.dagster_run.run_id: r.dagster_run.status for r in records}
    partitions = [r.dagster_run.tags["dagster/partition"] for r in records]
    assert len(partitions) == len(set(partitions)) >= len(NUMBERS), logs  # the days the clinics' zones closed
    assert terminated is not None and touched is not None, logs
    assert statuses.pop(terminated) == dg.DagsterRunStatus.CANCELED
    assert set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS}, logs

    # Every run ran in a process forked by a fork server, never in the code server's.
    assert set(parents) == {r.dagster_run.run_id for r in records}
    assert all("forkserver" in cmdline for _, cmdline in parents.values()), parents
    assert code_server.pid not in {ppid for ppid, _ in parents.values()}
    # The code changed before the first run's termination: the runs launched later forked from a new server.
    assert len({ppid for ppid, _ in parents.values()}) == 2, parents
    last = max(records, key=lambda r: r.start_time or 0).dagster_run.run_id
    assert parents[last][0] != parents[terminated][0]
    # Each run's steps ran in the process the launcher tagged.
    for record in records:
        run = record.dagster_run
        assert f"Executing steps in process (pid: {run.tags[PID_TAG]})" in messages[run.run_id]
