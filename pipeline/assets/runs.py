"""What every asset of a partition run shares: when the run started, and the failure hook that records a
failed step in `calendar.partition_runs`, so the scheduler retries the partition and `coverage` shows it."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from pipeline.automation.partitions import mapping_day
from pipeline.automation.resources import RegistryResource, WarehouseResource
from pipeline.calendar import store
from pipeline.warehouse.analysts_db import NothingToRefresh
from pipeline.warehouse.slices import ensure_tables


def started_at(instance: dg.DagsterInstance, run_id: str) -> datetime:
    """When the run started: appointments that end after it are not candidates yet (SPEC §8)."""
    record = instance.get_run_record_by_id(run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else datetime.now(UTC)


@dg.failure_hook(required_resource_keys={"registry", "warehouse"})
def record_failed_run(context: dg.HookContext) -> None:
    """Records the failed step's error as the run's outcome for its partition (`calendar.partition_runs`)
    and refreshes the analysts' database, whose `coverage` then shows the partition `failed`."""
    run = context.instance.get_run_by_id(context.run_id)
    key = run.tags.get("dagster/partition") if run else None
    if not key:
        return
    registry: RegistryResource = context.resources.registry
    warehouse: WarehouseResource = context.resources.warehouse
    day = mapping_day(key)
    mapping = registry.get().mapping(day.business_number)
    if mapping is None:
        context.log.warning(
            f"mapping {day.business_number} is no longer in the registry: failure not recorded"
        )
        return
    error = context.op_exception
    message = f"{context.op.name}: {error}" if error else f"{context.op.name} failed"
    with (
        warehouse.connect(mapping.group_id) as con,
        store.shared_runs(warehouse.settings.database_url) as shared,
    ):
        ensure_tables(con)
        store.record_failure(
            con,
            run_id=context.run_id,
            business_number=day.business_number,
            partition_date=day.partition_date,
            group_id=mapping.group_id,
            run_started_at=started_at(context.instance, context.run_id),
            error=message,
            now=datetime.now(UTC),
            shared=shared,
        )
    try:
        warehouse.refresh_analysts_db(registry.get(), group_id=mapping.group_id)
    except NothingToRefresh as problem:
        context.log.info(f"analysts' database not refreshed: {problem}")
