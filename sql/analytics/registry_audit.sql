-- The registry's audit trail (pipeline/registry/audit.py) as it is now, secrets masked already (the last 4
-- characters of an API key at most), bound as one list per column, for `registry_audit`: the file
-- the analysts' database keeps of it (written by a refresh only when the trail changed; see
-- registry_changes.sql).
create or replace temp table audit_trail as
select
    unnest($change_id::bigint[]) as change_id,
    unnest($changed_at::varchar[]) as changed_at,
    unnest($changed_by::varchar[]) as changed_by,
    unnest($method::varchar[]) as method,
    unnest($route::varchar[]) as route,
    unnest($action::varchar[]) as action,
    unnest($entity_kind::varchar[]) as entity_kind,
    unnest($entity_id::varchar[]) as entity_id,
    unnest($business_number::varchar[]) as business_number,
    unnest($group_id::bigint[]) as group_id,
    unnest($before_state::varchar[]) as before_state,
    unnest($after_state::varchar[]) as after_state,
    unnest($changes::varchar[]) as changes;
