-- Exactly the practitioners the partition's visits reference, fetched by id, active and inactive (Cliniko lists
-- them apart: /practitioners and /practitioners/inactive). `email` is the email of the practitioner's Cliniko
-- user (/users/{id}): a practitioner record has none. A referenced practitioner that Cliniko returns from
-- neither list is stored with is_missing = true (deleted since).
create schema if not exists raw;
create table if not exists raw.cliniko_practitioners (
    business_number varchar not null,
    partition_date  date not null,
    practitioner_id varchar not null,
    is_missing      boolean not null default false,
    is_active       boolean,           -- from the list that returned it; null when missing
    user_id         varchar,
    first_name      varchar,
    last_name       varchar,
    email           varchar,           -- the user's, as Cliniko has it (checked in staging)
    created_at      timestamptz,
    updated_at      timestamptz,
    loaded_at       timestamptz not null,
    primary key (business_number, partition_date, practitioner_id)
);
