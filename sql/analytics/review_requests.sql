-- Analysts' view (SPEC §6): one row per ledger entry, i.e. per review request the sink recorded.
create schema if not exists analytics;
create or replace view analytics.review_requests as
with source as (
    select * from sink.review_request_ledger
),
renamed as (
    select
        business_number,
        group_id,
        partition_date,
        target_date,
        appointment_id,
        -- The ledger keys a class attendee's visit `attendee-<id>` (staging.stg_cliniko__attendees makes it).
        case when starts_with(appointment_id, 'attendee-') then 'group' else 'individual' end
            as appointment_kind,
        patient_id,
        channels,
        status,
        attempts,
        error_code,
        error_message,
        birdeye_customer_id,
        first_attempt_at,
        sent_at
    from source
)
select * from renamed;
