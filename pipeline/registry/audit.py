"""The registry's audit trail: who changed which group or mapping, when, through which route, and how.

The store (`pipeline.registry.store`) writes one row per change, in the transaction of the change, so a change
and its row commit together or not at all. This module holds what needs no database: who is changing
(`Actor`), how an entity's state is compared and described (`changed_fields`), how it is stored as JSON with
secrets masked (`to_json`), and how a stored row is shown by the admin API (`entry_view`).

What is recorded: creating and updating groups (their properties and triggers) and mappings (their
properties, flags, frequency and next run time), as made through the store by any client (the admin API, the
dashboard, a script). A request that changes nothing (the manual's idempotent replays, an empty PATCH) leaves
no row. Not recorded: the scheduler moving `nextRunTime` after each due time (`advance_next_run_time`), which
is the calendar keeping its own clock, not a change to the set-up.

Secret values (`*.api.key`) are stored and shown only masked (`pipeline.masking.mask`: the last 4
characters). A key replaced by another with the same last 4 characters still counts as a change: secrets are
compared by value (`MaskedSecret`), never by what is shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.registry.secrets import Secret

CLI_USER = "cli"  # who makes a change in process (a command, a script): no token, no route
LOCAL_USER = "local"  # who makes a change through the admin API when it runs without tokens


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through what: the admin token's name (`local` without tokens) with the HTTP
    method and route template, or `cli` for a change made in process."""

    name: str
    method: str | None = None
    route: str | None = None


CLI = Actor(CLI_USER)


class MaskedSecret:
    """A secret property's value in an entity's state: shown as its stored mask, compared by its value (the
    decrypted `Secret`, or the stored ciphertext when the registry's key cannot read it)."""

    __slots__ = ("shown", "_value")

    def __init__(self, shown: str, value: Secret) -> None:
        self.shown = shown
        self._value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskedSecret) and self._value == other._value

    def __hash__(self) -> int:
        return hash(self.shown)

    def __repr__(self) -> str:
        return f"MaskedSecret({self.shown!r})"


def _shown(value: Any) -> Any:
    return value.shown if isinstance(value, MaskedSecret) else value


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`[{field, before, after, secret}]` for every field whose value differs between two states of an
    entity (None: it did not exist), in the order of the newer state, secrets masked (`secret` says so: a key
    replaced by one with the same last 4 characters shows the same mask twice). Empty if nothing changed."""
    old, new = before or {}, after or {}
    fields = list(new) + [field for field in old if field not in new]
    return [
        {
            "field": field,
            "before": _shown(old.get(field)),
            "after": _shown(new.get(field)),
            "secret": isinstance(old.get(field), MaskedSecret) or isinstance(new.get(field), MaskedSecret),
        }
        for field in fields
        if old.get(field) != new.get(field)
    ]


def to_json(value: Any) -> str | None:
    """An entity's state (or a list of changed fields) as stored: JSON, secrets only as their mask."""
    if value is None:
        return None
    return json.dumps(
        {field: _shown(item) for field, item in value.items()} if isinstance(value, dict) else value,
        separators=(",", ":"),
    )


def entry_view(row: dict[str, Any]) -> dict[str, Any]:
    """One stored change as the admin API shows it."""
    return {
        "id": row["change_id"],
        "changedAt": row["changed_at"],
        "changedBy": row["changed_by"],
        "method": row["method"],
        "route": row["route"],
        "action": row["action"],
        "entityKind": row["entity_kind"],
        "entityId": row["entity_id"],
        "businessNumber": row["business_number"],
        "groupId": row["group_id"],
        "changes": json.loads(row["changes"]),
        "before": json.loads(row["before_state"]) if row["before_state"] is not None else None,
        "after": json.loads(row["after_state"]),
    }
