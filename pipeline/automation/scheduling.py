"""When a mapping is due and which partition a due time runs: pure functions, no Dagster, no clock.

A mapping's `nextRunTime` is its next due time. A due time `t` runs:
- for a frequency in days: yesterday's partition, `t.date() - 1` (the last complete day);
- for a frequency in hours: the partition of the day the interval ending at `t` belongs to,
  `(t - 1 s).date()`: "today so far", and at midnight the run that closes yesterday.
After it is handled, `nextRunTime` advances by the frequency (one step per due time: missed due times are
caught up one by one, never skipped).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pipeline.registry import MappingConfig


def frequency(mapping: MappingConfig) -> timedelta:
    if mapping.frequency_unit == "hours":
        return timedelta(hours=mapping.frequency_value)
    return timedelta(days=mapping.frequency_value)


def partition_date_for(mapping: MappingConfig, due_at: datetime) -> date:
    """The partition date a due time runs (see the module docstring)."""
    if mapping.frequency_unit == "hours":
        return (due_at - timedelta(seconds=1)).date()
    return due_at.date() - timedelta(days=1)


def due_key(mapping: MappingConfig, due_at: datetime) -> str:
    """Identifies one due time of one mapping; it is the sensor's run key."""
    return f"{mapping.business_number}@{due_at.isoformat()}"


def on_daily_schedule(mapping: MappingConfig) -> bool:
    """The daily schedule covers active mappings whose frequency is exactly one day; others have their own
    cadence, run by the sensor alone."""
    return mapping.active and mapping.frequency_unit == "days" and mapping.frequency_value == 1
