"""SPEC §8 over 23 simulated days, driven by the real `dagster-daemon` under a fake clock (libfaketime).

The daemon, its code location and every run it launches share one fake wall clock that this test moves
(tests/fakeclock.py); the Cliniko and Birdeye emulators and a webhook receiver run in this process on the
real clock. Nothing is called directly: the calendar sensor decides, the run queue launches, the runs ingest,
decide, claim and post. The expectations come from the emulator's own data and the clinics' time zones.

The clinics (one Cliniko account, one integration group, cool-off 30 days):

| mapping | clinic | zone | frequency | due at (UTC) |
|---|---|---|---|---|
| 1001 | Santa Monica Wellness | America/Los_Angeles | 1 day | 06:00 |
| 1002 | Honolulu Sports Medicine | Pacific/Honolulu | 2 days | 06:00 |
| 1003 | London Bridge Physiotherapy | Europe/London | 6 hours | 00, 06, 12, 18 |
| 1004 | Sydney CBD Physio | Australia/Sydney (DST starts 2026-10-04) | 1 day | 15:00 |
| 1005 | Melbourne Sports Clinic 2 | Australia/Melbourne | 1 day | 15:00, with 1004 |

What happens: Cliniko is down on 2026-10-02 from 05:00 to 20:00 (runs fail, the sensor retries with
backoff); London is paused on 10-02 and reactivated 20 days later (10-22); the daemon is restarted on 10-12;
Sydney and Melbourne fall due at the same instant every day and share patients. To keep the daemon's runs
(several seconds each here) to a few minutes, Honolulu, Sydney and Melbourne leave the product after
2026-10-05; Los Angeles goes on daily throughout, London's pause spans the quiet stretch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
import yaml
from classes_support import expected_class_visits
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from fakeclock import FakeClock, require_faketime
from process_support import start, stop
from webhook_receiver import webhook_receiver

from pipeline.automation.instance import DAGSTER_YAML
from pipeline.automation.partitions import IN_FLIGHT
from pipeline.automation.sensors import REASON_TAG
from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
from pipeline.registry.model import Frequency
from pipeline.registry.store import RegistryStore
from pipeline.sandbox.birdeye_emulator import BirdeyeEmulatorConfig, running_birdeye
from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig
from pipeline.sandbox.generator import NULL, generate_account
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import PROJECT_ROOT, load_settings

pytestmark = pytest.mark.timeout(1800)

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 10, 23, 6, 1, tzinfo=UTC)
OUTAGE = (datetime(2026, 10, 2, 5, tzinfo=UTC), datetime(2026, 10, 2, 20, tzinfo=UTC))
PAUSED = (datetime(2026, 10, 2, 0, 30, tzinfo=UTC), datetime(2026, 10, 22, 6, 30, tzinfo=UTC))
LEAVE = datetime(2026, 10, 5, 15, 30, tzinfo=UTC)  # Honolulu, Sydney and Melbourne are deactivated
RESTART = datetime(2026, 10, 12, 6, 1, tzinfo=UTC)
COOLOFF_DAYS = 30
CATCHUP_DAYS = 7
BIRDEYE_KEY = "calendar-birdeye-key-0001"


@dataclass(frozen=True)
class Clinic:
    business_number: str
    name: str
    zone: str
    frequency: timedelta
    first_due: datetime


CLINICS = (
    Clinic("1001", "Santa Monica Wellness", "America/Los_Angeles", timedelta(days=1), START.replace(hour=6)),
    Clinic("1002", "Honolulu Sports Medicine", "Pacific/Honolulu", timedelta(days=2), START.replace(hour=6)),
    Clinic("1003", "London Bridge Physiotherapy", "Europe/London", timedelta(hours=6), START),
    Clinic("1004", "Sydney CBD Physio", "Australia/Sydney", timedelta(days=1), START.replace(hour=15)),
    Clinic(
        "1005", "Melbourne Sports Clinic 2", "Australia/Melbourne", timedelta(days=1), START.replace(hour=15)
    ),
)
BY_NUMBER = {c.business_number: c for c in CLINICS}


def close_at(clinic: Clinic, day: date) -> datetime:
    """C(D) for a fetch delay of 0, computed here from the zone: local midnight ending `day`, in UTC."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(clinic.zone)).astimezone(
        UTC
    )


