"""What the scheduler does for one mapping on one tick, as a pure function of what it knows (SPEC §8).

`plan()` takes the mapping's schedule, the history of its partitions' runs (from the warehouse), the
partitions in flight and those already requested for the current due time (from Dagster's run storage) and
`now`, and returns the partitions to request, whether the due time is handled (so `nextRunTime` advances)
and which alerts the history calls for. The sensor turns that into run requests; tests call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pipeline.calendar import rules


@dataclass(frozen=True)
class Schedule:
    """What the calendar needs to know of a mapping (from the registry and its stored Cliniko businesses)."""

    business_number: str
    group_id: int
    next_run_time: datetime
    first_run_time: datetime
    frequency: timedelta
    hourly: bool
    fetch_delay_days: int
    catchup_days: int
    # The matched Cliniko businesses' zones as last fetched; None before the first fetch.
    time_zones: tuple[str | None, ...] | None

    def runnable_at(self, partition_date: date) -> datetime:
        return rules.runnable_at(partition_date, self.fetch_delay_days, self.time_zones)

    def close_at(self, partition_date: date) -> datetime:
        return rules.close_time(rules.target_day(partition_date, self.fetch_delay_days), self.time_zones)

    def horizon_end(self, partition_date: date) -> datetime:
        return rules.horizon_end(self.runnable_at(partition_date), self.frequency, self.catchup_days)

    def within_horizon(self, runnable: datetime, at: datetime) -> bool:
        return rules.within_horizon(runnable, at, self.frequency, self.catchup_days)


@dataclass(frozen=True)
class History:
    """Where one partition stands, from its runs (`calendar.partition_states`)."""

    runs: int = 0
    closed_at: datetime | None = None
    failures_in_a_row: int = 0
    last_failed_at: datetime | None = None
    last_error: str | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


@dataclass(frozen=True)
class Request:
    partition_date: date
    reason: str  # 'due' (a due time wants it) or 'retry' (it failed and its backoff has passed)
    partial: bool  # it starts before the partition's close time: a later run must close it


@dataclass
class Plan:
    due_at: datetime | None
    requests: list[Request] = field(default_factory=list)
    advance_to: datetime | None = None  # the new nextRunTime, once the due time is handled
    failing: list[date] = field(
        default_factory=list
    )  # unclosed, failed FAILURES_BEFORE_ALERT+ times in a row
    # A partition was due at two due times and nothing of the mapping closed since: `stall_ongoing`. The
    # alert is raised (`stalled`) once nothing of the mapping is running or about to, and stays open while
    # the stall goes on, retries included.
    stall_ongoing: bool = False
    stalled: bool = False
    before_partitions_start: list[date] = field(default_factory=list)


def candidate_dates(schedule: Schedule, now: datetime) -> list[date]:
    """Partition dates that can be inside the horizon at `now`, oldest first, within the mapping's scope."""
    today = now.astimezone(UTC).date()
    # R(D) <= D + 1.5 days, and the latest due time may lie up to one frequency before now: D older than this
    # is outside the horizon of every due time a tick can handle.
    reach = schedule.catchup_days + 2 * schedule.frequency.days + 3
    first = max(rules.scope_start(schedule.first_run_time, date.min), today - timedelta(days=reach))
    return [first + timedelta(days=k) for k in range((today - first).days + 1)]


def plan(
    schedule: Schedule,
    now: datetime,
    history: Mapping[date, History],
    in_flight: set[date],
    requested_for_due: set[date],
    partitions_start: date,
) -> Plan:
    """The requests, the `nextRunTime` advance and the alerts for one tick at `now`."""
    due_at = rules.latest_due(schedule.next_run_time, schedule.frequency, now)
    result = Plan(due_at=due_at)
    closed = [h.closed_at for h in history.values() if h.closed_at is not None]
    last_closed = max(closed) if closed else None
    requests: dict[date, Request] = {}
    # The due time last handled (the current one, or the one before nextRunTime) and the one before it: a
    # partition runnable by the earlier one and still open has been due twice.
    last_due = due_at or schedule.next_run_time - schedule.frequency
    earlier_due = last_due - schedule.frequency
    overdue = False
    for day in candidate_dates(schedule, now):
        past = history.get(day, History())
        if past.closed:
            continue
        if past.failures_in_a_row >= rules.FAILURES_BEFORE_ALERT:
            result.failing.append(day)
        runnable = schedule.runnable_at(day)
        request = None
        if due_at is not None and day not in in_flight | requested_for_due:
            if runnable <= due_at and schedule.within_horizon(runnable, due_at):
                request = Request(day, "due", partial=False)
            elif schedule.hourly and day == due_at.date():
                request = Request(day, "due", partial=True)
        if (
            request is None
            and past.failures_in_a_row
            and past.last_failed_at is not None
            and day not in in_flight
            and runnable <= now
            and schedule.within_horizon(runnable, now)
            and now >= past.last_failed_at + rules.retry_delay(past.failures_in_a_row)
        ):
            request = Request(day, "retry", partial=False)
        if request is not None and day < partitions_start:
            result.before_partitions_start.append(day)
        elif request is not None:
            requests[day] = request
        if runnable <= earlier_due and schedule.within_horizon(runnable, last_due):
            overdue = True

    result.requests = [requests[day] for day in sorted(requests)]
    # The due time is handled once nothing is left to request for it and its own runs are over: a run may
    # have taught the calendar the clinics' zones, so the due time is planned once more with them first.
    if (
        due_at is not None
        and not any(r.reason == "due" for r in result.requests)
        and not requested_for_due & in_flight
    ):
        result.advance_to = due_at + schedule.frequency
    result.stall_ongoing = (
        overdue
        and earlier_due >= schedule.first_run_time
        and last_due <= now
        and (last_closed is None or last_closed < earlier_due)
    )
    result.stalled = result.stall_ongoing and not in_flight and not result.requests
    return result


@dataclass(frozen=True)
class CatchUp:
    """What the scheduler does with a `nextRunTime` that lies in the past, for a mapping with no runs yet."""

    due_at: datetime  # the due time its first tick handles: the latest at or before now
    run: list[date]  # the partitions that due time requests, oldest first (`plan`)
    skipped: list[date]  # older partitions of its scope that were due but lie outside the catch-up horizon
    next_run_time: datetime  # nextRunTime once that due time is handled


def catch_up(schedule: Schedule, now: datetime) -> CatchUp | None:
    """The first tick's catch-up for `schedule` at `now` (None while `next_run_time` is still ahead).

    The scheduler does not replay each missed due time: the latest one runs every partition of the mapping's
    scope that has become runnable and lies inside the horizon, and the older ones are `skipped`. A mapping
    that already ran has fewer: partitions it closed are not run again.
    """
    found = plan(schedule, now, {}, set(), set(), date.min)
    if found.due_at is None:
        return None
    run = [request.partition_date for request in found.requests]
    skipped = []
    day = rules.scope_start(schedule.first_run_time, date.min)
    while day <= found.due_at.date():
        runnable = schedule.runnable_at(day)
        if runnable <= found.due_at and not schedule.within_horizon(runnable, found.due_at):
            skipped.append(day)
        day += timedelta(days=1)
    return CatchUp(found.due_at, run, skipped, found.due_at + schedule.frequency)
