"""The registry's rows as the admin API shows them (JSON-ready dicts, camelCase as the manual writes them).

Secret values are never read here: a secret property shows its stored mask (`masked_value`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from pipeline.registry.model import KNOWN_KEYS, RegistryError, effective_properties


def ordered(rows: Sequence[sqlite3.Row]) -> list[sqlite3.Row]:
    """Property rows in the order of `KNOWN_KEYS`, the order every response lists them in."""
    return sorted(rows, key=lambda row: KNOWN_KEYS.index(row["property_key"]))


def property_view(row: sqlite3.Row) -> dict:
    """One property; a secret shows its stored mask and is always `isSecure`."""
    secret = bool(row["encrypted"])
    return {
        "propertyKey": row["property_key"],
        "propertyValue": row["masked_value"] if secret else row["property_value"],
        "isSecure": bool(row["is_secure"]) or secret,
    }


def source_view(row: sqlite3.Row) -> dict:
    """An integration source, field for field as the seed's catalogue."""
    return {
        "id": row["source_id"],
        "integrationSource": row["integration_source"],
        "sourceCategory": row["source_category"],
        "integrationType": row["integration_type"],
        "integrationPlan": row["integration_plan"],
        "oauthEnabled": bool(row["oauth_enabled"]),
    }


def trigger_view(row: sqlite3.Row) -> dict:
    """A trigger, field for field as the seed's catalogue."""
    return {
        "id": row["trigger_id"],
        "triggerService": row["trigger_service"],
        "displayName": row["display_name"],
        "description": row["description"],
        "active": bool(row["active"]),
        "integrationTriggerType": {"id": row["trigger_type_id"], "name": row["trigger_type_name"]},
        "actionGroupId": row["action_group_id"],
        "sourceIdsList": [row["source_id"]],
        "triggerName": row["trigger_name"],
        "caseTypeId": row["case_type_id"],
    }


def group_view(con: sqlite3.Connection, group_id: int) -> dict:
    """A group as the admin API shows it: source, triggers, properties (secrets masked), mapped businesses."""
    group = con.execute("SELECT * FROM integration_group WHERE group_id = ?", (group_id,)).fetchone()
    source = con.execute(
        "SELECT * FROM integration_source WHERE source_id = ?", (group["source_id"],)
    ).fetchone()
    triggers = con.execute(
        "SELECT * FROM group_trigger WHERE group_id = ? ORDER BY position", (group_id,)
    ).fetchall()
    props = con.execute("SELECT * FROM group_property WHERE group_id = ?", (group_id,)).fetchall()
    mapped = con.execute(
        "SELECT business_number FROM integration_mapping WHERE group_id = ? ORDER BY business_number",
        (group_id,),
    ).fetchall()
    return {
        "groupId": group_id,
        "integrationSourceType": source_view(source),
        "integrationGroupTriggers": [
            {
                "triggerId": row["trigger_id"],
                "triggerTypeId": row["trigger_type_id"],
                "actionIds": json.loads(row["action_ids"]),
            }
            for row in triggers
        ],
        "parentBusinessNumber": group["parent_business_number"],
        "integrationGroupProperties": [property_view(row) for row in ordered(props)],
        "mappedBusinessNumbers": [row[0] for row in mapped],
        "createdAt": group["created_at"],
        "updatedAt": group["updated_at"],
    }


def mapping_row(con: sqlite3.Connection, business_number: str) -> sqlite3.Row:
    """A mapping's row; 404 if the business is not mapped."""
    row = con.execute(
        "SELECT * FROM integration_mapping WHERE business_number = ?", (business_number,)
    ).fetchone()
    if row is None:
        raise RegistryError("businessNumber", f"no mapping for business {business_number}", 404)
    return row


def mapping_view(con: sqlite3.Connection, business_number: str) -> dict:
    """A mapping as the admin API shows it: its own properties and those in force, with their level."""
    row = mapping_row(con, business_number)
    group = con.execute("SELECT * FROM integration_group WHERE group_id = ?", (row["group_id"],)).fetchone()
    own = ordered(
        con.execute("SELECT * FROM mapping_property WHERE business_number = ?", (business_number,)).fetchall()
    )
    inherited = con.execute("SELECT * FROM group_property WHERE group_id = ?", (row["group_id"],))
    effective = effective_properties(
        {prop["property_key"]: prop for prop in inherited}, {prop["property_key"]: prop for prop in own}
    )
    return {
        "businessNumber": row["business_number"],
        "integrationGroupId": row["group_id"],
        "parentBusinessNumber": group["parent_business_number"],
        "integrationSourceId": group["source_id"],
        "active": bool(row["active"]),
        "test": bool(row["test"]),
        "beta": bool(row["beta"]),
        "frequency": {"value": row["frequency_value"], "unit": row["frequency_unit"]},
        "nextRunTime": row["next_run_time"],
        "integrationProperties": [property_view(prop) for prop in own],
        "effectiveProperties": [
            {**property_view(prop), "level": level} for level, prop in effective.values()
        ],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }
