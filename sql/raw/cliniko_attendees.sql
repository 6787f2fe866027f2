-- Attendees of the partition's group appointments (raw.cliniko_group_appointments), cancelled and archived
-- included; `booking_id` is the group appointment's id. One slice per (business_number, partition_date).
create schema if not exists raw;
create table if not exists raw.cliniko_attendees (
    business_number      varchar not null,
    partition_date       date not null,
    attendee_id          varchar not null,
    booking_id           varchar,
    patient_id           varchar,
    arrived              boolean,           -- null: attendance not recorded
    cancelled_at         timestamptz,
    archived_at          timestamptz,
    deleted_at           timestamptz,
    created_at           timestamptz,
    updated_at           timestamptz,
    loaded_at            timestamptz not null,
    primary key (business_number, partition_date, attendee_id)
);
