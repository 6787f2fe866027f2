-- Raw Cliniko records that failed validation, with the reason; the partition went on without them.
create schema if not exists raw;
create table if not exists raw.cliniko_quarantine (
    business_number varchar not null,
    partition_date  date not null,
    -- businesses | appointment_types | appointments | group_appointments | attendees | patients
    -- | practitioners
    resource        varchar not null,
    record_id       varchar,
    reason          varchar not null,
    record          json,
    quarantined_at  timestamptz not null
);
