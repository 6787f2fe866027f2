-- Analysts' view (SPEC §6): one row per ledger entry, i.e. per review request the sink recorded, with the
-- practitioner of its visit (from the partition's decision) and whether Birdeye was sent them as the
-- check-in's employee (`employee_sent`: the practitioner has a usable email). No email or phone.
create schema if not exists analytics;
create or replace view analytics.review_requests as
with source as (
    select * from sink.review_request_ledger
),

decisions as (
    select business_number, partition_date, appointment_id, practitioner_id, practitioner_name,
        practitioner_email is not null as employee_sent
    from marts.appointment_eligibility
),

renamed as (
    select
        source.business_number,
        source.group_id,
        source.partition_date,
        source.target_date,
        source.appointment_id,
        visit_kind(source.appointment_id) as appointment_kind,
        source.patient_id,
        source.channels,
        source.status,
        source.attempts,
        source.error_code,
        source.error_message,
        source.birdeye_customer_id,
        source.first_attempt_at,
        source.sent_at,
        decisions.practitioner_id,
        decisions.practitioner_name,
        coalesce(decisions.employee_sent, false) as employee_sent
    from source
    left join decisions
        on source.business_number = decisions.business_number
        and source.partition_date = decisions.partition_date
        and source.appointment_id = decisions.appointment_id
)
select * from renamed;
