-- Cliniko businesses as fetched for each mapping, typed and named for the models.
create schema if not exists staging;
create or replace view staging.stg_cliniko__businesses as
with source as (
    select * from raw.cliniko_businesses
),
renamed as (
    select
        business_number,
        cliniko_business_id,
        business_name as location_name,
        name_key(business_name) as location_key,
        -- A zone Cliniko lacks, or one neither DuckDB nor Python knows, is UTC (`pipeline.calendar.rules.zone`
        -- says the same), so the ingestion's windows, the close time and the local day always agree.
        case
            when trim(time_zone_identifier) in (select name from pg_timezone_names()) then trim(time_zone_identifier)
            else 'UTC'
        end as time_zone,
        nullif(upper(trim(country_code)), '') as country_code,
        archived_at is not null or deleted_at is not null as is_archived,
        loaded_at
    from source
)
select * from renamed;
