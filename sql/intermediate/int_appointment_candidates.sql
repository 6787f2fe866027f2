-- Candidates of one partition (business_number, partition_date): visits of the mapping's matched Cliniko
-- businesses whose local end date is the target day ($target_date, in the business's time zone),
-- not cancelled, not archived or deleted, and already ended when the run started. `is_excluded_type`: the
-- visit's type is one of int_excluded_appointment_types (the mapping's excluded names, matched).
-- A visit is an individual appointment (`appointment_kind` 'individual', keyed by its id) or an attendee of a
-- class (group appointment; 'group', keyed `attendee-<id>`: `sql/macros/visit_kind.sql`), which takes its
-- business, end time and type from the class (and its practitioner); an attendee is cancelled or archived when
-- it is, and archived when its class is.
-- A temp table: it lives only for the build of one partition, so its cost never depends on history.
create or replace temp table int_appointment_candidates as
with
matched_businesses as (
    select distinct cliniko_business_id, location_name, time_zone, country_code
    from int_matched_businesses
    where cliniko_business_id is not null
),

individual_visits as (
    select
        business_number,
        partition_date,
        appointment_id,
        visit_kind(appointment_id) as appointment_kind,
        cliniko_business_id,
        patient_id,
        appointment_type_id,
        practitioner_id,
        appointment_ends_at,
        did_not_arrive,
        is_cancelled,
        is_archived
    from staging.stg_cliniko__appointments
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

group_appointments as (
    select *
    from staging.stg_cliniko__group_appointments
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

group_visits as (
    select
        attendees.business_number,
        attendees.partition_date,
        attendees.visit_id as appointment_id,
        visit_kind(attendees.visit_id) as appointment_kind,
        group_appointments.cliniko_business_id,
        attendees.patient_id,
        group_appointments.appointment_type_id,
        group_appointments.practitioner_id,
        group_appointments.appointment_ends_at,
        attendees.did_not_arrive,
        attendees.is_cancelled,
        attendees.is_archived or group_appointments.is_archived as is_archived
    from staging.stg_cliniko__attendees as attendees
    inner join group_appointments
        on attendees.group_appointment_id = group_appointments.group_appointment_id
    where attendees.business_number = $business_number
      and attendees.partition_date = cast($partition_date as date)
),

appointments as (
    select * from individual_visits
    union all by name
    select * from group_visits
),

excluded_type_ids as (
    select distinct appointment_type_id
    from int_excluded_appointment_types
    where appointment_type_id is not null
),

localised as (
    select
        appointments.business_number,
        appointments.partition_date,
        cast($target_date as date) as target_date,
        appointments.appointment_id,
        appointments.appointment_kind,
        appointments.patient_id,
        appointments.practitioner_id,
        appointments.cliniko_business_id,
        matched_businesses.location_name,
        matched_businesses.country_code,
        appointments.appointment_ends_at,
        cast(timezone(matched_businesses.time_zone, appointments.appointment_ends_at) as date) as local_end_date,
        appointments.did_not_arrive,
        appointments.appointment_type_id in (select appointment_type_id from excluded_type_ids)
            as is_excluded_type,
        appointments.is_cancelled,
        appointments.is_archived
    from appointments
    inner join matched_businesses
        on appointments.cliniko_business_id = matched_businesses.cliniko_business_id
),

candidates as (
    select
        business_number,
        partition_date,
        target_date,
        appointment_id,
        appointment_kind,
        patient_id,
        practitioner_id,
        cliniko_business_id,
        location_name,
        country_code,
        appointment_ends_at,
        did_not_arrive,
        coalesce(is_excluded_type, false) as is_excluded_type
    from localised
    where local_end_date = target_date
      and not is_cancelled
      and not is_archived
      and appointment_ends_at < cast($run_started_at as timestamptz)
)

select * from candidates;
