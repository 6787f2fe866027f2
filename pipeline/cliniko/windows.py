"""The target day of a partition and its UTC window in a Cliniko business's time zone (SPEC §3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def target_day(partition_date: date, fetch_delay_days: int) -> date:
    """The local calendar day whose appointments partition `partition_date` asks about."""
    return partition_date - timedelta(days=fetch_delay_days)


def zone(time_zone_identifier: str | None) -> ZoneInfo:
    """The business's IANA zone; UTC when Cliniko has none or one we cannot resolve."""
    try:
        return ZoneInfo(time_zone_identifier) if time_zone_identifier else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_day_window(day: date, time_zone_identifier: str | None) -> tuple[datetime, datetime]:
    """[start, end) in UTC of local calendar `day`; 23 or 25 hours long on DST change days."""
    tz = zone(time_zone_identifier)
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)
