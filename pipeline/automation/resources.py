"""The one resource the assets and the sensors share: the settings, the registry they point at, and the
partition being built. Secrets come from the registry.

Assets and sensors take it as a parameter (`pipeline: PipelineResource`), so a `data_dir` given to it in
`Definitions` points both at the same registry and warehouse; neither reads the environment on its own.
Also here: what the sink's last asset, the failure hook and the sensor share (`refresh_analysts_db`,
`split_legacy_warehouse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path

import dagster as dg

from pipeline.automation.partitions import MappingDay, mapping_day
from pipeline.leases import hold
from pipeline.registry import MappingConfig, Registry
from pipeline.settings import Settings, load_settings


class PipelineResource(dg.ConfigurableResource):
    """Settings from the environment (DATA_DIR, base URLs, user agent). `data_dir` overrides DATA_DIR.

    No API key passes through here: assets read them from the registry, in process memory only.
    """

    data_dir: str | None = None

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings()
        return replace(settings, data_dir=Path(self.data_dir)) if self.data_dir else settings

    @cached_property
    def _registry(self) -> Registry:
        # Opening checks the schema and loads the secret key: once per resource, not once per asset. Every
        # read below is still its own transaction, so a run sees the registry as it is now.
        registry = Registry.open(self.settings)
        split_legacy_warehouse(self.settings, registry)
        return registry

    def registry(self) -> Registry:
        return self._registry

    def partition(
        self, context: dg.AssetExecutionContext, needs: Sequence[str] = ()
    ) -> tuple[MappingDay, MappingConfig]:
        """The partition being materialized and its mapping, which must exist and be active, and whose
        upstream assets `needs` must have been materialized for this partition (in this run or before):
        an asset run without the data it reads fails, naming what is missing, instead of succeeding green
        with nothing in it.

        Holds the run's lease from its first step on, so the calendar sensor can tell a run whose process
        died (its partition must be retried) from one that is still working.
        """
        hold(self.settings.run_leases, context.run.run_id)
        day = mapping_day(context.partition_key)
        mapping = self.registry().mapping(day.business_number)
        if mapping is None:
            raise dg.Failure(
                f"Mapping {day.business_number} is not in the registry at {self.settings.registry_location}. "
                "Create it with PUT /integration/add/businessintegrationmapping."
            )
        if not mapping.active:
            raise dg.Failure(
                f"Mapping {day.business_number} is inactive; inactive mappings are not run. "
                "Activate it through the admin API to run it."
            )
        # An upstream asset of this run ran before this step and succeeded (else this step would be
        # skipped): only the others are looked up in the event log.
        in_run = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
        missing = [
            name
            for name in needs
            if dg.AssetKey(name) not in in_run
            and not _materialized(context.instance, name, context.partition_key)
        ]
        if missing:
            asset = ", ".join(key.to_user_string() for key in sorted(context.selected_asset_keys))
            raise dg.Failure(
                f"Partition {day} (mapping {day.business_number}, {day.partition_date}): "
                f"{', '.join(missing)} was never materialized for it, so {asset} "
                "has nothing to work on and was not built. Materialize the whole graph for this partition "
                "(select the upstream assets too, or launch review_requests_job), or run "
                f"`cliniko-reviews run --date {day.partition_date} --mapping {day.business_number}`."
            )
        return day, mapping


def _materialized(instance: dg.DagsterInstance, asset: str, partition_key: str) -> bool:
    """Whether `asset` was ever materialized for `partition_key` (one indexed query of the event log)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition_key)]), limit=1
    )
    return bool(records.records)


def split_legacy_warehouse(settings: Settings, registry: Registry) -> None:
    """Move a warehouse of a release before per-group files into them, once (see `pipeline.warehouse.legacy`):
    every process that reaches the warehouse calls this first."""
    if settings.legacy_warehouse_path.exists():
        from pipeline.warehouse.legacy import split_legacy

        group_of = {m.business_number: m.group_id for m in registry.mappings(active_only=False)}
        split_legacy(settings.legacy_warehouse_path, settings.warehouse_path, group_of, settings.alerts_path)


def refresh_analysts_db(
    settings: Settings, registry: Registry, now: datetime | None = None, *, group_id: int | None = None
) -> dict[str, int]:
    """Refresh `analytics.duckdb` (with `coverage` and `registry_changes`) from the partitions that changed
    in `group_id`'s warehouse file, or in every group's if None: what the sink's last asset, the failure hook
    and the sensor share."""
    from pipeline.automation.partitions import PARTITIONS_START_DATE
    from pipeline.calendar import coverage

    return coverage.refresh(
        list(settings.warehouse_paths().values()),
        settings.alerts,
        settings.analytics_path,
        registry.mappings(active_only=False),
        PARTITIONS_START_DATE,
        now,
        changed=None if group_id is None else [settings.warehouse_path(group_id)],
        registry_changes=registry.changes(),
    )
