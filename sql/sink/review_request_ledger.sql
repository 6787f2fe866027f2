-- The at-most-once ledger: one row per (business_number, appointment_id), ever.
-- pending -> sending (committed before the POST) -> sent | failed | uncertain; dry_run for test mappings.
create schema if not exists sink;
create table if not exists sink.review_request_ledger (
    business_number     varchar not null,
    appointment_id      varchar not null,
    partition_date      date not null,
    target_date         date not null,
    group_id            bigint not null,
    patient_id          varchar not null,
    channels            varchar not null,  -- 'sms', 'email' or 'sms,email'
    status              varchar not null,
    attempts            integer not null default 0,
    error_code          varchar,
    error_message       varchar,
    birdeye_customer_id varchar,
    first_attempt_at    timestamptz,
    sent_at             timestamptz,
    updated_at          timestamptz not null,
    primary key (business_number, appointment_id),
    check (status in ('pending', 'sending', 'sent', 'failed', 'uncertain', 'dry_run'))
);
