-- Group appointments (classes) of a mapping's Cliniko businesses whose end falls in the partition's target day
-- (local time), archived included. One slice per (business_number, partition_date).
create schema if not exists raw;
create table if not exists raw.cliniko_group_appointments (
    business_number      varchar not null,
    partition_date       date not null,
    group_appointment_id varchar not null,
    cliniko_business_id  varchar,
    practitioner_id      varchar,
    appointment_type_id  varchar,
    starts_at            timestamptz,
    ends_at              timestamptz,
    archived_at          timestamptz,
    deleted_at           timestamptz,
    created_at           timestamptz,
    updated_at           timestamptz,
    loaded_at            timestamptz not null,
    primary key (business_number, partition_date, group_appointment_id)
);
