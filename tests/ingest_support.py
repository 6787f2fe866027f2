"""A Cliniko sandbox for asset-level tests: the emulator on a free loopback port, a registry with one group
holding the account's key, mappings added in one line, a mapping-day materialized in one call, and the raw
tables read back without their load times (so two runs can be compared).

    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox, dg.instance_for_test() as instance:
        sandbox.map("5001", "Sydney CBD Physio", fetch_delay=1)
        sandbox.materialize(instance, "5001", date(2026, 1, 10))
        sandbox.rows("raw.cliniko_appointments", "5001")

`tests/conftest.py` puts this directory on `sys.path`, so any test can import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from pipeline.assets.ingest import (
    cliniko_appointment_types,
    cliniko_appointments,
    cliniko_businesses,
    cliniko_patients,
)
from pipeline.automation.partitions import MAPPING_DIMENSION, MappingDay
from pipeline.automation.resources import system_resources
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.store import RegistryStore
from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig
from pipeline.sandbox.generator import Account
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import load_settings

INGEST_ASSETS = (cliniko_businesses, cliniko_appointment_types, cliniko_appointments, cliniko_patients)
RAW_TABLES = (
    "raw.cliniko_businesses",
    "raw.cliniko_appointment_types",
    "raw.cliniko_appointments",
    "raw.cliniko_group_appointments",
    "raw.cliniko_attendees",
    "raw.cliniko_patients",
    "raw.cliniko_practitioners",
    "raw.cliniko_quarantine",
)
# Columns that differ between two runs of the same partition by design.
RUN_TIME_COLUMNS = frozenset({"loaded_at", "quarantined_at"})
PARENT_BUSINESS_NUMBER = "9000"


@dataclass
class ClinikoSandbox:
    """One emulator serving `account`, and a registry whose group holds the account's API key."""

    data_dir: Path
    account: Account
    emulator: ClinikoEmulator
    base_url: str
    store: RegistryStore
    group_id: int

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse" / f"group-{self.group_id}.duckdb"

    def map(
        self,
        business_number: str,
        location_names: str,
        *,
        fetch_delay: int | None = None,
        api_key: str | None = None,
        excluded_types: str | None = None,
    ) -> str:
        """Map a Birdeye location to Cliniko businesses by name; `api_key` overrides the group's key,
        `excluded_types` its `cliniko.appointment.types.excluded`."""
        properties = [PropertyInput("cliniko.location.name", location_names, False, "p0")]
        if excluded_types is not None:
            properties.append(
                PropertyInput("cliniko.appointment.types.excluded", excluded_types, False, "p3")
            )
        if fetch_delay is not None:
            properties.append(PropertyInput("customer.fetch.delay", str(fetch_delay), False, "p1"))
        if api_key is not None:
            properties.append(PropertyInput("cliniko.api.key", api_key, True, "p2"))
        self.store.create_mapping(MappingInput(business_number, self.group_id, properties))
        return business_number

    def materialize(
        self,
        instance: dg.DagsterInstance,
        business_number: str,
        partition_date: date,
        *,
        assets: Sequence[dg.AssetsDefinition] = INGEST_ASSETS,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Materialize one mapping-day of `assets` in process, as the daemon's run would."""
        if not instance.has_dynamic_partition(MAPPING_DIMENSION, business_number):
            instance.add_dynamic_partitions(MAPPING_DIMENSION, [business_number])
        return dg.materialize(
            list(assets),
            partition_key=str(MappingDay(business_number, partition_date).key),
            instance=instance,
            resources=system_resources(),
            raise_on_error=raise_on_error,
        )

    def rows(
        self, table: str, business_number: str | None = None, partition_date: date | None = None
    ) -> list[dict[str, Any]]:
        """`table`'s rows (all, or one mapping's, or one mapping-day's) without run-time columns, sorted."""
        return table_rows(self.warehouse, table, business_number, partition_date)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every raw table without run-time columns: two equal snapshots mean two runs stored the same."""
        return {table: self.rows(table) for table in RAW_TABLES}


def table_rows(
    warehouse: Path, table: str, business_number: str | None = None, partition_date: date | None = None
) -> list[dict[str, Any]]:
    """Rows of a raw table in `warehouse` as dicts, minus run-time columns, in a stable order."""
    if not warehouse.exists():
        return []
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        if not con.execute(
            "select count(*) from duckdb_tables() where schema_name || '.' || table_name = $t", {"t": table}
        ).fetchone()[0]:
            return []
        columns = [c[0] for c in con.execute(f"describe {table}").fetchall() if c[0] not in RUN_TIME_COLUMNS]
        where, params = ["true"], {}
        if business_number is not None:
            where.append("business_number = $bn")
            params["bn"] = business_number
        if partition_date is not None:
            where.append("partition_date = $d")
            params["d"] = partition_date
        select = ", ".join(columns)
        result = con.execute(
            f"select {select} from {table} where {' and '.join(where)} order by {select}", params
        ).fetchall()
    finally:
        con.close()
    return [dict(zip(columns, row, strict=True)) for row in result]


@contextmanager
def cliniko_sandbox(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    account: Account,
    **emulator_options: Any,
) -> Iterator[ClinikoSandbox]:
    """Serve `account` (emulator options such as `faults=` or `rate_limit=` pass through) and point
    DATA_DIR and CLINIKO_BASE_URL at this sandbox for the duration."""
    emulator = ClinikoEmulator(
        ClinikoEmulatorConfig(accounts=[account], shard=account.shard, **emulator_options)
    )
    try:
        with running_cliniko(emulator) as base_url:
            monkeypatch.setenv("DATA_DIR", str(data_dir))
            monkeypatch.setenv("CLINIKO_BASE_URL", base_url)
            monkeypatch.delenv("REGISTRY_SECRET_KEY", raising=False)
            monkeypatch.delenv("CLINIKO_RATE_LIMIT_PER_MINUTE", raising=False)
            store = RegistryStore.open(load_settings())
            group, _ = store.create_group(
                PARENT_BUSINESS_NUMBER,
                118,
                [PropertyInput("cliniko.api.key", account.api_key, True, "g0")],
                [TriggerInput(129, 1, None, "t0")],
            )
            yield ClinikoSandbox(data_dir, account, emulator, base_url, store, group["groupId"])
    finally:
        emulator.close()


def event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Everything the instance stored about a run (messages, errors, metadata), as one searchable string."""
    return "\n".join(dg.serialize_value(entry) for entry in instance.all_logs(run_id))
