-- The at-most-once ledger: one row per (business_number, appointment_id), ever.
-- new -> pending | dry_run (test mapping): claimed with the decision that made it eligible (sink/claims.sql)
-- pending -> sending (taken by a posting run and committed before the POST, run_id = that run)
-- sending -> sent | failed (a 4xx, or a certain 400 caught before posting)
-- sending -> pending (429/5xx/no connection, attempts < bound, after next_attempt_at; or Birdeye refused the key:
--            nothing was processed, the row waits for the key to be fixed)
-- sending -> uncertain (the claiming run died: its lease lock file is free)
-- uncertain | failed -> pending (operator `requeue`; attempts restart from 0)
-- No email or phone here: the sink takes them from the partition's rows at posting time.
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
    attempts            integer not null default 0,  -- POSTs made since the row was created or requeued
    error_code          varchar,  -- Birdeye's code ('1087', '89'), or 'http_503', 'connect_error', 'no_response', 'run_died'
    error_message       varchar,
    birdeye_customer_id varchar,
    first_attempt_at    timestamptz,
    sent_at             timestamptz,
    updated_at          timestamptz not null,
    run_id              varchar,  -- the run that last claimed the row; its lease decides whether `sending` is live
    next_attempt_at     timestamptz,  -- a retryable failure's backoff: not claimed before this time
    requeued_at         timestamptz,
    primary key (business_number, appointment_id),
    check (status in ('pending', 'sending', 'sent', 'failed', 'uncertain', 'dry_run'))
);
