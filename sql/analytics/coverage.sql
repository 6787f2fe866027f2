-- The analysts' `coverage` view (SPEC §8): one row per mapping x partition date from the mapping's first due
-- time to today, with the partition's state. Created inside analytics.duckdb over its own tables:
-- `partition_calendar` (the dates and close times the scheduler answers for), `partition_states` (what the
-- runs came to: sql/calendar/partition_states.sql) and `restriction_reasons`. `skipped`, and which dates are
-- up to today (UTC; the calendar is exported a month ahead), are judged at the time of the query, so a
-- partition that leaves the catch-up horizon, or a new day, shows without a refresh.
create or replace view coverage as
with
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
            when states.closed_at is not null then 'closed'
            when current_timestamp >= calendar.horizon_ends_at then 'skipped'
            when states.last_status = 'failed' then 'failed'
            when states.runs > 0 then 'partial'
            else 'pending'
        end as state,
        coalesce(states.runs, 0) as runs,
        states.last_run_id,
        states.last_run_at,
        states.closed_at,
        coalesce(outcomes.candidates, 0) as candidates,
        coalesce(outcomes.eligible, 0) as eligible
    from partition_calendar as calendar
    left join partition_states as states
        on calendar.business_number = states.business_number
        and calendar.partition_date = states.partition_date
    left join outcomes
        on calendar.business_number = outcomes.business_number
        and calendar.partition_date = outcomes.partition_date
    where calendar.partition_date <= cast(current_timestamp at time zone 'UTC' as date)
)

select * from final;
