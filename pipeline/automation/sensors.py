"""The registry-driven sensors and the one job over the whole graph.

- `mapping_partitions_sensor` keeps the `mapping` partitions equal to the registry's mappings.
- `calendar_sensor` is the scheduler of SPEC §8. Every minute, for each active mapping, it reads what the
  warehouse recorded of the mapping's partitions (`calendar.partition_runs`) and what Dagster is running, asks
  `pipeline.calendar.planner.plan` what to do, and returns run requests: at a due time every unclosed
  partition the due time covers (oldest first), and between due times the failed partitions whose backoff has
  passed. It also raises and resolves the calendar's alerts.

Why a sensor doing the bookkeeping rather than Dagster's own machinery: the cadence is per mapping and lives
in the registry (`nextRunTime`, `frequency`), a partition is "done" only when a run that started after its
close time (which depends on the clinics' time zones) succeeded, and retries must back off for hours and stop
at the catch-up horizon. Dagster's run retries re-execute at once, a cron schedule cannot follow per-mapping
times, and declarative automation has no notion of a close time. What a Dagster engineer expects is still
there: run keys make every request idempotent, the run queue (`dagster.yaml`) keeps two runs of one partition
apart, and each run is an ordinary run of `review_requests_job` for one partition.

How a due time is never skipped nor run twice: its requests carry the run key `<mapping>|<date>@<due time>`
(Dagster never launches a run key twice) and the tag `cliniko-reviews/due`. Only on a later tick, when every
partition the due time wants is closed, running or was launched for it, does the sensor advance
`nextRunTime` (compare-and-set in the registry). A daemon restart anywhere in between asks again for the same
run keys; a daemon stopped for days wakes at the latest due time, which covers every partition the missed
ones would have run, within the horizon.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb

from pipeline.automation.partitions import (
    MAPPING_DIMENSION,
    PARTITIONS_START_DATE,
    MappingDay,
    mapping_day,
    mapping_partitions,
    runs_in_flight,
)
from pipeline.automation.resources import RegistryResource, WarehouseResource
from pipeline.calendar import coverage, planner, rules, store
from pipeline.calendar.alerts import notify, open_alerts, raise_alerts, resolve_alerts
from pipeline.calendar.store import Alert
from pipeline.leases import sweep
from pipeline.registry import MappingConfig, Registry
from pipeline.warehouse import WarehouseBusy
from pipeline.warehouse.analysts_db import NothingToRefresh
from pipeline.warehouse.connection import attached
from pipeline.warehouse.models import ensure_models
from pipeline.warehouse.slices import ensure_tables

if TYPE_CHECKING:
    import psycopg2.extensions

DUE_TAG = "cliniko-reviews/due"
REASON_TAG = "cliniko-reviews/reason"
GROUP_TAG = "cliniko-reviews/group"
# Where the Dagster UI shows the open alerts: a check of the analysts' database (see assets/sink.py).
CALENDAR_ALERTS_ASSET, CALENDAR_ALERTS_CHECK = "analytics_database", "calendar_alerts"
SENSOR_ALERTS = ("partition_failing", "mapping_stalled", "mapping_unschedulable")
# A tick waits this long for a group's warehouse (or the alerts file); a group whose file stays busy is
# skipped until the next tick, the others go on (a sensor tick has 60 s in all).
WAREHOUSE_WAIT_SECONDS = 10
HISTORY_DAYS = 100  # covers the largest horizon (90 days) and a frequency of a few days
# A tick posts the alerts not delivered yet for at most this long; the rest wait for the next tick.
NOTIFY_BUDGET_SECONDS = 15.0

review_requests_job = dg.define_asset_job(
    "review_requests_job",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="The whole graph for one mapping-day: Cliniko ingest -> SQL models -> Birdeye sink -> "
    "analysts' database.",
)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def mapping_partitions_sensor(
    context: dg.SensorEvaluationContext, registry: RegistryResource
) -> dg.SensorResult:
    """Keeps the `mapping` partitions equal to the registry's mappings (inactive ones stay, unscheduled)."""
    wanted = {m.business_number for m in registry.get().mappings(active_only=False)}
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


def _ended(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, str]:
    """Of runs that built a partition and hold none now, those Dagster knows as finished (or no longer
    knows at all): run id -> why their build never got an outcome."""
    if not run_ids:
        return {}
    statuses = {
        r.dagster_run.run_id: r.dagster_run.status
        for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids))
    }
    ended = {}
    for run_id in run_ids:
        status = statuses.get(run_id, dg.DagsterRunStatus.FAILURE)
        if status == dg.DagsterRunStatus.SUCCESS:
            ended[run_id] = (
                "the run built the partition but never posted its requests (it ran part of the graph)"
            )
        elif status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            ended[run_id] = "the run ended without recording its outcome (killed, or lost with its machine)"
    return ended


