-- Cliniko individual appointments, typed and named for the models. One slice per (business_number, partition_date).
create schema if not exists staging;
create or replace view staging.stg_cliniko__appointments as
with source as (
    select * from raw.cliniko_appointments
),
renamed as (
    select
        business_number,
        partition_date,
        appointment_id,
        cliniko_business_id,
        patient_id,
        practitioner_id,
        appointment_type_id,
        starts_at as appointment_starts_at,
        ends_at as appointment_ends_at,
        coalesce(did_not_arrive, false) as did_not_arrive,
        cancelled_at is not null as is_cancelled,
        archived_at is not null or deleted_at is not null as is_archived,
        loaded_at
    from source
)
select * from renamed;
