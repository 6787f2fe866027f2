-- Cliniko businesses (locations of one Cliniko account), as fetched for a mapping. Full refresh per mapping.
create schema if not exists raw;
create table if not exists raw.cliniko_businesses (
    business_number      varchar not null,  -- the mapping (Birdeye location) this fetch was for
    cliniko_business_id  varchar not null,
    business_name        varchar,
    display_name         varchar,
    time_zone_identifier varchar,           -- IANA; null means UTC
    country_code         varchar,           -- ISO 3166-1 alpha-2, used to normalise phone numbers
    archived_at          timestamptz,
    deleted_at           timestamptz,
    created_at           timestamptz,
    updated_at           timestamptz,
    loaded_at            timestamptz not null,
    primary key (business_number, cliniko_business_id)
);
