"""What a caller asks the store to write: the admin API builds these from request bodies, tests and scripts
build them directly. `field` is the input's path in the request body, for error messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.registry.model import Frequency


@dataclass(frozen=True)
class PropertyInput:
    """One requested property; `field` is its path in the request body, for error messages."""

    key: str
    value: str
    is_secure: bool
    field: str


@dataclass(frozen=True)
class TriggerInput:
    trigger_id: int
    trigger_type_id: int
    action_ids: tuple[int, ...] | None
    field: str


@dataclass(frozen=True)
class MappingInput:
    business_number: str
    group_id: int
    properties: Sequence[PropertyInput]
    active: bool = True
    test: bool = False
    beta: bool = False
    frequency: Frequency | None = None
    next_run_time: datetime | None = None


@dataclass(frozen=True)
class MappingPatch:
    """PATCH semantics: None leaves a field as it is."""

    properties: Sequence[PropertyInput] | None = None
    remove_keys: Sequence[str] | None = None
    active: bool | None = None
    test: bool | None = None
    beta: bool | None = None
    frequency: Frequency | None = None
    next_run_time: datetime | None = None
