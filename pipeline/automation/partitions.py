"""Work is partitioned by mapping x day: key strings read `YYYY-MM-DD|<businessNumber>`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from pipeline.leases import holder_alive
from pipeline.registry.model import MAX_CATCHUP_DAYS, MAX_FREQUENCY
from pipeline.settings import load_settings

MAPPING_DIMENSION = "mapping"
DATE_DIMENSION = "date"
# How far back the calendar may ask for a partition (SPEC §8): one frequency plus the catch-up horizon before
# a due time, at their largest, and the two days by which a partition's close time can follow its date.
FURTHEST_BACK_DAYS = MAX_FREQUENCY["days"] + MAX_CATCHUP_DAYS + 2
# The first day of the `date` partitions: `PARTITIONS_START` if set, else FURTHEST_BACK_DAYS before the day
# the code location loads. So the UI counts the days the product may still answer for (a window that slides,
# not every day since 2024), and every partition the scheduler may request exists in every process, whenever
# each started (one started later has a later first day, but the scheduler asks only that far back from
# now). Earlier days exist once PARTITIONS_START says so (`cliniko-reviews run` on purpose, or history).
PARTITIONS_START_DATE = load_settings().partitions_start or (
    datetime.now(UTC).date() - timedelta(days=FURTHEST_BACK_DAYS)
)
PARTITIONS_START = PARTITIONS_START_DATE.isoformat()

mapping_partitions = dg.DynamicPartitionsDefinition(name=MAPPING_DIMENSION)
# end_offset=1 makes today's partition exist, which hourly mappings run ("today so far").
daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
mapping_day_partitions = dg.MultiPartitionsDefinition(
    {DATE_DIMENSION: daily_partitions, MAPPING_DIMENSION: mapping_partitions}
)


@dataclass(frozen=True)
class MappingDay:
    """One partition: a mapping (Birdeye business number) on one partition date."""

    business_number: str
    partition_date: date

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey(
            {DATE_DIMENSION: self.partition_date.isoformat(), MAPPING_DIMENSION: self.business_number}
        )

    def __str__(self) -> str:
        return f"{self.partition_date.isoformat()}|{self.business_number}"


def mapping_day(partition_key: str | dg.MultiPartitionKey) -> MappingDay:
    """Parse a partition key; runs launched with only the `dagster/partition` tag hand us a plain str."""
    if not isinstance(partition_key, dg.MultiPartitionKey):
        partition_key = mapping_day_partitions.get_partition_key_from_str(partition_key)
    dims = partition_key.keys_by_dimension
    return MappingDay(dims[MAPPING_DIMENSION], date.fromisoformat(dims[DATE_DIMENSION]))


# A started run takes its lease in its first step; one without a lease this long after it started is gone.
LEASE_GRACE = timedelta(minutes=10)
# A run in one of these states holds its partition: it may still write it.
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


@dataclass(frozen=True)
class RunsInFlight:
    held: list[tuple[MappingDay, dg.RunRecord]]  # queued or running: they hold their partitions
    gone: list[tuple[MappingDay, dg.RunRecord]]  # STARTED in Dagster, but their process is gone


def runs_in_flight(instance: dg.DagsterInstance, leases: Path | str, now: datetime) -> RunsInFlight:
    """The queued and running runs of mapping-day partitions, with their partitions.

    A run Dagster still calls STARTED whose process is gone (its lease is free, or it never took one long
    after it started: killed, machine restarted) is reported failed here and listed as `gone`, so its
    partition can run again. Dagster's own run monitoring cannot tell with the project's run launcher, which
    has no health check. (A run takes its lease in its first step: `RegistryResource.partition`.)
    """
    result = RunsInFlight([], [])
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=list(IN_FLIGHT))):
        run = record.dagster_run
        try:
            day = mapping_day(run.tags.get("dagster/partition"))
        except Exception:  # no partition, or a partition of another job
            continue
        if run.status == dg.DagsterRunStatus.STARTED:
            alive = holder_alive(leases, run.run_id)
            started = datetime.fromtimestamp(record.start_time or now.timestamp(), UTC)
            if alive is False or (alive is None and now - started > LEASE_GRACE):
                instance.report_run_failed(run, "the run's process is gone (killed, or its machine stopped)")
                result.gone.append((day, record))
                continue
        result.held.append((day, record))
    return result
