-- One row per run of a partition (SPEC §8): when it started, the partition's close time, whether the run was
-- partial, and how it ended. The scheduler reads it to tell closed, failed and pending partitions apart, and
-- the analysts' `coverage` view is built on it. The run writes `built` with the partition (in the build's
-- transaction), `succeeded` once its requests are posted; a failing step writes `failed` with the error.
create schema if not exists calendar;
create table if not exists calendar.partition_runs (
    run_id          varchar primary key,  -- Dagster's run id
    business_number varchar not null,
    partition_date  date not null,
    group_id        bigint,
    target_date     date,
    run_started_at  timestamptz not null,
    close_at        timestamptz,          -- C(D) from the matched businesses' zones; null if the run failed first
    is_partial      boolean,              -- run_started_at < close_at: appointments still running got no outcome
    status          varchar not null,
    candidates      integer,
    eligible        integer,
    error           varchar,              -- the failure's first line
    finished_at     timestamptz,
    updated_at      timestamptz,          -- the row's last write: what the analysts' database exports next
    check (status in ('built', 'succeeded', 'failed'))
);
alter table calendar.partition_runs add column if not exists updated_at timestamptz;