def steps() -> list[datetime]:
    """The instants the clock jumps to: a minute after each due time while the clinics are active."""
    moments = set()
    day = START
    while day <= END:
        moments.add(day.replace(hour=6, minute=1))  # Los Angeles (and Honolulu every other day)
        if day < LEAVE:
            moments.add(day.replace(hour=15, minute=1))  # Sydney and Melbourne
        if day < PAUSED[0] or day >= PAUSED[1] - timedelta(hours=7):
            moments.update(day.replace(hour=h, minute=1) for h in (0, 6, 12, 18))  # London
        day += timedelta(days=1)
    moments.add(PAUSED[1] + timedelta(minutes=1))
    return sorted(m for m in moments if START < m <= END)


class Process:
    """A long-running process under the fake clock, in its own process group, its output in `log`."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log, self.process = args, env, log, None

    def start(self) -> None:
        self.process = start(self.args, self.env, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deployment(work: Path, env: dict[str, str]) -> tuple[Process, Process]:
    """The code location as its own gRPC server and the daemon pointed at it: Dagster's standard deployment.
    (A code server the daemon starts itself checks a heartbeat against the wall clock, which a jump of the
    fake clock breaks; this one runs for the whole test.)"""
    port = free_port()
    workspace = work / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "grpc_server": {
                            "host": "127.0.0.1",
                            "port": port,
                            "location_name": "cliniko_reviews",
                        }
                    }
                ]
            }
        )
    )
    bin_dir = Path(sys.executable).parent
    code_server = Process(
        [str(bin_dir / "dagster"), "api", "grpc", "-m", "pipeline.definitions", "-d", str(PROJECT_ROOT),
         "-h", "127.0.0.1", "-p", str(port)],
        env,
        work / "code_server.log",
    )  # fmt: skip
    daemon = Process([str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env, work / "daemon.log")
    return code_server, daemon


def sensor_ticks(instance: dg.DagsterInstance, limit: int | None = 20) -> list:
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    found = [s for s in states if s.instigator_name == "calendar_sensor"]
    if not found:
        return []
    return instance.get_ticks(found[0].instigator_origin_id, found[0].selector_id, limit=limit)


def wait_until_quiet(instance: dg.DagsterInstance, clock: FakeClock, daemon: Process, timeout: float = 240):
    """Until the calendar sensor has ticked after every run finished, with nothing left in flight: the
    scheduler has done everything the current fake instant asks of it.

    The sensor ticks at most once a (fake) minute; once the runs are done the clock is nudged a minute on
    rather than waiting that minute in real time.
    """
    deadline = time.monotonic() + timeout
    jumped_at = clock.now().timestamp()
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, f"the daemon exited; see {daemon.log}"
        if not instance.get_run_records(filters=dg.RunsFilter(statuses=list(IN_FLIGHT))):
            finished = [r.end_time or 0 for r in instance.get_run_records(limit=50)]
            settled = max([jumped_at, *finished])
            ticks = sensor_ticks(instance, limit=5)
            done = [t for t in ticks if t.status in (TickStatus.SUCCESS, TickStatus.SKIPPED)]
            if any(t.timestamp > settled and not t.run_ids for t in done):
                return
            newest = max((t.timestamp for t in ticks), default=0)
            if newest > jumped_at and clock.now().timestamp() < newest + 60:
                clock.advance(timedelta(seconds=61))  # bring the sensor's next tick now
        time.sleep(0.5)
    raise AssertionError(f"the daemon did not settle at {clock.now()} within {timeout} s; see {daemon.log}")


COVERAGE_QUERY = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
cursor = con.execute("select * from coverage")
names = [d[0] for d in cursor.description]
print(json.dumps([dict(zip(names, row)) for row in cursor.fetchall()], default=str))
"""


def set_up_registry(data_dir: Path, account) -> None:
    os.environ["DATA_DIR"] = str(data_dir)  # RegistryStore.open reads DATA_DIR through load_settings
    store = RegistryStore.open(load_settings())
    group, _ = store.create_group(
        "2000",
        118,
        [
            PropertyInput("cliniko.api.key", account.api_key, True, "p0"),
            PropertyInput("birdeye.api.key", BIRDEYE_KEY, True, "p1"),
            PropertyInput("customer.cooloff.days", str(COOLOFF_DAYS), False, "p2"),
            PropertyInput("customer.catchup.days", str(CATCHUP_DAYS), False, "p3"),
        ],
        [TriggerInput(129, 1, None, "t0")],
    )
    for clinic in CLINICS:
        unit, value = (
            ("hours", 6) if clinic.frequency < timedelta(days=1) else ("days", clinic.frequency.days)
        )
        store.create_mapping(
            MappingInput(
                clinic.business_number,
                group["groupId"],
                [PropertyInput("cliniko.location.name", clinic.name, False, "p")],
                frequency=Frequency(value, unit),
                next_run_time=clinic.first_due,
            )
        )


