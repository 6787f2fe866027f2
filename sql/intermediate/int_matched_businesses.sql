-- The mapping's location names (`cliniko.location.name`) matched against its account's Cliniko businesses as
-- last fetched (staging.stg_cliniko__businesses), by `name_key`. One row per name and business it matches; a
-- name that matches none has a null cliniko_business_id, and the ingestion fails the partition on it
-- (`pipeline.warehouse.models.match_locations`, which runs this file), so what ingestion fetches is exactly
-- what the candidates read.
-- A temp table: it lives only for the build of one partition.
create or replace temp table int_matched_businesses as
with
location_names as (
    select distinct unnest(cast($location_names as varchar[])) as requested_name
),

businesses as (
    select *
    from staging.stg_cliniko__businesses
    where business_number = $business_number
),

matched as (
    select
        location_names.requested_name,
        businesses.cliniko_business_id,
        businesses.location_name,
        businesses.time_zone,
        businesses.country_code
    from location_names
    left join businesses
        on businesses.location_key = name_key(location_names.requested_name)
)

select * from matched;
