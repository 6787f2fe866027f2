-- Where each partition stands, from its runs (SPEC §8): the one place that says what "closed" and "failed in
-- a row" mean, read by the scheduler (`pipeline.calendar.store.history`) and by the analysts' `coverage`.
-- Only finished runs count (`built` is a run still going, or one the sensor has not yet seen end). The
-- partition is closed while its newest finished run is a success that started at or after the close time:
-- a later run that fails, or that builds without posting, opens it again, so its requests are not stranded.
-- Plain SQL that DuckDB and PostgreSQL both run: with DATABASE_URL the scheduler reads it there, over every
-- host's runs (pipeline/postgres.py creates it after the migrations).
create or replace view calendar.partition_states as
with
finished as (
    select
        *,
        row_number() over (
            partition by business_number, partition_date order by run_started_at desc, run_id desc
        ) as newest_first
    from calendar.partition_runs
    where status in ('succeeded', 'failed')
),

outcomes as (
    select
        business_number,
        partition_date,
        max(status) filter (where newest_first = 1) as last_status,
        max(error) filter (where newest_first = 1) as last_error,
        max(finished_at) filter (where newest_first = 1) as last_finished_at,
        bool_or(status = 'succeeded' and not coalesce(is_partial, true)) filter (where newest_first = 1)
            as closing,
        coalesce(min(newest_first) filter (where status <> 'failed'), count(*) + 1) - 1 as failures_in_a_row,
        max(finished_at) filter (where status = 'failed') as last_failed_at
    from finished
    group by business_number, partition_date
),

runs as (
    select
        business_number,
        partition_date,
        count(*) as runs,
        max(run_id) filter (where newest_first = 1) as last_run_id,
        max(run_started_at) as last_run_at
    from (
        select
            *,
            row_number() over (
                partition by business_number, partition_date order by run_started_at desc, run_id desc
            ) as newest_first
        from calendar.partition_runs
    ) as all_runs
    group by business_number, partition_date
),

final as (
    select
        runs.business_number,
        runs.partition_date,
        runs.runs,
        runs.last_run_id,
        runs.last_run_at,
        outcomes.last_status,
        outcomes.last_error,
        case when outcomes.closing then outcomes.last_finished_at end as closed_at,
        coalesce(outcomes.failures_in_a_row, 0) as failures_in_a_row,
        outcomes.last_failed_at
    from runs
    left join outcomes
        on runs.business_number = outcomes.business_number
        and runs.partition_date = outcomes.partition_date
)

select * from final;
