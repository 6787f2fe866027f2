-- Analysts' view (SPEC §6): one row per candidate with its outcome, and the practitioner who saw the patient
-- (practitioner_name null when Cliniko no longer returns the practitioner). No email or phone.
-- appointment_kind: 'individual', or 'group' for a class attendee's visit (appointment_id `attendee-<id>`).
create schema if not exists analytics;
create or replace view analytics.restriction_reasons as
with source as (
    select * from marts.appointment_eligibility
),
renamed as (
    select
        business_number,
        group_id,
        partition_date,
        target_date,
        appointment_id,
        appointment_kind,
        patient_id,
        cliniko_business_id,
        location_name,
        appointment_ends_at,
        is_eligible,
        restriction_code,
        restriction_reason,
        is_test,
        practitioner_id,
        practitioner_name
    from source
)
select * from renamed;
