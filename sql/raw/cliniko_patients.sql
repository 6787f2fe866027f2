-- Exactly the patients the partition's appointments reference, fetched by id, archived included.
-- A referenced patient that Cliniko no longer returns is stored with is_missing = true (a deleted patient).
create schema if not exists raw;
create table if not exists raw.cliniko_patients (
    business_number      varchar not null,
    partition_date       date not null,
    patient_id           varchar not null,
    is_missing           boolean not null default false,
    first_name           varchar,
    last_name            varchar,
    preferred_first_name varchar,
    email                varchar,
    reminder_type        varchar,           -- 'SMS & Email' | 'SMS' | 'Email' | 'None' | null
    phone_numbers        struct(phone_type varchar, number varchar)[],
    archived_at          timestamptz,
    deleted_at           timestamptz,
    merged_at            timestamptz,
    created_at           timestamptz,
    updated_at           timestamptz,
    loaded_at            timestamptz not null,
    primary key (business_number, partition_date, patient_id)
);
