"""The registry-driven sensors with built contexts on a real test instance, a real registry and warehouse.

The calendar's arithmetic has its own unit tests; these check the sensor's bookkeeping: run keys and tags,
when `nextRunTime` advances, retries, alerts, and that one bad mapping never stops the others. The daemon over
simulated days is `tests/end_to_end/test_calendar_daemon.py`. Every test runs twice: with the shared state in
files (the registry in SQLite, Dagster's instance in SQLite), and in PostgreSQL (`DATABASE_URL`).
"""

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from lease_support import abandon_lease

from pipeline.automation import sensors
from pipeline.automation.partitions import MAPPING_DIMENSION, MappingDay
from pipeline.automation.resources import system_resources
from pipeline.automation.sensors import DUE_TAG, calendar_sensor, mapping_partitions_sensor
from pipeline.calendar import alerts
from pipeline.calendar import store as calendar_store
from pipeline.leases import Lease, holder_alive
from pipeline.postgres import run
from pipeline.registry import Registry
from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
from pipeline.registry.model import Frequency
from pipeline.registry.store import RegistryStore
from pipeline.runner import busy_partitions
from pipeline.settings import load_settings
from pipeline.warehouse import connect
from pipeline.warehouse.connection import locked
from pipeline.warehouse.slices import ensure_tables

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(params=["files", "postgres"])
def shared_state(request, monkeypatch) -> str | None:
    """Where the shared state lives: files of DATA_DIR and Dagster's SQLite, or PostgreSQL (`DATABASE_URL`:
    the registry, the request budgets and Dagster's instance). Returns the database URL or None."""
    if request.param == "files":
        monkeypatch.delenv("DATABASE_URL", raising=False)
        return None
    url = request.getfixturevalue("database_url")
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def store(shared_state, tmp_path, monkeypatch) -> RegistryStore:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REGISTRY_SECRET_KEY", raising=False)
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    store = RegistryStore.open(load_settings())
    store.group_id = add_group(store, "100")
    return store


def add_group(store: RegistryStore, parent: str) -> int:
    """A group with a Cliniko and a Birdeye key; returns its id."""
    group, _ = store.create_group(
        parent,
        118,
        [
            PropertyInput("cliniko.api.key", "sandbox-key-abcdef-au4", True, "p0"),
            PropertyInput("birdeye.api.key", "birdeye-key-0001", True, "p1"),
        ],
        [TriggerInput(129, 1, None, "t0")],
    )
    return group["groupId"]


def warehouse(group_id: int | None = None) -> Path:
    """The warehouse file of `group_id`, by default of the fixture's one group."""
    settings = load_settings()
    if group_id is None:
        (group,) = RegistryStore.open(settings).groups()
        group_id = group["groupId"]
    return settings.warehouse_path(group_id)


def add_mapping(
    store: RegistryStore, number: str, *, next_run: datetime, unit="days", value=1, active=True, props=()
):
    """A mapping of location 'Clinic', whose Cliniko business was fetched once and is in UTC: its partition
    D closes at D+1 00:00 UTC."""
    store.create_mapping(
        MappingInput(
            number,
            store.group_id,
            [PropertyInput("cliniko.location.name", "Clinic", False, "p"), *props],
            active=active,
            frequency=Frequency(value, unit),
            next_run_time=next_run,
        )
    )
    with connect(warehouse(store.group_id)) as con:
        ensure_tables(con)
        con.execute(
            "insert into raw.cliniko_businesses (business_number, cliniko_business_id, business_name, "
            "time_zone_identifier, loaded_at) values (?, '1', 'Clinic', 'UTC', now())",
            [number],
        )


@pytest.fixture
def instance(shared_state):
    storage = {"storage": {"postgres": {"postgres_url": load_settings().dagster_postgres_url}}}
    with dg.instance_for_test(overrides=storage if shared_state else None) as instance:
        yield instance


def evaluate(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, data_dir: str | None = None
) -> dg.SensorResult:
    """A tick of `sensor` with the resources `Definitions` gives it (`data_dir` as given, if any); nested
    resources are context managers, so the context is one too."""
    with dg.build_sensor_context(instance=instance, resources=system_resources(data_dir)) as context:
        return sensor(context)


