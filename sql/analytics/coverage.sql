-- The analysts' `coverage` view (SPEC §8): one row per mapping x partition date from the mapping's first due
-- time to today, with the partition's state. Created inside analytics.duckdb over its own tables:
-- `partition_calendar` (the dates and close times the scheduler answers for), `partition_runs` and
-- `restriction_reasons`. States are judged against the time of the query, so a partition that leaves the
-- catch-up horizon shows `skipped` without a refresh.
create or replace view coverage as
with
runs as (
    select
        business_number,
        partition_date,
        count(*) as runs,
        arg_max(run_id, run_started_at) as last_run_id,
        max(run_started_at) as last_run_at,
        arg_max(status, run_started_at) as last_status,
        min(finished_at) filter (where status = 'succeeded' and not is_partial) as closed_at
    from partition_runs
    group by business_number, partition_date
),

outcomes as (
    select
        business_number,
        partition_date,
        count(*) as candidates,
        count(*) filter (where is_eligible) as eligible
    from restriction_reasons
    group by business_number, partition_date
),

final as (
    select
        calendar.business_number,
        calendar.group_id,
        calendar.partition_date,
        calendar.target_date,
        calendar.close_at,
        case
            when runs.closed_at is not null then 'closed'
            when current_timestamp >= calendar.horizon_ends_at then 'skipped'
            when runs.last_status = 'failed' then 'failed'
            when runs.runs > 0 then 'partial'
            else 'pending'
        end as state,
        coalesce(runs.runs, 0) as runs,
        runs.last_run_id,
        runs.last_run_at,
        runs.closed_at,
        coalesce(outcomes.candidates, 0) as candidates,
        coalesce(outcomes.eligible, 0) as eligible
    from partition_calendar as calendar
    left join runs
        on calendar.business_number = runs.business_number
        and calendar.partition_date = runs.partition_date
    left join outcomes
        on calendar.business_number = outcomes.business_number
        and calendar.partition_date = outcomes.partition_date
)

select * from final;
