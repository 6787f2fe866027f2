"""The resources of the assets and the sensors, one per outside system, each built from the settings:

- `RegistryResource` (key `registry`): the registry, opened once per run or tick, and the partition a step
  builds (`partition`: its mapping, the upstream data it needs, the run's lease).
- `WarehouseResource` (key `warehouse`): the group's warehouse file, the alerts, the analysts' database.
- `ClinikoResource` (key `cliniko`) and `BirdeyeResource` (key `birdeye`): the clients, with the settings'
  base URLs, user agent and rate limits.

Each nests one `SettingsResource`, the settings from the environment with `data_dir` overriding DATA_DIR.
`system_resources` gives them all the same one, so a `data_dir` given there points the assets and the sensors
at the same registry and warehouse; neither reads the environment on its own. Assets and sensors take as
parameters the resources they use. No API key passes through resource config: the assets read the keys from
the registry and hand them to the clients, in process memory only.

Nothing is opened when Dagster initializes them (every run initializes every resource): the settings and the
registry are read on first use, once per resource.

Also here: what every process that reaches the warehouse calls first (`split_legacy_warehouse`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from pipeline.automation.partitions import MappingDay, mapping_day
from pipeline.cliniko import ClinikoClient
from pipeline.leases import hold
from pipeline.registry import MappingConfig, Registry
from pipeline.settings import Settings, load_settings
from pipeline.sink import post_review_requests
from pipeline.warehouse import connect


class SettingsResource(dg.ConfigurableResource):
    """Settings from the environment (DATA_DIR, base URLs, user agent, rate limits); `data_dir` overrides
    DATA_DIR. Nested in every other resource, never a resource key of its own."""

    data_dir: str | None = None

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings()
        return replace(settings, data_dir=Path(self.data_dir)) if self.data_dir else settings


class _FromSettings(dg.ConfigurableResource):
    """A resource built from the settings of its nested `SettingsResource`."""

    environment: SettingsResource

    @property
    def settings(self) -> Settings:
        return self.environment.settings


class RegistryResource(_FromSettings):
    """The registry of mappings and their keys, and the partition a step builds."""

    @cached_property
    def _registry(self) -> Registry:
        # Opening checks the schema and loads the secret key: once per resource, not once per asset. Every
        # read is still its own transaction, so a run sees the registry as it is now.
        registry = Registry.open(self.settings)
        split_legacy_warehouse(self.settings, registry)
        return registry

    def get(self) -> Registry:
        """The registry, opened on first use."""
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
        mapping = self.get().mapping(day.business_number)
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


class WarehouseResource(_FromSettings):
    """Each integration group's warehouse file, the calendar's alerts (a file beside them, or PostgreSQL
    with DATABASE_URL), and the analysts' database refreshed from the warehouse files."""

    def path(self, group_id: int) -> Path:
        return self.settings.warehouse_path(group_id)

    def connect(self, group_id: int) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """The group's warehouse for one short unit of work (`pipeline.warehouse.connect`)."""
        return connect(self.path(group_id))

    def refresh_analysts_db(
        self, registry: Registry, now: datetime | None = None, *, group_id: int | None = None
    ) -> dict[str, int]:
        """Refresh `analytics.duckdb` (with `coverage` and `registry_changes`) from the partitions that
        changed in `group_id`'s warehouse file, or in every group's if None: what the sink's last asset, the
        failure hook and the sensor share."""
        from pipeline.automation.partitions import PARTITIONS_START_DATE
        from pipeline.calendar import coverage

        settings = self.settings
        return coverage.refresh(
            list(settings.warehouse_paths().values()),
            settings.alerts,
            settings.analytics_path,
            registry.mappings(active_only=False),
            PARTITIONS_START_DATE,
            now,
            changed=None if group_id is None else [settings.warehouse_path(group_id)],
            registry_changes=coverage.AuditTrail(registry.last_change_id(), registry.changes),
        )


class ClinikoResource(_FromSettings):
    """Cliniko's API, at the settings' base URL, user agent and rate limit."""

    def client(self, api_key: str) -> ClinikoClient:
        """A client for the account of `api_key` (a mapping's key, read from the registry); use it as a
        context manager."""
        return ClinikoClient(api_key, settings=self.settings)


class BirdeyeResource(_FromSettings):
    """Birdeye's check-in API, at the settings' base URL, concurrency and rate limit."""

    def post(
        self, warehouse_path: Path, rows: Iterable[Mapping[str, Any]], *, api_key: str | None
    ) -> dict[str, int]:
        """Post the pending requests among `rows` through the ledger of `warehouse_path` with `api_key` (a
        mapping's key, read from the registry): `pipeline.sink.post_review_requests`."""
        settings = self.settings
        return post_review_requests(
            warehouse_path,
            rows,
            api_key=api_key,
            rate_limit_dir=settings.rate_limit_dir,
            database_url=settings.database_url,
            base_url=settings.birdeye_base_url,
            concurrency=settings.birdeye_concurrency,
            rate_per_second=settings.birdeye_rate_limit_per_second,
        )


def system_resources(data_dir: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of `Definitions`, keyed by system, all built from one `SettingsResource(data_dir)`."""
    environment = SettingsResource(data_dir=data_dir)
    return {
        "registry": RegistryResource(environment=environment),
        "warehouse": WarehouseResource(environment=environment),
        "cliniko": ClinikoResource(environment=environment),
        "birdeye": BirdeyeResource(environment=environment),
    }


def split_legacy_warehouse(settings: Settings, registry: Registry) -> None:
    """Move a warehouse of a release before per-group files into them, once (see `pipeline.warehouse.legacy`):
    every process that reaches the warehouse calls this first."""
    if settings.legacy_warehouse_path.exists():
        from pipeline.warehouse.legacy import split_legacy

        group_of = {m.business_number: m.group_id for m in registry.mappings(active_only=False)}
        split_legacy(settings.legacy_warehouse_path, settings.warehouse_path, group_of, settings.alerts_path)