def tick(instance: dg.DagsterInstance) -> dg.SensorResult:
    return evaluate(calendar_sensor, instance)


def requested(result: dg.SensorResult) -> list[tuple[str, str]]:
    return [(r.run_key, str(r.partition_key)) for r in result.run_requests or []]


def launched(instance: dg.DagsterInstance, request: dg.RunRequest, status=dg.DagsterRunStatus.STARTING):
    """What the daemon does with a run request: a run carrying the request's tags and partition."""
    return create_run_for_test(
        instance,
        job_name="review_requests_job",
        status=status,
        tags={
            **request.tags,
            "dagster/partition": str(request.partition_key),
            "dagster/run_key": request.run_key,
        },
    )


def on_runs(sql: str, params: dict | None = None) -> None:
    """Write the partition runs where the pipeline keeps them: the group's warehouse, and PostgreSQL with
    DATABASE_URL (where the scheduler reads every host's)."""
    with connect(warehouse()) as con, calendar_store.shared_runs(load_settings().database_url) as shared:
        for target in (shared, con):
            if target is not None:
                run(target, sql, params)


def record_run(number: str, day, status: str, finished_at: datetime, *, run_id: str, partial=False):
    on_runs(
        "insert into calendar.partition_runs (run_id, business_number, partition_date, run_started_at, "
        "close_at, is_partial, status, finished_at) values ($run_id, $number, $day, $at, $at, $partial, "
        "$status, $at)",
        {"run_id": run_id, "number": number, "day": day, "at": finished_at, "partial": partial,
         "status": status},
    )  # fmt: skip


def open_alerts() -> dict[str, str]:
    """The open alerts, where the settings keep them (the alerts file, or PostgreSQL)."""
    return {row["alert_key"]: row["message"] for row in alerts.open_alerts(load_settings().alerts)}


# Files only: with DATABASE_URL the registry is in PostgreSQL, whatever the data_dir.
@pytest.mark.parametrize("shared_state", ["files"], indirect=True)
def test_the_sensors_read_the_registry_of_the_resource_the_assets_get(
    shared_state, store, instance, tmp_path, monkeypatch
):
    """`system_resources(data_dir=...)` points the sensors where it points the assets, whatever DATA_DIR
    says."""
    add_mapping(store, "201", next_run=NOW)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "elsewhere"))  # a registry without mapping 201
    result = evaluate(mapping_partitions_sensor, instance, data_dir=str(tmp_path))
    [add] = result.dynamic_partitions_requests
    assert list(add.partition_keys) == ["201"]
    assert evaluate(mapping_partitions_sensor, instance).dynamic_partitions_requests == []


def test_partitions_sensor_follows_the_registry_inactive_included(store, instance):
    add_mapping(store, "201", next_run=NOW)
    add_mapping(store, "202", next_run=NOW, active=False)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["999"])
    result = evaluate(mapping_partitions_sensor, instance)
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [
        r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    ]
    assert [list(r.partition_keys) for r in adds] == [["201", "202"]]
    assert [list(r.partition_keys) for r in deletes] == [["999"]]


def test_a_due_time_requests_its_partition_and_advances_once_the_run_exists(store, instance):
    due_at = NOW - timedelta(minutes=5)
    add_mapping(store, "301", next_run=due_at)
    add_mapping(store, "302", next_run=NOW + timedelta(hours=2))
    add_mapping(store, "303", next_run=due_at, active=False)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["301", "302", "303"])
    registry = Registry.open(load_settings())
    yesterday = MappingDay("301", due_at.date() - timedelta(days=1))

    first = tick(instance)
    assert requested(first) == [(f"{yesterday}@{due_at.isoformat()}", str(yesterday))]
    assert first.run_requests[0].tags[DUE_TAG] == f"301@{due_at.isoformat()}"
    # The daemon dies before launching: the next tick asks for the same run key, and nothing advanced.
    assert requested(tick(instance)) == requested(first)
    assert registry.mapping("301").next_run_time == due_at

    run = launched(instance, first.run_requests[0])
    assert requested(tick(instance)) == []  # in flight: not asked again, and the due time waits for it
    assert registry.mapping("301").next_run_time == due_at
    instance.report_run_failed(run)  # over (how it ended is the retries' business, not the due time's)
    assert requested(tick(instance)) == []
    assert registry.mapping("301").next_run_time == due_at + timedelta(days=1)