def _due_key(business_number: str, due_at: datetime) -> str:
    return f"{business_number}@{due_at.isoformat()}"


def _requested_for(instance: dg.DagsterInstance, due_key: str) -> set[date]:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={DUE_TAG: due_key}))
    return {mapping_day(r.dagster_run.tags["dagster/partition"]).partition_date for r in records}


def _unschedulable(mapping: MappingConfig, unknown_names: tuple[str, ...]) -> str | None:
    """Why the scheduler cannot run this mapping now, in a support engineer's words; None if it can."""
    if mapping.cliniko_api_key is None:
        return f"Mapping {mapping.business_number} has no Cliniko API key: set cliniko.api.key on its group."
    if mapping.birdeye_api_key is None and not mapping.test:
        return (
            f"Mapping {mapping.business_number} has no Birdeye API key: set birdeye.api.key on its group or "
            "mapping (or mark it as a test mapping)."
        )
    if unknown_names:
        return (
            f"Mapping {mapping.business_number}: location name(s) {list(unknown_names)} match no Cliniko "
            "business of the account as last fetched (deleted or renamed in Cliniko?). Fix "
            "cliniko.location.name; the mapping is not scheduled until its names match."
        )
    return None


def _tick_group(
    con: duckdb.DuckDBPyConnection,
    shared: psycopg2.extensions.connection | None,
    instance: dg.DagsterInstance,
    group_id: int,
    gone: list,
    running: set[str],
    now: datetime,
) -> dict[str, str]:
    """In the group's warehouse (attached to `con`), and in PostgreSQL (`shared`) if there is one: the
    failures of its runs whose process is gone, and the outcome of its runs that built a partition and ended
    without recording one. Returns the latter."""
    ensure_tables(con)
    ensure_models(con)
    if shared is not None:
        store.share_runs(con, shared)
    for day, record in gone:
        store.record_failure(
            con,
            run_id=record.dagster_run.run_id,
            business_number=day.business_number,
            partition_date=day.partition_date,
            group_id=group_id,
            run_started_at=datetime.fromtimestamp(record.start_time or now.timestamp(), UTC),
            error="the run's process is gone (killed, or its machine stopped)",
            now=now,
            shared=shared,
        )
    unfinished = store.unfinished_runs(shared if shared is not None else con)
    mine = [r for r, group in unfinished.items() if r not in running and group in (group_id, None)]
    ended = _ended(instance, mine)
    for run_id, reason in ended.items():
        store.mark_run_ended(con, run_id, reason, now, shared=shared)
    return ended


def _request(
    mapping: MappingConfig, request: planner.Request, due_at: datetime | None, past: planner.History
) -> dg.RunRequest:
    day = MappingDay(mapping.business_number, request.partition_date)
    tags = {REASON_TAG: "partial" if request.partial else request.reason, GROUP_TAG: str(mapping.group_id)}
    if request.reason == "due":
        tags[DUE_TAG] = _due_key(mapping.business_number, due_at)
        run_key = f"{day}@{due_at.isoformat()}"
    else:  # one retry per failure: the key names the failure it answers
        run_key = f"{day}#retry-after-{past.last_failed_at.isoformat()}"
    return dg.RunRequest(run_key=run_key, partition_key=day.key, tags=tags)