def set_active(data_dir: Path, numbers: list[str], active: bool) -> None:
    os.environ["DATA_DIR"] = str(data_dir)
    store = RegistryStore.open(load_settings())
    for number in numbers:
        store.update_mapping(number, MappingPatch(active=active))


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    require_faketime()
    work = tmp_path_factory.mktemp("calendar")
    data_dir, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True)
    # The project's instance settings, with the run queue polling every second instead of five: each of
    # the ~40 steps waits for it.
    config = yaml.safe_load(DAGSTER_YAML)
    config["run_queue"]["dequeue_interval_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    account = generate_account(
        20261001,
        businesses=8,
        appointments=6000,
        start=date(2026, 9, 20),
        end=date(2026, 10, 30),
        now=START,
    )
    names = {b["business_name"].strip() for b in account.businesses}
    assert {c.name for c in CLINICS} <= names, names
    saved_env = dict(os.environ)
    cliniko = ClinikoEmulator(ClinikoEmulatorConfig(accounts=[account]))
    try:
        with (
            running_cliniko(cliniko) as cliniko_url,
            running_birdeye(BirdeyeEmulatorConfig(keys={BIRDEYE_KEY: None})) as birdeye,
            webhook_receiver() as receiver,
            FakeClock(work / "clock", START - timedelta(minutes=1)) as clock,
        ):
            set_up_registry(data_dir, account)
            env = clock.env(
                {
                    **saved_env,
                    "DATA_DIR": str(data_dir),
                    "DAGSTER_HOME": str(home),
                    "CLINIKO_BASE_URL": cliniko_url,
                    "BIRDEYE_BASE_URL": birdeye.base_url,
                    "ALERT_WEBHOOK_URL": receiver.url,
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{saved_env.get('PATH', '')}",
                }
            )
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # each run worker imports Dagster: let it use .pyc files
            # The instance's storage is made before the processes start (as `dagster instance migrate` does
            # in a deployment): two processes creating a new SQLite schedule storage at once can race.
            instance = dg.DagsterInstance.from_config(str(home))
            code_server, daemon = deployment(work, env)
            code_server.start()
            daemon.start()
            # Before the first due time the sensors have made the mapping partitions.
            deadline = time.monotonic() + 120
            while len(instance.get_dynamic_partitions("mapping")) < len(CLINICS):
                assert time.monotonic() < deadline, f"no mapping partitions; see {daemon.log}"
                time.sleep(0.5)
            paused = resumed = left = restarted = False
            step_times = []
            for moment in steps():
                cliniko.set_outage(OUTAGE[0] <= moment < OUTAGE[1])
                if not paused and moment >= PAUSED[0]:
                    set_active(data_dir, ["1003"], False)
                    paused = True
                if not left and moment >= LEAVE:
                    set_active(data_dir, ["1002", "1004", "1005"], False)
                    left = True
                if not resumed and moment >= PAUSED[1]:
                    set_active(data_dir, ["1003"], True)
                    resumed = True
                if not restarted and moment >= RESTART:
                    daemon.stop()  # a restart between two due times: nothing may run twice
                    daemon.start()
                    restarted = True
                began = time.monotonic()
                clock.set(moment)
                wait_until_quiet(instance, clock, daemon)
                step_times.append(time.monotonic() - began)
            cliniko.set_outage(False)
            daemon.stop()
            code_server.stop()
            # `coverage` judges `skipped` at query time: ask as an analyst would at the end (fake clock).
            status = subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "status"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            coverage_rows = json.loads(
                subprocess.run(
                    [sys.executable, "-c", COVERAGE_QUERY, str(data_dir / "analytics.duckdb")],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            runs = instance.get_run_records()
            ticks = sensor_ticks(instance, limit=None)
            instance.dispose()
            delivered = [r for r in birdeye.records() if r.delivered]
            alerts_posted = [r["json"] for r in receiver.received]
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        cliniko.close()
    (warehouse_path,) = (data_dir / "warehouse").glob("group-*.duckdb")  # one group
    warehouse = duckdb.connect(str(warehouse_path), read_only=True)
    analytics = duckdb.connect(str(data_dir / "analytics.duckdb"), read_only=True)
    yield {
        "status": status,
        "coverage": {
            (r["business_number"], date.fromisoformat(r["partition_date"])): r for r in coverage_rows
        },
        "account": account,
        "runs": runs,
        "ticks": ticks,
        "delivered": delivered,
        "alerts_posted": alerts_posted,
        "warehouse": warehouse,
        "analytics": analytics,
        "step_times": step_times,
        "log": work / "daemon.log",
    }
    warehouse.close()
    analytics.close()


def query(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> list[tuple]:
    return con.execute(sql, params or {}).fetchall()


def expected_candidates(account, clinic: Clinic, day: date) -> list[str]:
    """From the emulator's data: the clinic's appointments whose local end day is `day`, neither cancelled
    nor archived nor deleted, and its class attendees by the same rules (all of a closed partition's have
    ended)."""
    business_ids = {int(b["id"]) for b in account.businesses if b["business_name"].strip() == clinic.name}
    start, end = close_at(clinic, day - timedelta(days=1)).timestamp(), close_at(clinic, day).timestamp()
    t = account.appointments
    individual = [
        str(t.id[row])
        for row in range(len(t))
        if int(t.business_id[row]) in business_ids
        and start <= int(t.ends_at[row]) < end
        and NULL == t.cancelled_at[row] == t.archived_at[row] == t.deleted_at[row]
    ]
    return sorted(individual + expected_class_visits(account, {str(b) for b in business_ids}, start, end))


def days(first: str, last: str) -> list[date]:
    first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
    return [first_day + timedelta(days=k) for k in range((last_day - first_day).days + 1)]


# Derived from the table above (close times by hand: LA's day ends at 07:00 UTC, Honolulu's at 10:00,
# London's at 23:00 (BST), Sydney's and Melbourne's at 14:00, 13:00 from 2026-10-04): what must be closed at
# the end, and the London days its pause skipped (older than 7 days when it came back on 10-22 at 06:00).
CLOSED = {
    "1001": days("2026-09-30", "2026-10-21"),
    "1002": days("2026-09-30", "2026-10-03"),
    "1003": days("2026-09-30", "2026-10-01") + days("2026-10-15", "2026-10-22"),
    "1004": days("2026-09-30", "2026-10-05"),
    "1005": days("2026-09-30", "2026-10-05"),
}
SKIPPED_BY_THE_PAUSE = days("2026-10-02", "2026-10-14")


def coverage(sim) -> dict[tuple[str, date], dict]:
    return sim["coverage"]


def test_the_expected_partitions_closed_and_the_pause_skipped_the_rest(simulation):
    states = coverage(simulation)
    for number, closed_days in CLOSED.items():
        got = sorted(day for (bn, day), row in states.items() if bn == number and row["state"] == "closed")
        assert got == closed_days, number
    assert [states[("1003", day)]["state"] for day in SKIPPED_BY_THE_PAUSE] == ["skipped"] * 13
    assert states[("1001", date(2026, 10, 22))]["state"] == "pending"  # LA's 10-22 closes at 10-23 07:00


def test_every_completed_appointment_of_every_closed_partition_has_exactly_one_outcome(simulation):
    outcomes = defaultdict(list)
    for bn, day, appointment in query(
        simulation["analytics"],
        "select business_number, partition_date, appointment_id from restriction_reasons",
    ):
        outcomes[(bn, day)].append(appointment)
    checked = 0
    for number, closed_days in CLOSED.items():
        for day in closed_days:
            expected = expected_candidates(simulation["account"], BY_NUMBER[number], day)
            assert sorted(outcomes[(number, day)]) == expected, (number, day)
            checked += len(expected)
    assert checked > 500  # appointments checked, about 20 per clinic-day


def test_no_appointment_is_posted_twice_and_no_patient_inside_the_cool_off(simulation):
    delivered = simulation["delivered"]
    per_appointment = Counter((r.bid, r.appointment_id) for r in delivered)
    assert per_appointment and max(per_appointment.values()) == 1
    # One group, cool-off 30 days, 23 days simulated: Birdeye may hear of each patient once.
    per_patient = Counter(r.body["externalId"] for r in delivered)
    assert max(per_patient.values()) == 1, per_patient.most_common(3)
    eligible = set(
        query(
            simulation["analytics"],
            "select business_number, appointment_id from restriction_reasons where is_eligible",
        )
    )
    assert set(per_appointment) == eligible  # every eligible one was posted; nothing else was
    statuses = query(simulation["analytics"], "select status, count(*) from review_requests group by all")
    assert dict(statuses) == {"sent": len(eligible)}


def test_the_scheduler_never_launched_a_partition_outside_the_horizon(simulation):
    launched = 0
    for record in simulation["runs"]:
        tags = record.dagster_run.tags
        if tags.get(REASON_TAG) not in ("due", "retry"):
            continue
        day_text, number = tags["dagster/partition"].split("|")
        clinic, day = BY_NUMBER[number], date.fromisoformat(day_text)
        runnable = max(close_at(clinic, day), datetime.combine(day, datetime.min.time(), UTC))
        created = datetime.fromtimestamp(record.create_timestamp.timestamp(), UTC)
        assert runnable <= created < runnable + clinic.frequency + timedelta(days=CATCHUP_DAYS), tags
        assert not (number == "1003" and day in SKIPPED_BY_THE_PAUSE)
        launched += 1
    assert launched > 40
    run_keys = Counter(r.dagster_run.tags.get("dagster/run_key") for r in simulation["runs"])
    assert max(run_keys.values()) == 1  # the restart ran nothing twice


def test_the_outage_failed_runs_and_their_partitions_closed_later_without_anyone_acting(simulation):
    failed = query(
        simulation["warehouse"],
        "select business_number, partition_date, count(*) from calendar.partition_runs "
        "where status = 'failed' group by all order by all",
    )
    # Los Angeles' 09-30 was due at 10-02 06:00 and retried at every step of the outage; Sydney's and
    # Melbourne's 10-02 at 10-02 15:00. (At their first due time their zones were unknown, so only 09-30 was
    # surely over; once that run had fetched the businesses the same due time ran 10-01 as well.)
    assert failed == [
        ("1001", date(2026, 9, 30), 4),  # 06:01, 12:01, 15:01 and 18:01 on 10-02
        ("1004", date(2026, 10, 2), 2),  # 15:01 and 18:01
        ("1005", date(2026, 10, 2), 2),
    ]
    states = coverage(simulation)
    assert all(states[(bn, day)]["state"] == "closed" for bn, day, _ in failed)


def test_alerts_fired_where_they_should_and_were_resolved(simulation):
    alerts = query(
        simulation["analytics"], "select alert_key, resolved_at is not null from alerts order by raised_at"
    )
    assert alerts == [("partition_failing|1001|2026-09-30", True)]
    assert [a["key"] for a in simulation["alerts_posted"]] == ["partition_failing|1001|2026-09-30"]


def test_the_sensor_never_failed_a_tick(simulation):
    failures = [t for t in simulation["ticks"] if t.status == TickStatus.FAILURE]
    assert failures == [], [t.error for t in failures][:1]
    print("seconds per step:", sorted(simulation["step_times"])[len(simulation["step_times"]) // 2], "median")


def test_status_tells_a_support_engineer_where_each_mapping_stands(simulation):
    status = simulation["status"]
    los_angeles = status.split("Mapping 1001")[1].split("Mapping 1002")[0]
    assert "active, every 1 day, catch-up 7 days" in los_angeles
    assert "next due: 2026-10-24 06:00 UTC" in los_angeles
    assert "last closed partition: 2026-10-21" in los_angeles
    assert "open alerts: none" in los_angeles
    london = status.split("Mapping 1003")[1].split("Mapping 1004")[0]
    assert "every 6 hours" in london and "last closed partition: 2026-10-22" in london
    assert "2026-10-14  skipped" in london  # the pause's last day, listed with the recent ones
    assert "... and 7 older than 14 days (see `coverage`)" in london  # 10-02 .. 10-08 are only counted
    sydney = status.split("Mapping 1004")[1].split("Mapping 1005")[0]
    assert "inactive (not scheduled)" in sydney