@pytest.mark.parametrize("shared_state", ["postgres"], indirect=True)
def test_a_partition_another_host_closed_is_not_run_again_and_its_due_time_advances(store, instance):
    """With DATABASE_URL the scheduler reads every host's runs: a partition closed by a run of another host
    (recorded in PostgreSQL and in that host's warehouse, not in this one's) is not run again here."""
    due_at = NOW - timedelta(minutes=5)
    add_mapping(store, "311", next_run=due_at)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["311"])
    day = due_at.date() - timedelta(days=1)
    closes = datetime.combine(day + timedelta(days=1), time(), UTC)  # its business is in UTC
    with calendar_store.shared_runs(load_settings().database_url) as shared:
        run(
            shared,
            "insert into calendar.partition_runs (run_id, business_number, partition_date, group_id, "
            "run_started_at, close_at, is_partial, status, finished_at) "
            "values ('host-b-run', '311', $day, $group, $at, $at, false, 'succeeded', $at)",
            {"day": day, "group": store.group_id, "at": closes},
        )
    assert requested(tick(instance)) == []
    assert Registry.open(load_settings()).mapping("311").next_run_time == due_at + timedelta(days=1)
    with connect(warehouse()) as con:  # this host never ran it
        assert con.execute("select count(*) from calendar.partition_runs").fetchone()[0] == 0


@pytest.mark.parametrize("shared_state", ["postgres"], indirect=True)
def test_a_run_of_another_host_that_built_and_died_is_failed_here(store, instance):
    """A run of another host built a partition of a group this host never ran, and its process is gone
    (Dagster's instance, shared, says it failed): this host's sensor records the failure in PostgreSQL."""
    add_mapping(store, "321", next_run=NOW + timedelta(hours=2))
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["321"])
    gone = create_run_for_test(instance, job_name="review_requests_job", status=dg.DagsterRunStatus.FAILURE)
    with calendar_store.shared_runs(load_settings().database_url) as shared:
        run(
            shared,
            "insert into calendar.partition_runs (run_id, business_number, partition_date, group_id, "
            "run_started_at, status) values ($run_id, '999', $day, 999, $at, 'built')",
            {"run_id": gone.run_id, "day": NOW.date(), "at": NOW},
        )
    tick(instance)
    with calendar_store.shared_runs(load_settings().database_url) as shared:
        rows = run(shared, "select status, error from calendar.partition_runs").fetchall()
    reason = "the run ended without recording its outcome (killed, or lost with its machine)"
    assert rows == [("failed", reason)]


def test_a_group_whose_warehouse_stays_busy_waits_and_the_other_groups_go_on(store, instance, monkeypatch):
    due_at = NOW - timedelta(minutes=5)
    add_mapping(store, "351", next_run=due_at)
    busy_group = store.group_id
    store.group_id = add_group(store, "350")
    add_mapping(store, "352", next_run=due_at)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["351", "352"])
    monkeypatch.setattr(sensors, "WAREHOUSE_WAIT_SECONDS", 0.5)
    day = due_at.date() - timedelta(days=1)
    with locked(warehouse(busy_group)):  # a run of the first group holds its file past the tick's patience
        assert [key for _, key in requested(tick(instance))] == [str(MappingDay("352", day))]
    assert [key for _, key in requested(tick(instance))] == [str(MappingDay(n, day)) for n in ("351", "352")]


def test_a_daemon_stopped_for_days_catches_up_once_within_the_horizon(store, instance):
    first_due = NOW - timedelta(days=12, minutes=5)
    add_mapping(store, "401", next_run=first_due)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["401"])
    result = tick(instance)
    latest_due = first_due + timedelta(days=12)
    # Partition D is runnable from D+1 00:00 UTC; the horizon keeps those with latest_due - R(D) < 1 + 7 days.
    expected_dates = [latest_due.date() - timedelta(days=k) for k in range(8, 0, -1)]
    assert [str(r.partition_key) for r in result.run_requests] == [
        str(MappingDay("401", d)) for d in expected_dates
    ]
    assert {r.run_key.rsplit("@", 1)[1] for r in result.run_requests} == {latest_due.isoformat()}
    for request in result.run_requests:
        launched(instance, request, status=dg.DagsterRunStatus.SUCCESS)
    assert requested(tick(instance)) == []
    assert Registry.open(load_settings()).mapping("401").next_run_time == latest_due + timedelta(days=1)