def schedule_tick(
    instance: dg.DagsterInstance, warehouse: WarehouseResource, registry: Registry, now: datetime
) -> tuple[list[dg.RunRequest], list[str], bool]:
    """One tick of the calendar: run requests, lines saying what happened per mapping, and whether the open
    alerts changed. `registry` is `RegistryResource.get()`'s, which moved a legacy warehouse into group files
    when it opened."""
    settings = warehouse.settings
    mappings = registry.mappings(active_only=True)
    known = set(instance.get_dynamic_partitions(MAPPING_DIMENSION))
    flight = runs_in_flight(instance, settings.run_leases, now)
    sweep(settings.run_leases)  # the leases of runs that ended
    in_flight: dict[str, set[date]] = defaultdict(set)
    for day, _ in flight.held:
        in_flight[day.business_number].add(day.partition_date)
    running = {record.dagster_run.run_id for _, record in flight.held}
    by_group: dict[int, list[MappingConfig]] = defaultdict(list)
    for mapping in mappings:
        by_group[mapping.group_id].append(mapping)
    gone: dict[int, list] = defaultdict(list)
    for day, record in flight.gone:  # recorded even when the run died before it built anything
        mapping = registry.mapping(day.business_number)
        group = record.dagster_run.tags.get(GROUP_TAG) or (mapping.group_id if mapping else None)
        if group is not None:  # else the mapping is gone from the registry, and its calendar with it
            gone[int(group)].append((day, record))
    files = settings.warehouse_paths()
    schedules: dict[str, planner.Schedule] = {}
    unknown_names: dict[str, tuple[str, ...]] = {}
    history: dict[str, dict[date, planner.History]] = {}
    ended: dict[str, str] = {}
    busy: list[str] = []
    since = now.date() - timedelta(days=HISTORY_DAYS)
    con = duckdb.connect()
    try:
        for group_id in sorted(files.keys() | gone.keys()):
            try:
                with (
                    attached(con, settings.warehouse_path(group_id), wait_seconds=WAREHOUSE_WAIT_SECONDS),
                    store.shared_runs(settings.database_url) as shared,
                ):
                    group_ended = _tick_group(
                        con, shared, instance, group_id, gone.get(group_id, []), running, now
                    )
                    ended.update(group_ended)
                    group_schedules, group_unknown = coverage.schedules(con, by_group.get(group_id, []))
                    schedules.update((s.business_number, s) for s in group_schedules)
                    unknown_names.update(group_unknown)
                    if shared is None:  # else every host's runs are read from PostgreSQL below
                        history.update(store.history(con, since))
            except WarehouseBusy:
                busy.append(str(group_id))
    finally:
        con.close()
    if settings.database_url is not None:  # every host's runs, of groups with a warehouse here or not
        with store.shared_runs(settings.database_url) as shared:
            history = store.history(shared, since)
            visited = {int(group) for group in files.keys() | gone.keys()}
            elsewhere = [
                run_id
                for run_id, group in store.unfinished_runs(shared).items()
                if group not in visited and run_id not in running
            ]
            for run_id, reason in _ended(instance, elsewhere).items():
                store.mark_run_ended(shared, run_id, reason, now)  # its host's warehouse copy stays `built`
                ended[run_id] = reason
    requests: list[dg.RunRequest] = []
    alerts: list[Alert] = []  # conditions that hold now: raised if not open yet
    ongoing: list[str] = []  # keys of open alerts whose condition goes on (kept open, not raised anew)
    notes: list[str] = []
    evaluated: list[str] = []
    if busy:
        notes.append(f"group(s) {', '.join(busy)}: skipped this tick, their warehouse was busy")
    for mapping in mappings:
        bn = mapping.business_number
        if bn not in known or str(mapping.group_id) in busy:
            continue  # mapping_partitions_sensor adds it first; a busy group waits for the next tick
        schedule = schedules.get(bn) or coverage.schedule(mapping, None)  # a group that never ran
        evaluated.append(bn)
        try:
            problem = _unschedulable(mapping, unknown_names.get(bn, ()))
            if problem:
                alerts.append(
                    Alert(
                        "mapping_unschedulable", f"mapping_unschedulable|{bn}", problem, bn, mapping.group_id
                    )
                )
                notes.append(f"{bn}: skipped, {problem}")
                continue
            due_at = rules.latest_due(schedule.next_run_time, schedule.frequency, now)
            requested = _requested_for(instance, _due_key(bn, due_at)) if due_at else set()
            past = history.get(bn, {})
            plan = planner.plan(
                schedule, now, past, in_flight.get(bn, set()), requested, PARTITIONS_START_DATE
            )
            requests.extend(
                _request(mapping, r, plan.due_at, past.get(r.partition_date, planner.History()))
                for r in plan.requests
            )
            alerts.extend(_plan_alerts(mapping, plan, past))
            if plan.stall_ongoing:
                ongoing.append(f"mapping_stalled|{bn}")
            if plan.advance_to is not None:
                registry.advance_next_run_time(bn, schedule.next_run_time, plan.advance_to)
            if plan.requests:
                notes.append(f"{bn}: " + ", ".join(f"{r.partition_date} ({r.reason})" for r in plan.requests))
        except Exception as error:  # one mapping's trouble never stops the others' tick
            message = f"Mapping {bn} could not be scheduled: {type(error).__name__}: {error}"
            alerts.append(
                Alert("mapping_unschedulable", f"mapping_unschedulable|{bn}", message, bn, mapping.group_id)
            )
            notes.append(f"{bn}: {message}")

    inactive = [m.business_number for m in registry.mappings(active_only=False) if not m.active]
    wait = WAREHOUSE_WAIT_SECONDS
    new = raise_alerts(settings.alerts, None, alerts, now, wait_seconds=wait)
    resolved = resolve_alerts(
        settings.alerts,
        kinds=SENSOR_ALERTS,
        business_numbers=[*evaluated, *inactive],
        keep=[*(a.key for a in alerts), *ongoing],
        wait_seconds=wait,
    )
    notify(
        settings.alerts,
        settings.alert_webhook_url,
        budget_seconds=NOTIFY_BUDGET_SECONDS,
        wait_seconds=wait,
    )
    changed = bool(new or resolved or ended or flight.gone)
    if changed:  # what the analysts' `coverage` and `alerts` show changed
        with contextlib.suppress(NothingToRefresh):  # no analysts' database to refresh yet
            warehouse.refresh_analysts_db(registry, now)
    return requests, notes, bool(new or resolved)


