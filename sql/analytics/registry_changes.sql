-- The analysts' `registry_changes` view: the registry's audit trail (pipeline/registry/audit.py), one row per
-- change to an integration group or mapping made through the registry (admin API, dashboard, in-process
-- commands), with who made it, when, through which route, and the entity before and after. The scheduler's
-- `nextRunTime` advances are not changes and are not in it. Created inside analytics.duckdb by each refresh,
-- over `registry_audit`: the trail's rows, kept in a Parquet file that a refresh writes only when the
-- registry has a change the file lacks (registry_audit.sql); the view types their times and JSON. Order by
-- `change_id` for the order the changes were committed in.
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
