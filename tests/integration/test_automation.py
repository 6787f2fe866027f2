"""The registry-driven sensors and the daily schedule, with built contexts on a real test instance."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from pipeline.automation.partitions import MAPPING_DIMENSION, MappingDay
from pipeline.automation.sensors import (
    daily_review_requests_schedule,
    due_mappings_sensor,
    mapping_partitions_sensor,
)
from pipeline.definitions import defs
from pipeline.registry import Registry
from pipeline.registry.model import Frequency
from pipeline.registry.store import MappingInput, MappingPatch, PropertyInput, RegistryStore, TriggerInput
from pipeline.settings import load_settings

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def store(tmp_path, monkeypatch) -> RegistryStore:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REGISTRY_SECRET_KEY", raising=False)
    store = RegistryStore.open(load_settings())
    group, _ = store.create_group(
        "100",
        118,
        [PropertyInput("cliniko.api.key", "sandbox-key-abcdef-au4", True, "p0")],
        [TriggerInput(129, 1, None, "t0")],
    )
    store.group_id = group["groupId"]
    return store


def add_mapping(store: RegistryStore, number: str, *, next_run: datetime, unit="days", value=1, active=True):
    store.create_mapping(
        MappingInput(
            number,
            store.group_id,
            [PropertyInput("cliniko.location.name", "Clinic", False, "p")],
            active=active,
            frequency=Frequency(value, unit),
            next_run_time=next_run,
        )
    )


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def tick(instance: dg.DagsterInstance) -> dg.SensorResult:
    return due_mappings_sensor(dg.build_sensor_context(instance=instance))


def launched(instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    """What the daemon does with a run request: a run carrying the request's tags and partition."""
    create_run_for_test(
        instance,
        job_name="review_requests_job",
        tags={
            **request.tags,
            "dagster/partition": str(request.partition_key),
            "dagster/run_key": request.run_key,
        },
    )


def test_partitions_sensor_follows_the_registry_inactive_included(store, instance):
    add_mapping(store, "201", next_run=NOW)
    add_mapping(store, "202", next_run=NOW, active=False)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["999"])
    result = mapping_partitions_sensor(dg.build_sensor_context(instance=instance))
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
    deletes = [
        r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    ]
    assert [list(r.partition_keys) for r in adds] == [["201", "202"]]
    assert [list(r.partition_keys) for r in deletes] == [["999"]]


def test_due_daily_mapping_runs_yesterday_and_not_due_or_inactive_ones_do_not(store, instance):
    due_at = NOW - timedelta(minutes=5)
    add_mapping(store, "301", next_run=due_at)
    add_mapping(store, "302", next_run=NOW + timedelta(hours=2))
    add_mapping(store, "303", next_run=due_at, active=False)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["301", "302", "303"])

    result = tick(instance)

    assert [(r.run_key, str(r.partition_key)) for r in result.run_requests] == [
        (f"301@{due_at.isoformat()}", f"{due_at.date() - timedelta(days=1)}|301")
    ]


def test_restart_between_ticks_neither_skips_nor_doubles(store, instance):
    due_at = NOW - timedelta(minutes=1)
    add_mapping(store, "401", next_run=due_at)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["401"])
    registry = Registry.open(load_settings())

    first = tick(instance)
    # The daemon dies before submitting: the next tick (a fresh context) asks for the same run key again,
    # and nextRunTime has not moved, so the due time is not skipped.
    again = tick(instance)
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests]
    assert registry.mapping("401").next_run_time == due_at

    launched(instance, first.run_requests[0])
    after = tick(instance)  # the run exists: advance, and the next due time is tomorrow
    assert after.run_requests in (None, [])
    assert registry.mapping("401").next_run_time == due_at + timedelta(days=1)
    assert tick(instance).run_requests in (None, [])


def test_hourly_mapping_catches_up_each_missed_hour_once(store, instance):
    first_due = NOW - timedelta(hours=2, minutes=30)
    add_mapping(store, "501", next_run=first_due, unit="hours")
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["501"])
    seen = []
    for _ in range(6):
        requests = tick(instance).run_requests or []
        for request in requests:
            seen.append(request.run_key)
            launched(instance, request)
    expected = [f"501@{(first_due + timedelta(hours=h)).isoformat()}" for h in range(3)]
    assert seen == expected
    assert Registry.open(load_settings()).mapping("501").next_run_time == first_due + timedelta(hours=3)


def test_hourly_due_time_runs_the_day_it_closes():
    from pipeline.automation.scheduling import partition_date_for

    class Hourly:
        frequency_unit = "hours"

    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    assert partition_date_for(Hourly, midnight) == date(2026, 11, 24)
    assert partition_date_for(Hourly, midnight + timedelta(hours=9)) == date(2026, 11, 25)


def schedule_at(instance, when: datetime):
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return daily_review_requests_schedule(context)


def test_schedule_and_sensor_never_run_one_daily_partition_twice(store, instance):
    due_at = NOW - timedelta(minutes=1)
    add_mapping(store, "601", next_run=due_at)
    add_mapping(store, "602", next_run=NOW + timedelta(days=3), unit="hours", value=6)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["601", "602"])

    requests = schedule_at(instance, due_at)
    yesterday = MappingDay("601", due_at.date() - timedelta(days=1))
    assert [str(r.partition_key) for r in requests] == [str(yesterday)]  # 602 has its own cadence
    launched(instance, requests[0])

    assert isinstance(schedule_at(instance, due_at), dg.SkipReason)
    # The sensor's due time for 601 runs the same partition: it counts as done and only advances.
    assert tick(instance).run_requests in (None, [])
    assert Registry.open(load_settings()).mapping("601").next_run_time == due_at + timedelta(days=1)


def test_deactivated_mapping_is_not_scheduled(store, instance):
    add_mapping(store, "701", next_run=NOW - timedelta(minutes=1))
    instance.add_dynamic_partitions(MAPPING_DIMENSION, ["701"])
    store.update_mapping("701", MappingPatch(active=False))
    assert tick(instance).run_requests in (None, [])
    assert isinstance(schedule_at(instance, NOW), dg.SkipReason)
