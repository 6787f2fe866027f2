-- The registry's audit trail (pipeline/registry/audit.py) as it is now, secrets masked already (the last 4
-- characters of an API key at most), bound as one list per column, for `registry_audit`: the file
-- the analysts' database keeps of it (written by a refresh only when the trail changed; see
-- registry_changes.sql).
create or replace temp table audit_trail (
    change_id       bigint primary key,
    changed_at      varchar not null,
    changed_by      varchar not null,
    method          varchar,
    route           varchar,
    action          varchar not null,
    entity_kind     varchar not null,
    entity_id       varchar not null,
    business_number varchar,
    group_id        bigint,
    before_state    varchar,
    after_state     varchar not null,
    changes         varchar not null
);

insert into temp.main.audit_trail
select
    unnest($change_id::bigint[]),
    unnest($changed_at::varchar[]),
    unnest($changed_by::varchar[]),
    unnest($method::varchar[]),
    unnest($route::varchar[]),
    unnest($action::varchar[]),
    unnest($entity_kind::varchar[]),
    unnest($entity_id::varchar[]),
    unnest($business_number::varchar[]),
    unnest($group_id::bigint[]),
    unnest($before_state::varchar[]),
    unnest($after_state::varchar[]),
    unnest($changes::varchar[]);
