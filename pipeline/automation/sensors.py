"""The daily schedule, the registry-driven sensors and the one job over the whole graph.

How the schedule and the frequency sensor share the work, so one due time never runs twice:
- `mapping_partitions_sensor` keeps the `mapping` partitions equal to the registry's mappings.
- `due_mappings_sensor` (every minute) honours each mapping's `frequency` and `nextRunTime`. A due time
  becomes one run request whose run key is `<businessNumber>@<due time>`; Dagster never launches a run key
  twice. Only on a later tick, once that run exists in the instance, does the sensor advance `nextRunTime`
  (compare-and-set in the registry). A daemon restart anywhere in between therefore neither skips a due time
  (nothing advanced before the run existed) nor doubles it (same run key).
- `daily_review_requests_schedule` (03:00 UTC) runs yesterday's partition of every active mapping on the
  default cadence (one day). Both it and the sensor skip a day-cadence partition that already has a run,
  whoever launched it: the first to run yesterday's partition wins, the other counts the due time as done.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from pipeline.automation.partitions import MAPPING_DIMENSION, MappingDay, mapping_partitions
from pipeline.automation.scheduling import due_key, frequency, on_daily_schedule, partition_date_for
from pipeline.registry import Registry
from pipeline.settings import load_settings

DUE_TAG = "cliniko-reviews/due"
MAX_CATCH_UP_PER_TICK = 50

review_requests_job = dg.define_asset_job(
    "review_requests_job",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="The whole graph for one mapping-day: Cliniko ingest -> SQL models -> Birdeye sink -> "
    "analysts' database.",
)


def _registry() -> Registry:
    return Registry.open(load_settings())


def _has_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags=tags), limit=1))


def _partition_has_run(instance: dg.DagsterInstance, day: MappingDay) -> bool:
    return _has_run(instance, {"dagster/partition": str(day)})


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def mapping_partitions_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Keeps the `mapping` partitions equal to the registry's mappings (inactive ones stay, unscheduled)."""
    wanted = {m.business_number for m in _registry().mappings(active_only=False)}
    existing = set(context.instance.get_dynamic_partitions(MAPPING_DIMENSION))
    added, removed = sorted(wanted - existing), sorted(existing - wanted)
    requests = []
    if added:
        requests.append(mapping_partitions.build_add_request(added))
    if removed:
        requests.append(mapping_partitions.build_delete_request(removed))
    if not requests:
        return dg.SensorResult(skip_reason=f"{len(existing)} mapping partitions match the registry")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    job=review_requests_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def due_mappings_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Runs each active mapping when its `nextRunTime` is due, at its `frequency` (days or hours)."""
    now = datetime.now(UTC)
    registry = _registry()
    known = set(context.instance.get_dynamic_partitions(MAPPING_DIMENSION))
    run_requests = []
    for mapping in registry.mappings(active_only=True):
        if mapping.business_number not in known:
            continue  # mapping_partitions_sensor adds it first
        due_at = mapping.next_run_time
        for _ in range(MAX_CATCH_UP_PER_TICK):
            if due_at > now:
                break
            day = MappingDay(mapping.business_number, partition_date_for(mapping, due_at))
            key = due_key(mapping, due_at)
            done = _has_run(context.instance, {DUE_TAG: key}) or (
                mapping.frequency_unit == "days" and _partition_has_run(context.instance, day)
            )
            if not done:
                run_requests.append(dg.RunRequest(run_key=key, partition_key=day.key, tags={DUE_TAG: key}))
                break  # advance only once the run exists, on a later tick
            following = due_at + frequency(mapping)
            if not registry.advance_next_run_time(mapping.business_number, due_at, following):
                break  # someone else advanced it; next tick reads the new value
            due_at = following
    if not run_requests:
        return dg.SensorResult(skip_reason="no mapping is due")
    return dg.SensorResult(run_requests=run_requests)


@dg.schedule(
    job=review_requests_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_review_requests_schedule(context: dg.ScheduleEvaluationContext):
    """Yesterday's partition of every active mapping on the default one-day cadence, unless it ran."""
    scheduled = context.scheduled_execution_time or datetime.now(UTC)
    yesterday = scheduled.date() - timedelta(days=1)
    known = set(context.instance.get_dynamic_partitions(MAPPING_DIMENSION))
    requests = []
    for mapping in _registry().mappings(active_only=True):
        day = MappingDay(mapping.business_number, yesterday)
        if (
            on_daily_schedule(mapping)
            and mapping.business_number in known
            and not _partition_has_run(context.instance, day)
        ):
            requests.append(dg.RunRequest(run_key=f"daily@{day}", partition_key=day.key))
    return requests or dg.SkipReason(f"every active daily mapping already ran {yesterday}")
