-- The calendar's alerts shared by every host (pipeline/calendar/alerts.py), the table a host keeps in
-- DATA_DIR/alerts.duckdb without DATABASE_URL (sql/calendar/alerts.sql, where its columns are explained).
create schema calendar;
create table calendar.alerts (
    alert_key       varchar not null,
    kind            varchar not null,
    business_number varchar,
    group_id        bigint,
    partition_date  date,
    message         varchar not null,
    raised_at       timestamptz not null,
    resolved_at     timestamptz,
    notified_at     timestamptz,
    notify_error    varchar,
    notify_claimed_at timestamptz,
    primary key (alert_key, raised_at),
    check (kind in ('partition_failing', 'mapping_stalled', 'mapping_unschedulable', 'birdeye_auth',
                    'restriction_share_jump'))
);
create index alerts_open on calendar.alerts (alert_key) where resolved_at is null;
