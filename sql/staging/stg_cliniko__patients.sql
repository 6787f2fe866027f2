-- Cliniko patients referenced by a partition's appointments, typed and named for the models.
-- Names, emails and reminder types are trimmed here so that blanks read as missing everywhere downstream.
create schema if not exists staging;
create or replace view staging.stg_cliniko__patients as
with source as (
    select * from raw.cliniko_patients
),
renamed as (
    select
        business_number,
        partition_date,
        patient_id,
        nullif(trim(
            concat_ws(' ',
                coalesce(nullif(trim(preferred_first_name), ''), nullif(trim(first_name), '')),
                nullif(trim(last_name), '')
            )
        ), '') as patient_name,
        nullif(trim(email), '') as email,
        nullif(trim(reminder_type), '') as reminder_type,
        coalesce(phone_numbers, []) as phone_numbers,
        is_missing
            or archived_at is not null
            or deleted_at is not null
            or merged_at is not null as is_inactive,
        loaded_at
    from source
)
select * from renamed;
