"""The registry's operations: every public method of `RegistryStore` is one transaction.

Every operation validates and writes inside that one transaction (`RegistryDatabase.transaction`, which
takes the write lock up front): a request that fails leaves nothing behind. A change's row in the audit trail
(`registry_audit`, see `pipeline.registry.audit`) is written in that same transaction.

The rest of the registry is split by job: the tables and migrations (`schema`), opening and locking them
(`database`), what a caller asks to write (`inputs`), the rows as the admin API shows them (`views`), the
rules that need no database (`model`), and the pipeline's read API (`pipeline.registry.Registry`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.masking import mask
from pipeline.registry.audit import CLI, Actor, MaskedSecret, changed_fields, to_json
from pipeline.registry.database import RegistryDatabase
from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
from pipeline.registry.model import (
    CLINIKO_API_KEY,
    DEFAULT_FREQUENCY,
    LOCATION_NAME,
    MAX_CATCHUP_DAYS,
    Frequency,
    RegistryError,
    check_known,
    default_next_run_time,
    format_run_time,
    is_secret_key,
    normalize_property,
)
from pipeline.registry.secrets import Secret, SecretBox, SecretKeyError, load_fernet
from pipeline.registry.views import (
    group_view,
    mapping_row,
    mapping_view,
    ordered,
    property_view,
    source_view,
    trigger_view,
)
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# Codes of the refusals the dashboard words for people (`RegistryError.code`); stable, part of the API.
GROUP_EXISTS = "group_exists"
MAPPING_EXISTS = "mapping_exists"


def _where(*conditions: tuple[str, object]) -> tuple[str, list[object]]:
    """A `WHERE` clause of the conditions whose value is not None (all rows if none), and its parameters; a
    bool binds as 0 or 1, as the flags are stored."""
    chosen = [(clause, int(value) if isinstance(value, bool) else value) for clause, value in conditions]
    chosen = [(clause, value) for clause, value in chosen if value is not None]
    return "WHERE " + " AND ".join(["1 = 1", *(clause for clause, _ in chosen)]), [v for _, v in chosen]


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class RegistryStore:
    """Groups, triggers and mappings in one SQLite file (or PostgreSQL); every public method is one
    transaction."""

    def __init__(self, path: Path, box: SecretBox, database_url: str | None = None) -> None:
        self._box = box
        self.database = RegistryDatabase(path, database_url)
        self.path = self.database.path
        self.database_url = database_url

    @classmethod
    def open(cls, settings: Settings) -> RegistryStore:
        return cls(settings.registry_path, SecretBox(load_fernet(settings)), settings.database_url)

    # -- catalogue -------------------------------------------------------------------------------------------

    def _source(self, con: sqlite3.Connection, source_id: int, field: str) -> dict:
        row = con.execute("SELECT * FROM integration_source WHERE source_id = ?", (source_id,)).fetchone()
        if row is None:
            known = ", ".join(
                f"{r['source_id']} ({r['integration_source']})"
                for r in con.execute("SELECT * FROM integration_source ORDER BY source_id")
            )
            raise RegistryError(field, f"unknown integration source {source_id}; known sources: {known}")
        return source_view(row)

    def triggers(self, source_id: int) -> list[dict]:
        """The seed's trigger list of one source (404 for an unknown source)."""
        with self.database.transaction(write=False) as con:
            try:
                self._source(con, source_id, "sourceId")
            except RegistryError as error:
                raise RegistryError(error.field, error.message, 404) from None
            rows = con.execute(
                "SELECT * FROM integration_trigger WHERE source_id = ? ORDER BY trigger_id", (source_id,)
            ).fetchall()
            return [trigger_view(row) for row in rows]

    def _resolve_triggers(
        self, con: sqlite3.Connection, source_id: int, triggers: Sequence[TriggerInput]
    ) -> list[tuple[int, int, tuple[int, ...]]]:
        resolved: list[tuple[int, int, tuple[int, ...]]] = []
        seen: set[int] = set()
        for trigger in triggers:
            row = con.execute(
                "SELECT * FROM integration_trigger WHERE trigger_id = ?", (trigger.trigger_id,)
            ).fetchone()
            if row is None:
                known = [
                    str(r[0])
                    for r in con.execute(
                        "SELECT trigger_id FROM integration_trigger WHERE source_id = ? ORDER BY 1",
                        (source_id,),
                    )
                ]
                raise RegistryError(
                    f"{trigger.field}.triggerId",
                    f"unknown trigger {trigger.trigger_id}; triggers of source {source_id}: "
                    f"{', '.join(known)}",
                )
            if row["source_id"] != source_id:
                raise RegistryError(
                    f"{trigger.field}.triggerId",
                    f"trigger {trigger.trigger_id} belongs to source {row['source_id']}, "
                    f"not to source {source_id}",
                )
            if not row["active"]:
                raise RegistryError(f"{trigger.field}.triggerId", f"trigger {trigger.trigger_id} is inactive")
            if row["trigger_type_id"] != trigger.trigger_type_id:
                raise RegistryError(
                    f"{trigger.field}.triggerTypeId",
                    f"trigger {trigger.trigger_id} has type {row['trigger_type_id']} "
                    f"({row['trigger_type_name']}), not {trigger.trigger_type_id}",
                )
            if trigger.trigger_id in seen:
                raise RegistryError(
                    f"{trigger.field}.triggerId", f"trigger {trigger.trigger_id} is listed more than once"
                )
            seen.add(trigger.trigger_id)
            actions = trigger.action_ids if trigger.action_ids is not None else (row["action_group_id"],)
            resolved.append((trigger.trigger_id, trigger.trigger_type_id, tuple(actions)))
        return resolved

    # -- properties ------------------------------------------------------------------------------------------

    @staticmethod
    def _normalize_properties(properties: Sequence[PropertyInput], level: str) -> dict[str, tuple[str, bool]]:
        result: dict[str, tuple[str, bool]] = {}
        for prop in properties:
            value = normalize_property(prop.key, prop.value, level=level, field=prop.field)
            if prop.key in result:
                raise RegistryError(f"{prop.field}.propertyKey", f"{prop.key} is given more than once")
            result[prop.key] = (value, prop.is_secure or is_secret_key(prop.key))
        return result

    def _write_properties(
        self, con: sqlite3.Connection, table: str, owner_column: str, owner: object, props: dict
    ) -> None:
        for key, (value, secure) in props.items():
            secret = is_secret_key(key)
            con.execute(
                f"""INSERT INTO {table} ({owner_column}, property_key, property_value, is_secure, encrypted,
                        masked_value) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT ({owner_column}, property_key) DO UPDATE SET
                        property_value = excluded.property_value,
                        is_secure = excluded.is_secure, encrypted = excluded.encrypted,
                        masked_value = excluded.masked_value""",
                (
                    owner,
                    key,
                    self._box.encrypt(value) if secret else value,
                    int(secure),
                    int(secret),
                    mask(value) if secret else None,
                ),
            )

    def _plain_properties(self, rows: Sequence[sqlite3.Row]) -> dict[str, str] | None:
        """Stored properties as plaintext, for comparing a replayed request; None if a key cannot be read."""
        try:
            resolved = self._resolved(rows)
        except SecretKeyError:
            return None
        return {key: v.reveal() if isinstance(v, Secret) else v for key, v in resolved.items()}

    # -- groups ----------------------------------------------------------------------------------------------

    def create_group(
        self,
        parent_business_number: str,
        source_id: int,
        properties: Sequence[PropertyInput],
        triggers: Sequence[TriggerInput],
        actor: Actor = CLI,
    ) -> tuple[dict, bool]:
        """Create the group of a parent business and source; returns (group, created).

        Replaying the identical request returns the existing group (PUT is idempotent: the manual's SMB and
        enterprise commands are the same body); a different request for an existing group is a conflict.
        """
        with self.database.transaction(write=True) as con:
            self._source(con, source_id, "integrationSourceId")
            props = self._normalize_properties(properties, "group")
            if CLINIKO_API_KEY not in props:
                raise RegistryError(
                    "integrationGroupProperties", f"{CLINIKO_API_KEY} is required on the group"
                )
            if not triggers:
                raise RegistryError("integrationGroupTriggers", "at least one trigger is required")
            resolved = self._resolve_triggers(con, source_id, triggers)
            existing = con.execute(
                "SELECT group_id FROM integration_group WHERE parent_business_number = ? AND source_id = ?",
                (parent_business_number, source_id),
            ).fetchone()
            if existing is not None:
                group_id = existing["group_id"]
                if self._group_matches(con, group_id, props, resolved):
                    return group_view(con, group_id), False
                raise RegistryError(
                    "parentBusinessNumber",
                    f"business {parent_business_number} already has integration group {group_id} for source "
                    f"{source_id}; change it with POST /integration/update/businessintegrationgroup",
                    409,
                    code=GROUP_EXISTS,
                    details={"parentBusinessNumber": parent_business_number, "groupId": group_id},
                )
            now = _now()
            stamp = _stamp(now)
            group_id = con.execute(
                """INSERT INTO integration_group (parent_business_number, source_id, created_at, updated_at)
                   VALUES (?, ?, ?, ?) RETURNING group_id""",
                (parent_business_number, source_id, stamp, stamp),
            ).fetchone()[0]
            self._write_properties(con, "group_property", "group_id", group_id, props)
            self._write_triggers(con, group_id, resolved, replace=True)
            self._record(con, actor, now, "group", group_id, None, self._group_state(con, group_id))
            log.info("integration group %s created for parent business %s", group_id, parent_business_number)
            return group_view(con, group_id), True

    def _group_matches(self, con: sqlite3.Connection, group_id: int, props: dict, resolved: list) -> bool:
        stored = self._plain_properties(
            con.execute("SELECT * FROM group_property WHERE group_id = ?", (group_id,)).fetchall()
        )
        wanted = {key: value for key, (value, _) in props.items()}
        triggers = [
            (row["trigger_id"], row["trigger_type_id"], tuple(json.loads(row["action_ids"])))
            for row in con.execute(
                "SELECT * FROM group_trigger WHERE group_id = ? ORDER BY position", (group_id,)
            )
        ]
        return stored == wanted and sorted(triggers) == sorted(resolved)

    @staticmethod
    def _write_triggers(con: sqlite3.Connection, group_id: int, resolved: list, *, replace: bool) -> None:
        if replace:
            con.execute("DELETE FROM group_trigger WHERE group_id = ?", (group_id,))
        position = con.execute(
            "SELECT coalesce(max(position), 0) FROM group_trigger WHERE group_id = ?", (group_id,)
        ).fetchone()[0]
        for trigger_id, type_id, actions in resolved:
            position += 1
            con.execute(
                """INSERT INTO group_trigger (group_id, trigger_id, trigger_type_id, action_ids, position)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (group_id, trigger_id) DO UPDATE SET
                     trigger_type_id = excluded.trigger_type_id, action_ids = excluded.action_ids""",
                (group_id, trigger_id, type_id, json.dumps(list(actions)), position),
            )

    def update_group(
        self,
        group_id: int,
        *,
        triggers: Sequence[TriggerInput] | None,
        replace_triggers: bool,
        properties: Sequence[PropertyInput] | None = None,
        remove_keys: Sequence[str] | None = None,
        actor: Actor = CLI,
    ) -> dict:
        """Add (or, with `replace_triggers`, replace) a group's triggers; upsert or remove its properties."""
        with self.database.transaction(write=True) as con:
            row = con.execute("SELECT * FROM integration_group WHERE group_id = ?", (group_id,)).fetchone()
            if row is None:
                raise RegistryError("groupId", f"no integration group {group_id}", 404)
            before = self._group_state(con, group_id)
            if triggers is None and properties is None and not remove_keys:
                raise RegistryError(
                    "integrationGroupTriggers",
                    "nothing to update: give integrationGroupTriggers, integrationGroupProperties "
                    "or removePropertyKeys",
                )
            if triggers is not None:
                if replace_triggers and not triggers:
                    raise RegistryError("integrationGroupTriggers", "replacing needs at least one trigger")
                resolved = self._resolve_triggers(con, row["source_id"], triggers)
                self._write_triggers(con, group_id, resolved, replace=replace_triggers)
            if properties is not None:
                props = self._normalize_properties(properties, "group")
                self._write_properties(con, "group_property", "group_id", group_id, props)
            for index, key in enumerate(remove_keys or ()):
                field = f"removePropertyKeys[{index}]"
                if key == CLINIKO_API_KEY:
                    raise RegistryError(
                        field, f"{CLINIKO_API_KEY} is required on the group; replace it instead"
                    )
                check_known(key, field)
                con.execute(
                    "DELETE FROM group_property WHERE group_id = ? AND property_key = ?", (group_id, key)
                )
            now = _now()
            con.execute(
                "UPDATE integration_group SET updated_at = ? WHERE group_id = ?", (_stamp(now), group_id)
            )
            self._record(con, actor, now, "group", group_id, before, self._group_state(con, group_id))
            return group_view(con, group_id)

    def group(self, group_id: int) -> dict:
        with self.database.transaction(write=False) as con:
            if (
                con.execute("SELECT 1 FROM integration_group WHERE group_id = ?", (group_id,)).fetchone()
                is None
            ):
                raise RegistryError("groupId", f"no integration group {group_id}", 404)
            return group_view(con, group_id)

    def group_for_business(self, business_number: str) -> dict:
        """The group whose parent is this business, else the group that maps this business as a location."""
        with self.database.transaction(write=False) as con:
            row = con.execute(
                "SELECT group_id FROM integration_group WHERE parent_business_number = ? ORDER BY group_id",
                (business_number,),
            ).fetchone()
            if row is None:
                row = con.execute(
                    "SELECT group_id FROM integration_mapping WHERE business_number = ?", (business_number,)
                ).fetchone()
            if row is None:
                raise RegistryError(
                    "businessNumber", f"no integration group for business {business_number}", 404
                )
            return group_view(con, row["group_id"])

    def groups(self) -> list[dict]:
        with self.database.transaction(write=False) as con:
            ids = [r[0] for r in con.execute("SELECT group_id FROM integration_group ORDER BY group_id")]
            return [group_view(con, group_id) for group_id in ids]

    # -- mappings --------------------------------------------------------------------------------------------

    def create_mapping(self, request: MappingInput, actor: Actor = CLI) -> tuple[dict, bool]:
        """Map a Birdeye location to a group; returns (mapping, created). Identical replays are no-ops."""
        with self.database.transaction(write=True) as con:
            group = con.execute(
                "SELECT group_id FROM integration_group WHERE group_id = ?", (request.group_id,)
            ).fetchone()
            if group is None:
                known = [str(r[0]) for r in con.execute("SELECT group_id FROM integration_group ORDER BY 1")]
                raise RegistryError(
                    "integrationGroupId",
                    f"no integration group {request.group_id}; existing groups: {', '.join(known) or 'none'}",
                )
            props = self._normalize_properties(request.properties, "mapping")
            if LOCATION_NAME not in props:
                raise RegistryError(
                    "integrationProperties",
                    f"{LOCATION_NAME} is required on a mapping (the Cliniko business names of this location)",
                )
            existing = con.execute(
                "SELECT * FROM integration_mapping WHERE business_number = ?", (request.business_number,)
            ).fetchone()
            if existing is not None:
                if self._mapping_matches(con, existing, request, props):
                    return mapping_view(con, request.business_number), False
                raise RegistryError(
                    "businessNumber",
                    f"business {request.business_number} is already mapped in integration group "
                    f"{existing['group_id']}; change it with PATCH /admin/mappings/{request.business_number}",
                    409,
                    code=MAPPING_EXISTS,
                    details={
                        "businessNumber": request.business_number,
                        "integrationGroupId": existing["group_id"],
                    },
                )
            now = _now()
            frequency = request.frequency or Frequency(*DEFAULT_FREQUENCY)
            next_run = request.next_run_time or default_next_run_time(now)
            first_run = max(next_run, now - timedelta(days=MAX_CATCHUP_DAYS))
            con.execute(
                """INSERT INTO integration_mapping (business_number, group_id, active, test, beta,
                       frequency_value, frequency_unit, next_run_time, first_run_time, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    request.business_number,
                    request.group_id,
                    int(request.active),
                    int(request.test),
                    int(request.beta),
                    frequency.value,
                    frequency.unit,
                    format_run_time(next_run),
                    format_run_time(first_run),
                    _stamp(now),
                    _stamp(now),
                ),
            )
            self._write_properties(con, "mapping_property", "business_number", request.business_number, props)
            after = self._mapping_state(con, request.business_number)
            self._record(con, actor, now, "mapping", request.business_number, None, after)
            log.info("business %s mapped to integration group %s", request.business_number, request.group_id)
            return mapping_view(con, request.business_number), True

    def _mapping_matches(
        self, con: sqlite3.Connection, row: sqlite3.Row, request: MappingInput, props: dict
    ) -> bool:
        stored = self._plain_properties(
            con.execute(
                "SELECT * FROM mapping_property WHERE business_number = ?", (request.business_number,)
            ).fetchall()
        )
        same = (
            row["group_id"] == request.group_id
            and stored == {key: value for key, (value, _) in props.items()}
            and (bool(row["active"]), bool(row["test"]), bool(row["beta"]))
            == (request.active, request.test, request.beta)
        )
        if request.frequency is not None:
            same = same and (row["frequency_value"], row["frequency_unit"]) == (
                request.frequency.value,
                request.frequency.unit,
            )
        if request.next_run_time is not None:
            same = same and row["next_run_time"] == format_run_time(request.next_run_time)
        return same

    def update_mapping(self, business_number: str, patch: MappingPatch, actor: Actor = CLI) -> dict:
        """Change a mapping's properties, flags, frequency or next run time; absent fields stay."""
        with self.database.transaction(write=True) as con:
            row = mapping_row(con, business_number)
            if patch == MappingPatch():
                return mapping_view(con, business_number)
            now = _now()
            before = self._mapping_state(con, business_number)
            if patch.properties is not None:
                props = self._normalize_properties(patch.properties, "mapping")
                self._write_properties(con, "mapping_property", "business_number", business_number, props)
            for index, key in enumerate(patch.remove_keys or ()):
                field = f"removePropertyKeys[{index}]"
                check_known(key, field)
                if key == LOCATION_NAME:
                    raise RegistryError(
                        field, f"{LOCATION_NAME} is required on a mapping; replace it instead"
                    )
                con.execute(
                    "DELETE FROM mapping_property WHERE business_number = ? AND property_key = ?",
                    (business_number, key),
                )
            frequency = patch.frequency or Frequency(row["frequency_value"], row["frequency_unit"])
            next_run = row["next_run_time"]
            first_run = row["first_run_time"]
            if patch.next_run_time is not None:
                next_run = format_run_time(patch.next_run_time)
                # Before its first due time a mapping has not started: moving it moves the start (never more
                # than the longest catch-up back). Once started, its start stays: older partitions are run
                # on purpose (`cliniko-reviews run`), not by moving nextRunTime back.
                if first_run > format_run_time(now):
                    earliest = now - timedelta(days=MAX_CATCHUP_DAYS)
                    first_run = format_run_time(max(patch.next_run_time, earliest))
            con.execute(
                """UPDATE integration_mapping SET active = ?, test = ?, beta = ?, frequency_value = ?,
                       frequency_unit = ?, next_run_time = ?, first_run_time = ?, updated_at = ?
                   WHERE business_number = ?""",
                (
                    int(row["active"] if patch.active is None else patch.active),
                    int(row["test"] if patch.test is None else patch.test),
                    int(row["beta"] if patch.beta is None else patch.beta),
                    frequency.value,
                    frequency.unit,
                    next_run,
                    first_run,
                    _stamp(now),
                    business_number,
                ),
            )
            after = self._mapping_state(con, business_number)
            self._record(con, actor, now, "mapping", business_number, before, after)
            return mapping_view(con, business_number)

    def deactivate_mapping(self, business_number: str, actor: Actor = CLI) -> dict:
        return self.update_mapping(business_number, MappingPatch(active=False), actor)

    def mapping(self, business_number: str) -> dict:
        with self.database.transaction(write=False) as con:
            mapping_row(con, business_number)
            return mapping_view(con, business_number)

    def mappings(
        self, *, business_number: str | None = None, group_id: int | None = None, active: bool | None = None
    ) -> list[dict]:
        """Mapping views filtered by any of business number, group and active flag."""
        where, params = _where(
            ("business_number = ?", business_number), ("group_id = ?", group_id), ("active = ?", active)
        )
        with self.database.transaction(write=False) as con:
            numbers = [
                r[0]
                for r in con.execute(
                    f"SELECT business_number FROM integration_mapping {where} "
                    "ORDER BY group_id, business_number",
                    params,
                )
            ]
            return [mapping_view(con, number) for number in numbers]

    def advance_next_run_time(self, business_number: str, expected: datetime, new: datetime) -> bool:
        """Compare-and-set of a mapping's next run time: True only if it still was `expected`.

        The scheduler moving its own clock is not a change to the mapping: `updated_at` stays (it tells when
        a person last changed the set-up, which the calendar compares with the last fetch of businesses),
        and the audit trail records nothing: a row per mapping per due time would bury the people's changes.
        """
        with self.database.transaction(write=True) as con:
            cursor = con.execute(
                """UPDATE integration_mapping SET next_run_time = ?
                   WHERE business_number = ? AND next_run_time = ?""",
                (format_run_time(new), business_number, format_run_time(expected)),
            )
            return cursor.rowcount == 1

    # -- audit trail (pipeline.registry.audit) ---------------------------------------------------------------

    def _state_properties(self, rows: Sequence[sqlite3.Row]) -> dict[str, str | MaskedSecret]:
        """Properties as an entity's audit state holds them: values by key, a secret shown as every response
        shows it and compared by its value (its ciphertext if the registry's key cannot read it)."""
        state: dict[str, str | MaskedSecret] = {}
        for row in ordered(rows):
            value = row["property_value"]
            if row["encrypted"]:
                try:
                    secret = self._box.decrypt(value)
                except SecretKeyError:  # a key being replaced because it cannot be read must stay replaceable
                    secret = Secret(value)
                state[row["property_key"]] = MaskedSecret(property_view(row)["propertyValue"], secret)
            else:
                state[row["property_key"]] = value
        return state

    def _group_state(self, con: sqlite3.Connection, group_id: int) -> dict:
        view = group_view(con, group_id)
        props = con.execute("SELECT * FROM group_property WHERE group_id = ?", (group_id,)).fetchall()
        return {
            "parentBusinessNumber": view["parentBusinessNumber"],
            "integrationSourceId": view["integrationSourceType"]["id"],
            "integrationGroupTriggers": view["integrationGroupTriggers"],
            **self._state_properties(props),
        }

    def _mapping_state(self, con: sqlite3.Connection, business_number: str) -> dict:
        view = mapping_view(con, business_number)
        props = con.execute(
            "SELECT * FROM mapping_property WHERE business_number = ?", (business_number,)
        ).fetchall()
        return {
            "integrationGroupId": view["integrationGroupId"],
            "active": view["active"],
            "test": view["test"],
            "beta": view["beta"],
            "frequency": view["frequency"],
            "nextRunTime": view["nextRunTime"],
            **self._state_properties(props),
        }

    @staticmethod
    def _record(
        con: sqlite3.Connection,
        actor: Actor,
        now: datetime,
        kind: str,
        entity_id: int | str,
        before: dict | None,
        after: dict,
    ) -> None:
        """Write the audit row of a change to a group or mapping, in the change's transaction; nothing if its
        state did not change. A group's business number is its parent's; a mapping's group is its group."""
        changes = changed_fields(before, after)
        if not changes:
            return
        if kind == "group":
            business_number, group_id = after["parentBusinessNumber"], int(entity_id)
        else:
            business_number, group_id = str(entity_id), after["integrationGroupId"]
        con.execute(
            """INSERT INTO registry_audit (changed_at, changed_by, method, route, action, entity_kind,
                   entity_id, business_number, group_id, before_state, after_state, changes)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                _stamp(now),
                actor.name,
                actor.method,
                actor.route,
                "create" if before is None else "update",
                kind,
                str(entity_id),
                business_number,
                group_id,
                to_json(before),
                to_json(after),
                to_json(changes),
            ),
        )

    def audit_rows(
        self,
        *,
        business_number: str | None = None,
        group_id: int | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Rows of the audit trail, newest first (by id, the commit order), filtered by business number (a
        mapping's, or a group's parent), group, time (`changed_at` at or after `since`) and `before_id`
        (rows older than that one: the next page); at most `limit`."""
        where, params = _where(
            ("business_number = ?", business_number),
            ("group_id = ?", group_id),
            ("changed_at >= ?", None if since is None else _stamp(since)),
            ("change_id < ?", before_id),
        )
        bound = "" if limit is None else f" LIMIT {int(limit)}"
        with self.database.transaction(write=False) as con:
            return [
                dict(row)
                for row in con.execute(
                    f"SELECT * FROM registry_audit {where} ORDER BY change_id DESC{bound}",
                    params,
                )
            ]

    def last_change_id(self) -> int:
        """The newest change of the audit trail (0: none yet), which says whether a copy of it is current."""
        with self.database.transaction(write=False) as con:
            return con.execute("SELECT coalesce(max(change_id), 0) FROM registry_audit").fetchone()[0]

    # -- pipeline reads --------------------------------------------------------------------------------------

    def mapping_records(
        self, *, active_only: bool, business_number: str | None = None
    ) -> list[tuple[dict, dict[str, str | Secret], dict[str, str | Secret]]]:
        """(mapping row with its group's parent, group properties, mapping properties), secrets decrypted.

        For the pipeline's read API: plaintext exists only in the returned `Secret`s, in this process.
        """
        where, params = _where(
            ("m.active = ?", True if active_only else None), ("m.business_number = ?", business_number)
        )
        with self.database.transaction(write=False) as con:
            rows = con.execute(
                f"""SELECT m.*, g.parent_business_number FROM integration_mapping m
                    JOIN integration_group g USING (group_id)
                    {where} ORDER BY m.business_number""",
                params,
            ).fetchall()
            return [
                (
                    dict(row),
                    self._resolved(
                        con.execute("SELECT * FROM group_property WHERE group_id = ?", (row["group_id"],))
                    ),
                    self._resolved(
                        con.execute(
                            "SELECT * FROM mapping_property WHERE business_number = ?",
                            (row["business_number"],),
                        )
                    ),
                )
                for row in rows
            ]

    def _resolved(self, rows: Iterable[sqlite3.Row]) -> dict[str, str | Secret]:
        """Properties by key, a secret decrypted into a `Secret` (`SecretKeyError` if the key cannot)."""
        return {
            row["property_key"]: self._box.decrypt(row["property_value"])
            if row["encrypted"]
            else row["property_value"]
            for row in rows
        }

    # -- inspection ------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, ordered: two snapshots are equal iff the registry did not change."""
        return self.database.snapshot()
