-- The registry's audit trail (pipeline/registry/audit.py) in PostgreSQL: the same table as the SQLite file's
-- at schema version 3 (pipeline/registry/store.py), written in the transaction of each change. Every registry
-- writer holds the registry's advisory lock until it commits, so ids are taken, and committed, in order: they
-- order the trail across hosts (a transaction rolled back after taking one leaves a gap). Times are ISO-8601
-- text in UTC, as the registry's other times; states and changes are JSON text with secrets masked.
create table registry_audit (
    change_id       bigint generated always as identity primary key,
    changed_at      text not null,
    changed_by      text not null,
    method          text,
    route           text,
    action          text not null check (action in ('create', 'update')),
    entity_kind     text not null check (entity_kind in ('group', 'mapping')),
    entity_id       text not null,
    business_number text,
    group_id        integer,
    before_state    text,
    after_state     text not null,
    changes         text not null
);
create index registry_audit_business on registry_audit (business_number, change_id);
create index registry_audit_group on registry_audit (group_id, change_id);
