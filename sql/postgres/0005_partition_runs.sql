-- The calendar's runs of partitions shared by every host (pipeline/calendar/store.py), the table each group's
-- warehouse keeps without DATABASE_URL (sql/calendar/partition_runs.sql, where its columns are explained).
-- With DATABASE_URL it is the scheduler's authority: a build checks here that no newer run built its
-- partition, and the calendar sensor reads `calendar.partition_states` (created over it after the
-- migrations, from sql/calendar/partition_states.sql) for every host's runs. The warehouses keep their own
-- runs too, for the analysts' `coverage`.
create table calendar.partition_runs (
    run_id          varchar primary key,
    business_number varchar not null,
    partition_date  date not null,
    group_id        bigint,
    target_date     date,
    run_started_at  timestamptz not null,
    close_at        timestamptz,
    is_partial      boolean,
    status          varchar not null,
    candidates      integer,
    eligible        integer,
    error           varchar,
    finished_at     timestamptz,
    updated_at      timestamptz,
    check (status in ('built', 'succeeded', 'failed'))
);
create index partition_runs_partition on calendar.partition_runs (business_number, partition_date);
create index partition_runs_built on calendar.partition_runs (group_id) where status = 'built';
