"""The registry's tables in SQLite, their migrations, and the catalogue kept in them.

PostgreSQL has the same tables through its own files (`sql/postgres/0002_registry.sql` and later, migrated by
`pipeline.postgres`). Group ids are server-assigned from a sequence that starts at 22253, the group id of the
support manual: the manual's follow-up commands (trigger replace, mappings) name that id verbatim, so they
work unchanged against the first group of a fresh registry.
"""

from __future__ import annotations

import sqlite3

from pipeline.registry.model import SOURCES, TRIGGERS

FIRST_GROUP_ID = 22253

_SCHEMA_V1 = (
    """CREATE TABLE integration_source (
        source_id INTEGER PRIMARY KEY,
        integration_source TEXT NOT NULL,
        source_category TEXT NOT NULL,
        integration_type TEXT NOT NULL,
        integration_plan TEXT NOT NULL,
        oauth_enabled INTEGER NOT NULL
    )""",
    """CREATE TABLE integration_trigger (
        trigger_id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES integration_source (source_id),
        trigger_service TEXT NOT NULL,
        display_name TEXT NOT NULL,
        description TEXT NOT NULL,
        active INTEGER NOT NULL,
        trigger_type_id INTEGER NOT NULL,
        trigger_type_name TEXT NOT NULL,
        action_group_id INTEGER NOT NULL,
        trigger_name TEXT NOT NULL,
        case_type_id INTEGER NOT NULL
    )""",
    """CREATE TABLE integration_group (
        group_id INTEGER PRIMARY KEY AUTOINCREMENT,
        parent_business_number TEXT NOT NULL,
        source_id INTEGER NOT NULL REFERENCES integration_source (source_id),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (parent_business_number, source_id)
    )""",
    f"INSERT INTO sqlite_sequence (name, seq) VALUES ('integration_group', {FIRST_GROUP_ID - 1})",
    """CREATE TABLE group_property (
        group_id INTEGER NOT NULL REFERENCES integration_group (group_id) ON DELETE CASCADE,
        property_key TEXT NOT NULL,
        property_value TEXT NOT NULL,
        is_secure INTEGER NOT NULL,
        encrypted INTEGER NOT NULL,
        masked_value TEXT,
        PRIMARY KEY (group_id, property_key)
    )""",
    """CREATE TABLE group_trigger (
        group_id INTEGER NOT NULL REFERENCES integration_group (group_id) ON DELETE CASCADE,
        trigger_id INTEGER NOT NULL REFERENCES integration_trigger (trigger_id),
        trigger_type_id INTEGER NOT NULL,
        action_ids TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (group_id, trigger_id)
    )""",
    """CREATE TABLE integration_mapping (
        business_number TEXT PRIMARY KEY,
        group_id INTEGER NOT NULL REFERENCES integration_group (group_id),
        active INTEGER NOT NULL,
        test INTEGER NOT NULL,
        beta INTEGER NOT NULL,
        frequency_value INTEGER NOT NULL CHECK (frequency_value > 0),
        frequency_unit TEXT NOT NULL CHECK (frequency_unit IN ('days', 'hours')),
        next_run_time TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX integration_mapping_group ON integration_mapping (group_id)",
    """CREATE TABLE mapping_property (
        business_number TEXT NOT NULL REFERENCES integration_mapping (business_number) ON DELETE CASCADE,
        property_key TEXT NOT NULL,
        property_value TEXT NOT NULL,
        is_secure INTEGER NOT NULL,
        encrypted INTEGER NOT NULL,
        masked_value TEXT,
        PRIMARY KEY (business_number, property_key)
    )""",
)

# The first due time a mapping was created with (or moved back to): the scheduler is responsible for its
# partitions from the day before it on (SPEC §8, `coverage`). Existing mappings start at their next run time.
_SCHEMA_V2 = (
    "ALTER TABLE integration_mapping ADD COLUMN first_run_time TEXT",
    "UPDATE integration_mapping SET first_run_time = next_run_time",
)

# The audit trail (`pipeline.registry.audit`): one row per change, written in the change's transaction. The
# ids grow in commit order (writers hold the write lock), so they order the trail across processes.
_SCHEMA_V3 = (
    """CREATE TABLE registry_audit (
        change_id INTEGER PRIMARY KEY AUTOINCREMENT,
        changed_at TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        method TEXT,
        route TEXT,
        action TEXT NOT NULL CHECK (action IN ('create', 'update')),
        entity_kind TEXT NOT NULL CHECK (entity_kind IN ('group', 'mapping')),
        entity_id TEXT NOT NULL,
        business_number TEXT,
        group_id INTEGER,
        before_state TEXT,
        after_state TEXT NOT NULL,
        changes TEXT NOT NULL
    )""",
    "CREATE INDEX registry_audit_business ON registry_audit (business_number, change_id)",
    "CREATE INDEX registry_audit_group ON registry_audit (group_id, change_id)",
)

# Migration N (1-based) brings a file from user_version N-1 to N. Append; never edit a released one.
# PostgreSQL has the same tables through its own files (sql/postgres/0002_registry.sql and 0006_...).
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)

TABLES = (
    "integration_source",
    "integration_trigger",
    "integration_group",
    "group_property",
    "group_trigger",
    "integration_mapping",
    "mapping_property",
    "registry_audit",
)


def migrate(con: sqlite3.Connection) -> int:
    """Bring the file to `SCHEMA_VERSION` inside the caller's write transaction; returns the version.

    `PRAGMA user_version` is part of the transaction, so a migration lands whole or not at all, and the
    second of two processes opening a fresh file finds the work done.
    """
    current = con.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the registry file has schema version {current}, newer than this code's {SCHEMA_VERSION}; "
            "upgrade cliniko-reviews"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            con.execute(statement)
        con.execute(f"PRAGMA user_version = {version}")
    return SCHEMA_VERSION


def sync_catalogue(con: sqlite3.Connection) -> None:
    """The catalogue is code: upsert it on every open so a release that changes it needs no migration."""
    for source in SOURCES:
        con.execute(
            """INSERT INTO integration_source VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (source_id) DO UPDATE SET integration_source = excluded.integration_source,
                 source_category = excluded.source_category, integration_type = excluded.integration_type,
                 integration_plan = excluded.integration_plan, oauth_enabled = excluded.oauth_enabled""",
            (
                source["id"],
                source["integrationSource"],
                source["sourceCategory"],
                source["integrationType"],
                source["integrationPlan"],
                int(source["oauthEnabled"]),
            ),
        )
    for trigger in TRIGGERS:
        (source_id,) = trigger["sourceIdsList"]
        con.execute(
            """INSERT INTO integration_trigger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (trigger_id) DO UPDATE SET source_id = excluded.source_id,
                 trigger_service = excluded.trigger_service, display_name = excluded.display_name,
                 description = excluded.description, active = excluded.active,
                 trigger_type_id = excluded.trigger_type_id, trigger_type_name = excluded.trigger_type_name,
                 action_group_id = excluded.action_group_id, trigger_name = excluded.trigger_name,
                 case_type_id = excluded.case_type_id""",
            (
                trigger["id"],
                source_id,
                trigger["triggerService"],
                trigger["displayName"],
                trigger["description"],
                int(trigger["active"]),
                trigger["integrationTriggerType"]["id"],
                trigger["integrationTriggerType"]["name"],
                trigger["actionGroupId"],
                trigger["triggerName"],
                trigger["caseTypeId"],
            ),
        )
