"""The calendar of SPEC §8 as pure functions: close times, due times, the catch-up horizon, retry backoff.

No Dagster, no database, no clock: every function takes the instant it reasons about, so a test can pin any
moment, time zone and DST change. For a mapping M and partition date D with target day T = D - fetch delay:

- **close time** C(D): the latest local midnight that ends T over M's matched Cliniko businesses. Before it an
  appointment of T may still be running somewhere M has a clinic.
- **runnable at** R(D) = max(C(D), D 00:00 UTC): T is over everywhere, and D itself has come (a fetch delay
  of d days asks on day D, d days after the visit, never before).
- **due times**: `nextRunTime + k * frequency`. At a due time t the scheduler runs every unclosed D with
  R(D) <= t inside the catch-up horizon, oldest first; an hours frequency also runs today's D as a partial
  run. The latest due time covers the ones a stopped daemon missed: it runs the same partitions.
- **catch-up horizon**: D is run at t only while t - R(D) < frequency + `customer.catchup.days`. A partition
  gets its normal due time (at most one frequency after it becomes runnable) plus that many days of retries
  and catch-up; older ones are `skipped`. (SPEC §8 words the horizon as "target day more than N days before
  the due time"; measured from R(D) instead, a fetch delay longer than the horizon and a horizon of 0 still
  leave every partition its one normal run.)
- **retries**: a failed partition is requested again after `retry_delay(failures in a row)` until it closes or
  leaves the horizon.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Before a mapping's businesses were ever fetched their zones are unknown: assume the last place on Earth
# where a day ends (UTC-12), so no partition is taken for closed before it could be anywhere.
LATEST_ZONE = "Etc/GMT+12"
FIRST_RETRY_DELAY = timedelta(minutes=10)
MAX_RETRY_DELAY = timedelta(hours=6)
FAILURES_BEFORE_ALERT = 3


def zone(time_zone_identifier: str | None) -> ZoneInfo:
    """A Cliniko business's IANA zone; UTC when Cliniko has none or one we cannot resolve."""
    try:
        return ZoneInfo(time_zone_identifier) if time_zone_identifier else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def target_day(partition_date: date, fetch_delay_days: int) -> date:
    """The local calendar day whose appointments partition `partition_date` asks about."""
    return partition_date - timedelta(days=fetch_delay_days)


def local_day_window(day: date, time_zone_identifier: str | None) -> tuple[datetime, datetime]:
    """[start, end) in UTC of local calendar `day`; 23 or 25 hours long on DST change days."""
    return _local_midnight(day, time_zone_identifier), _local_midnight(
        day + timedelta(days=1), time_zone_identifier
    )


def _local_midnight(day: date, time_zone_identifier: str | None) -> datetime:
    """The instant local `day` begins, in UTC. Where DST skips midnight, the instant of the change; where the
    clock passes midnight twice (falls back from 01:00), the first pass: the day before ended there."""
    return datetime.combine(day, time.min, tzinfo=zone(time_zone_identifier)).astimezone(UTC)


def close_time(target: date, time_zones: Iterable[str | None] | None) -> datetime:
    """C(D): the latest local midnight ending `target` over the businesses' zones (None: unknown, see
    `LATEST_ZONE`; a business without a zone is in UTC)."""
    zones = [LATEST_ZONE] if time_zones is None else list(time_zones) or [LATEST_ZONE]
    return max(_local_midnight(target + timedelta(days=1), tz) for tz in zones)


def runnable_at(
    partition_date: date, fetch_delay_days: int, time_zones: Iterable[str | None] | None
) -> datetime:
    """R(D) = max(C(D), D 00:00 UTC): from this instant on a run of D can close it."""
    start_of_day = datetime.combine(partition_date, time.min, tzinfo=UTC)
    return max(close_time(target_day(partition_date, fetch_delay_days), time_zones), start_of_day)


def latest_due(next_run_time: datetime, frequency: timedelta, now: datetime) -> datetime | None:
    """The latest due time at or before `now` (None while `next_run_time` is still ahead)."""
    if next_run_time > now:
        return None
    return next_run_time + ((now - next_run_time) // frequency) * frequency


def within_horizon(runnable: datetime, at: datetime, frequency: timedelta, catchup_days: int) -> bool:
    """Whether a partition runnable since `runnable` may still be launched at `at` (see the module doc)."""
    return at - runnable < frequency + timedelta(days=catchup_days)


def horizon_end(runnable: datetime, frequency: timedelta, catchup_days: int) -> datetime:
    """The first instant at which the scheduler no longer launches the partition (it becomes `skipped`)."""
    return runnable + frequency + timedelta(days=catchup_days)


def retry_delay(failures_in_a_row: int) -> timedelta:
    """How long after its last failure a partition is tried again: 10 min, doubling, at most 6 h."""
    doublings = min(max(failures_in_a_row - 1, 0), 16)  # 2**16 * 10 min is far past the cap; no overflow
    return min(FIRST_RETRY_DELAY * 2**doublings, MAX_RETRY_DELAY)


def scope_start(first_run_time: datetime, partitions_start: date) -> date:
    """The first partition date the scheduler answers for: the day before the mapping's first due time."""
    return max(first_run_time.astimezone(UTC).date() - timedelta(days=1), partitions_start)
