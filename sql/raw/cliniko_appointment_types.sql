-- Cliniko appointment types of a mapping's account, archived included (an appointment may reference a type
-- archived since). Full refresh per mapping, like the businesses: an account has tens of them, one page.
create schema if not exists raw;
create table if not exists raw.cliniko_appointment_types (
    business_number       varchar not null,  -- the mapping (Birdeye location) this fetch was for
    appointment_type_id   varchar not null,
    appointment_type_name varchar,
    category              varchar,
    archived_at           timestamptz,
    created_at            timestamptz,
    updated_at            timestamptz,
    loaded_at             timestamptz not null,
    primary key (business_number, appointment_type_id)
);
