-- The at-most-once ledger shared by every host (pipeline/sink/ledger.py), the same table as a group's DuckDB
-- warehouse holds without DATABASE_URL (sql/sink/review_request_ledger.sql, where its states are explained).
-- With DATABASE_URL this one is the authority: claims are made here under the group's advisory lock, and posting
-- runs take `pending` rows to `sending` here; each warehouse keeps a copy of the rows its models and analysts read.
create schema sink;
create table sink.review_request_ledger (
    business_number     varchar not null,
    appointment_id      varchar not null,
    partition_date      date not null,
    target_date         date not null,
    group_id            bigint not null,
    patient_id          varchar not null,
    channels            varchar not null,
    status              varchar not null,
    attempts            integer not null default 0,
    error_code          varchar,
    error_message       varchar,
    birdeye_customer_id varchar,
    first_attempt_at    timestamptz,
    sent_at             timestamptz,
    updated_at          timestamptz not null,
    run_id              varchar,
    next_attempt_at     timestamptz,
    requeued_at         timestamptz,
    primary key (business_number, appointment_id),
    check (status in ('pending', 'sending', 'sent', 'failed', 'uncertain', 'dry_run'))
);
-- What a decision reads: its partition's rows, and its group's rows whose target day is near (cool-off).
create index review_request_ledger_partition on sink.review_request_ledger (business_number, partition_date);
create index review_request_ledger_group_day on sink.review_request_ledger (group_id, target_date);
create index review_request_ledger_sending on sink.review_request_ledger (run_id) where status = 'sending';

-- Leases (pipeline/leases.py): a holder keeps a session advisory lock on hashtextextended(name, 0) while it
-- works; its row says the lease was taken, so a free lock with a row means "its holder is gone".
create table leases (
    name     text primary key,
    taken_at timestamptz not null default now()
);