def _plan_alerts(mapping: MappingConfig, plan: planner.Plan, past) -> list[Alert]:
    bn, group = mapping.business_number, mapping.group_id
    alerts = [
        Alert(
            "partition_failing",
            f"partition_failing|{bn}|{day}",
            f"Partition {day}|{bn} failed {past[day].failures_in_a_row} times in a row (last: "
            f"{past[day].last_error or 'no error recorded'}); the scheduler retries it with backoff until it "
            "succeeds or leaves the catch-up horizon.",
            bn,
            group,
            day,
        )
        for day in plan.failing
    ]
    if plan.stalled:
        message = (
            f"Mapping {bn} has closed no partition for two due times: see `cliniko-reviews status --mapping "
            f"{bn}` for the partitions it owes and their errors."
        )
        alerts.append(Alert("mapping_stalled", f"mapping_stalled|{bn}", message, bn, group))
    if plan.before_partitions_start:
        first = plan.before_partitions_start[0]
        alerts.append(
            Alert(
                "mapping_unschedulable",
                f"mapping_unschedulable|{bn}",
                f"Mapping {bn} is due to run partition {first}, before the partitions start "
                f"({PARTITIONS_START_DATE}); those partitions are skipped. Check its nextRunTime; to run "
                "them, set PARTITIONS_START to an earlier day and restart the code location.",
                bn,
                group,
            )
        )
    return alerts


def calendar_alerts_result(alerts: list[dict]) -> tuple[bool, dict]:
    """The `calendar_alerts` check's verdict on the open alerts: (passed, metadata)."""
    shown = [
        {
            k: str(a[k]) if a[k] is not None else None
            for k in ("kind", "business_number", "partition_date", "message")
        }
        for a in alerts[:20]
    ]
    return not alerts, {"open_alerts": len(alerts), "alerts": dg.MetadataValue.json(shown)}


def calendar_alerts_evaluation(alerts_at: Path | str) -> dg.AssetCheckEvaluation:
    passed, metadata = calendar_alerts_result(open_alerts(alerts_at, WAREHOUSE_WAIT_SECONDS))
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(CALENDAR_ALERTS_ASSET),
        check_name=CALENDAR_ALERTS_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


@dg.sensor(
    job=review_requests_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def calendar_sensor(
    context: dg.SensorEvaluationContext, registry: RegistryResource, warehouse: WarehouseResource
) -> dg.SensorResult:
    """The scheduler (SPEC §8): runs each active mapping's partitions by its `nextRunTime` and `frequency`.

    At a due time: every partition not yet closed whose close time has passed, inside the catch-up horizon
    (`customer.catchup.days`), oldest first, plus today's partition as a partial run for an hours frequency.
    Between due times: failed partitions again, with backoff. Raises alerts for partitions failing 3 times in
    a row, mappings that closed nothing for two due times, and mappings it cannot schedule.
    """
    try:
        requests, notes, alerts_changed = schedule_tick(
            context.instance, warehouse, registry.get(), datetime.now(UTC)
        )
    except WarehouseBusy as busy:
        return dg.SensorResult(skip_reason=f"the warehouse was busy, trying again next tick: {busy}")
    for note in notes:
        context.log.info(note)
    # The UI shows the calendar's alerts as the `calendar_alerts` check of `analytics_database`.
    events = [calendar_alerts_evaluation(warehouse.settings.alerts)] if alerts_changed else []
    if not requests:
        reason = "nothing is due" + (f": {'; '.join(notes)}" if notes else "")
        return dg.SensorResult(skip_reason=reason, asset_events=events)
    return dg.SensorResult(run_requests=requests, asset_events=events)