def test_a_failed_partition_is_retried_after_its_backoff_and_alerts_after_three(store, instance):
    now = datetime.now(UTC)  # the backoff is counted in minutes from the sensor's own clock
    # Not due for three hours, and answering for yesterday since its first due time a day ago (at any hour: a
    # first due time three hours ahead would start its calendar tomorrow after 21:00 UTC).
    add_mapping(store, "501", next_run=now - timedelta(days=1))
    store.update_mapping("501", MappingPatch(next_run_time=now + timedelta(hours=3)))
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["501"])
    day = now.date() - timedelta(days=1)
    record_run("501", day, "failed", now - timedelta(minutes=9), run_id="r1")
    assert requested(tick(instance)) == []  # the first retry waits 10 minutes
    on_runs("update calendar.partition_runs set finished_at = finished_at - interval '2 minutes'")
    partition = str(MappingDay("501", day))
    first_failure = now - timedelta(minutes=11)  # one run key per failure: the key names it
    assert requested(tick(instance)) == [(f"{partition}#retry-after-{first_failure.isoformat()}", partition)]
    assert open_alerts() == {}
    # the first failure was longer ago, then two more
    on_runs("update calendar.partition_runs set finished_at = finished_at - interval '3 hours'")
    on_runs("update calendar.partition_runs set run_started_at = finished_at")
    record_run("501", day, "failed", now - timedelta(hours=1), run_id="r2")
    record_run("501", day, "failed", now - timedelta(minutes=41), run_id="r3")  # 3rd in a row: 40 min
    third_failure = now - timedelta(minutes=41)
    assert requested(tick(instance)) == [(f"{partition}#retry-after-{third_failure.isoformat()}", partition)]
    assert list(open_alerts()) == [f"partition_failing|{partition.split('|')[1]}|{day}"]
    # The retry is under way (it has built the partition): the alert stays open, it is not raised again.
    record_run("501", day, "built", now - timedelta(minutes=1), run_id="r4")
    assert requested(tick(instance)) == [] and list(open_alerts()) == [f"partition_failing|501|{day}"]
    with alerts.alerts_connection(load_settings().alerts) as con:
        assert run(con, "select count(*) from calendar.alerts").fetchone()[0] == 1
    on_runs("update calendar.partition_runs set status = 'succeeded' where run_id = 'r4'")
    assert requested(tick(instance)) == [] and open_alerts() == {}  # closed: the alert is resolved


