-- Cliniko group appointments (classes), typed and named for the models. One slice per (business_number,
-- partition_date). A class is archived or deleted, never cancelled (its attendees are).
create schema if not exists staging;
create or replace view staging.stg_cliniko__group_appointments as
with source as (
    select * from raw.cliniko_group_appointments
),
renamed as (
    select
        business_number,
        partition_date,
        group_appointment_id,
        cliniko_business_id,
        appointment_type_id,
        practitioner_id,
        starts_at as appointment_starts_at,
        ends_at as appointment_ends_at,
        archived_at is not null or deleted_at is not null as is_archived,
        loaded_at
    from source
)
select * from renamed;
