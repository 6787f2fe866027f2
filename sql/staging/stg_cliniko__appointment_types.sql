-- Cliniko appointment types as fetched for each mapping, typed and named for the models.
-- `appointment_type_key` is how a name in `cliniko.appointment.types.excluded` matches it (`name_key`, the rule
-- location names follow too).
create schema if not exists staging;
create or replace view staging.stg_cliniko__appointment_types as
with source as (
    select * from raw.cliniko_appointment_types
),
renamed as (
    select
        business_number,
        appointment_type_id,
        appointment_type_name,
        name_key(appointment_type_name) as appointment_type_key,
        archived_at is not null as is_archived,
        loaded_at
    from source
)
select * from renamed;
