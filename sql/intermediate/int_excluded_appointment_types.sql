-- The mapping's excluded appointment type names (`cliniko.appointment.types.excluded`, group or mapping) matched
-- against its account's Cliniko appointment types: trimmed and case-insensitively, by the key of
-- staging.stg_cliniko__appointment_types (the rule location names follow). One row per name and type it
-- matches; a name that matches no type has a null appointment_type_id, and the ingestion fails the partition
-- on it (`unknown_appointment_type_names`), so a typo never silently excludes nothing.
-- A temp table: it lives only for the build of one partition.
create or replace temp table int_excluded_appointment_types as
with
excluded_names as (
    select unnest(cast($excluded_appointment_types as varchar[])) as excluded_name
),

keyed as (
    select
        excluded_name,
        name_key(excluded_name) as appointment_type_key
    from excluded_names
),

appointment_types as (
    select *
    from staging.stg_cliniko__appointment_types
    where business_number = $business_number
),

matched as (
    select
        keyed.excluded_name,
        appointment_types.appointment_type_id,
        appointment_types.appointment_type_name
    from keyed
    left join appointment_types
        on keyed.appointment_type_key = appointment_types.appointment_type_key
)

select * from matched;
