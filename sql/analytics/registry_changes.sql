-- The analysts' `registry_changes` view: the registry's audit trail (pipeline/registry/audit.py), one row per
-- change to an integration group or mapping made through the registry (admin API, dashboard, in-process
-- commands), with who made it, when, through which route, and the entity before and after. The scheduler's
-- `nextRunTime` advances are not changes and are not in it. Created inside analytics.duckdb by each refresh:
-- `registry_audit` holds the registry's rows as they were then (secrets are masked in them already: the last 4
-- characters of an API key at most), bound as one list per column; the view types their times and JSON.
-- Order by `change_id` for the order the changes were committed in.
create table registry_audit (
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

insert into registry_audit
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

create view registry_changes as
select
    change_id,
    changed_at::timestamptz as changed_at,
    changed_by,
    method,
    route,
    action,
    entity_kind,
    entity_id,
    business_number,
    group_id,
    before_state::json as before_state,
    after_state::json as after_state,
    changes::json as changes
from registry_audit;
