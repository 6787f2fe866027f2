-- Cliniko practitioners referenced by a partition's visits, typed and named for the models.
-- `practitioner_name` is first and last name (an inactive practitioner keeps theirs: past visits name them).
-- `employee_email` is the user's email when Birdeye can be sent it (macros/usable_email.sql), else null: the
-- check-in then carries no `employees` rather than an address that could cost the patient's request a 400.
create schema if not exists staging;
create or replace view staging.stg_cliniko__practitioners as
with source as (
    select * from raw.cliniko_practitioners
),
renamed as (
    select
        business_number,
        partition_date,
        practitioner_id,
        nullif(trim(first_name), '') as first_name,
        nullif(trim(last_name), '') as last_name,
        nullif(trim(concat_ws(' ', nullif(trim(first_name), ''), nullif(trim(last_name), ''))), '')
            as practitioner_name,
        case when usable_email(trim(email)) then trim(email) end as employee_email,
        is_active,
        is_missing,
        loaded_at
    from source
)
select * from renamed;