def test_one_bad_mapping_never_stops_the_others(store, instance):
    due_at = NOW - timedelta(minutes=5)
    add_mapping(store, "601", next_run=due_at)
    add_mapping(store, "602", next_run=due_at)
    store.update_mapping("602", MappingPatch(next_run_time=datetime(2020, 1, 1, tzinfo=UTC)))  # the dashboard
    for number in ("604", "605"):
        add_mapping(store, number, next_run=due_at)
        store.update_mapping(  # support renames the location
            number,
            MappingPatch(properties=[PropertyInput("cliniko.location.name", "Gone Clinic", False, "p")]),
        )
    with connect(warehouse()) as con:  # 604's businesses fetched since: no such clinic
        con.execute(
            "update raw.cliniko_businesses set loaded_at = now() + interval 1 second "
            "where business_number = '604'"
        )
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["601", "602", "604", "605"])

    result = tick(instance)

    by_mapping: dict[str, list[str]] = {}
    for request in result.run_requests:
        dims = request.partition_key.keys_by_dimension
        by_mapping.setdefault(dims["mapping"], []).append(dims["date"])
    assert by_mapping["601"] == [str(due_at.date() - timedelta(days=1))]
    # 2020-01-01 + k days: its latest due time is today's, and only the horizon's partitions run.
    assert 1 <= len(by_mapping["602"]) <= 8
    assert min(by_mapping["602"]) >= str(NOW.date() - timedelta(days=9))
    assert "604" not in by_mapping
    # 605's name changed after its last fetch: it runs, and that run fetches what Cliniko has now. Until then
    # its zones are unknown, so its day closes when it has ended everywhere (SPEC §8: as in UTC-12), at
    # 12:00 UTC the next day: before that (this test at 00:30 UTC, say) it is not due yet.
    yesterday = due_at.date() - timedelta(days=1)
    closed = due_at >= datetime.combine(due_at.date(), time(12), UTC)
    assert by_mapping.get("605") == ([str(yesterday)] if closed else None)
    alerts = open_alerts()
    assert list(alerts) == ["mapping_unschedulable|604"]
    assert "Gone Clinic" in alerts["mapping_unschedulable|604"]
    # The UI hears of it: the calendar_alerts check of analytics_database fails, listing the alert.
    [check] = result.asset_events
    assert (check.asset_key, check.check_name, check.passed) == (
        dg.AssetKey("analytics_database"),
        "calendar_alerts",
        False,
    )
    assert check.metadata["open_alerts"].value == 1
    assert tick(instance).asset_events == []  # nothing changed since: nothing re-evaluated


def test_a_mapping_without_a_birdeye_key_is_skipped_with_an_alert(store, instance):
    due_at = NOW - timedelta(minutes=5)
    group, _ = store.create_group(
        "300",
        118,
        [PropertyInput("cliniko.api.key", "sandbox-key-abcdef-au4", True, "p0")],
        [TriggerInput(129, 1, None, "t0")],
    )
    store.group_id = group["groupId"]
    add_mapping(store, "701", next_run=due_at)
    add_mapping(store, "702", next_run=due_at)
    store.update_mapping("702", MappingPatch(test=True))  # a test mapping posts nothing: it needs no key
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["701", "702"])
    result = tick(instance)
    assert {r.partition_key.keys_by_dimension["mapping"] for r in result.run_requests} == {"702"}
    assert "birdeye.api.key" in open_alerts()["mapping_unschedulable|701"]
    store.update_mapping(
        "701", MappingPatch(properties=[PropertyInput("birdeye.api.key", "birdeye-key-0002", True, "p")])
    )
    assert "701" in {r.partition_key.keys_by_dimension["mapping"] for r in tick(instance).run_requests}
    assert open_alerts() == {}


def test_a_run_whose_process_died_is_failed_and_its_partition_retried(store, instance):
    add_mapping(store, "801", next_run=NOW - timedelta(minutes=5))
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["801"])
    request = tick(instance).run_requests[0]
    run = launched(instance, request, status=dg.DagsterRunStatus.STARTED)
    leases = load_settings().run_leases
    with Lease(leases, run.run_id):  # its process holds the lease: in flight, nothing is asked
        assert requested(tick(instance)) == []
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    abandon_lease(leases, run.run_id)  # the lease of a process that is gone: nobody holds it
    tick(instance)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    # It died during ingestion, before it built anything: it still counts as a failure of its partition, so
    # the partition is retried with backoff (not left to the next due time) and counts towards the alert.
    with connect(warehouse()) as con:
        rows = con.execute("select run_id, status, error from calendar.partition_runs").fetchall()
    assert rows == [(run.run_id, "failed", "the run's process is gone (killed, or its machine stopped)")]
    assert holder_alive(leases, run.run_id) is None  # swept


def test_the_run_command_waits_for_a_live_run_of_its_partition_not_for_a_dead_one(store, instance):
    settings = load_settings()
    day = MappingDay("902", NOW.date() - timedelta(days=1))
    run = create_run_for_test(
        instance,
        job_name="review_requests_job",
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": str(day)},
    )
    with Lease(settings.run_leases, run.run_id):  # its process works on the partition
        assert busy_partitions(instance, settings, [day]) == [f"{day} (run {run.run_id})"]
    abandon_lease(settings.run_leases, run.run_id)  # killed: a lease nobody holds
    assert busy_partitions(instance, settings, [day]) == []
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
