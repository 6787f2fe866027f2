"""Integration registry: groups, triggers and mappings (SPEC §2), and the read API the pipeline uses.

    from pipeline.registry import Registry
    reg = Registry.open(load_settings())
    for mapping in reg.mappings():            # active mappings, properties resolved, keys as Secret
        mapping.cliniko_api_key.reveal()      # plaintext only here, in this process

The admin API lives in `pipeline.registry.api` (imported only by the `admin` command, so the pipeline does not
load FastAPI).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.registry.model import (
    BIRDEYE_API_KEY,
    CATCHUP_DAYS,
    CLINIKO_API_KEY,
    COOLOFF_DAYS,
    DEFAULT_CATCHUP_DAYS,
    EXCLUDED_TYPES,
    FETCH_DELAY,
    LOCATION_NAME,
    MAPPING_ONLY_KEYS,
    RegistryError,
    effective_properties,
    excluded_type_names,
    location_names,
    parse_run_time,
)
from pipeline.registry.secrets import Secret
from pipeline.registry.store import RegistryStore
from pipeline.settings import Settings

__all__ = ["MappingConfig", "Registry", "RegistryError", "Secret"]


@dataclass(frozen=True)
class MappingConfig:
    """One mapping with its group's properties applied under its own: what a run of that mapping needs."""

    business_number: str
    group_id: int
    parent_business_number: str
    active: bool
    test: bool
    beta: bool
    frequency_value: int
    frequency_unit: str
    next_run_time: datetime
    # The first due time: the scheduler is responsible for partitions from the day before it (SPEC §8).
    first_run_time: datetime
    updated_at: datetime  # the mapping's own last change (its properties, flags or schedule)
    cliniko_api_key: Secret | None
    birdeye_api_key: Secret | None
    fetch_delay_days: int
    cooloff_days: int
    catchup_days: int
    location_names: tuple[str, ...]
    # Keys the mapping sets itself (besides its own location names), overriding the group or the default.
    overridden_keys: frozenset[str]
    # Cliniko appointment type names whose visits never produce a request (the group's, or the mapping's own).
    excluded_appointment_types: tuple[str, ...] = ()


def _config(row: dict, group: dict[str, str | Secret], own: dict[str, str | Secret]) -> MappingConfig:
    resolved = {key: value for key, (_, value) in effective_properties(group, own).items()}
    return MappingConfig(
        business_number=row["business_number"],
        group_id=row["group_id"],
        parent_business_number=row["parent_business_number"],
        active=bool(row["active"]),
        test=bool(row["test"]),
        beta=bool(row["beta"]),
        frequency_value=row["frequency_value"],
        frequency_unit=row["frequency_unit"],
        next_run_time=parse_run_time(row["next_run_time"], "nextRunTime"),
        first_run_time=parse_run_time(row["first_run_time"], "firstRunTime"),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        cliniko_api_key=resolved.get(CLINIKO_API_KEY),  # type: ignore[arg-type]
        birdeye_api_key=resolved.get(BIRDEYE_API_KEY),  # type: ignore[arg-type]
        fetch_delay_days=int(resolved.get(FETCH_DELAY, "0")),  # type: ignore[arg-type]
        cooloff_days=int(resolved.get(COOLOFF_DAYS, "0")),  # type: ignore[arg-type]
        catchup_days=int(resolved.get(CATCHUP_DAYS, str(DEFAULT_CATCHUP_DAYS))),  # type: ignore[arg-type]
        location_names=location_names(own[LOCATION_NAME]) if LOCATION_NAME in own else (),  # type: ignore[arg-type]
        excluded_appointment_types=excluded_type_names(resolved.get(EXCLUDED_TYPES, "")),  # type: ignore[arg-type]
        overridden_keys=frozenset(own) - MAPPING_ONLY_KEYS,
    )


class Registry:
    """Read access to the registry for the pipeline, plus the sensor's compare-and-set of run times."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    @classmethod
    def open(cls, settings: Settings) -> Registry:
        """Open (and on first use create) `settings.registry_path` with the configured secret key."""
        return cls(RegistryStore.open(settings))

    def mappings(self, active_only: bool = True) -> list[MappingConfig]:
        """Mappings ordered by business number; inactive ones only when `active_only` is False."""
        return [_config(*record) for record in self.store.mapping_records(active_only=active_only)]

    def mapping(self, business_number: str) -> MappingConfig | None:
        """One mapping, active or not; None if the business is not mapped."""
        records = self.store.mapping_records(active_only=False, business_number=business_number)
        return _config(*records[0]) if records else None

    def changes(self) -> list[dict]:
        """The whole audit trail, newest first, as stored (secrets masked): for the analysts' database."""
        return self.store.audit_rows()

    def last_change_id(self) -> int:
        """The newest change of the audit trail (0: none yet): a copy of `changes()` with it is current."""
        return self.store.last_change_id()

    def advance_next_run_time(self, business_number: str, expected: datetime, new: datetime) -> bool:
        """Move a mapping's next run time from `expected` to `new`; False if someone else moved it first."""
        return self.store.advance_next_run_time(business_number, expected, new)
