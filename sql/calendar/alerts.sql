-- Alerts (SPEC §8): one row each time a condition is raised; it stays open (resolved_at null) until the
-- condition is gone. A condition already open is not raised again, so each is posted to the webhook once.
create schema if not exists calendar;
create table if not exists calendar.alerts (
    alert_key       varchar not null,     -- kind and what it is about, e.g. partition_failing|2026-11-05|123
    kind            varchar not null,
    business_number varchar,
    group_id        bigint,
    partition_date  date,
    message         varchar not null,
    raised_at       timestamptz not null,
    resolved_at     timestamptz,
    notified_at     timestamptz,          -- when ALERT_WEBHOOK_URL accepted it
    notify_error    varchar,
    primary key (alert_key, raised_at),
    check (kind in ('partition_failing', 'mapping_stalled', 'mapping_unschedulable', 'birdeye_auth',
                    'restriction_share_jump'))
);
-- When a process took the alert to post it: another leaves it alone for a minute, so concurrent notifiers post
-- it once (a notifier that died mid-post leaves it to be taken again after that minute).
alter table calendar.alerts add column if not exists notify_claimed_at timestamptz;
