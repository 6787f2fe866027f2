-- The practitioner of each visit of one partition (business_number, partition_date), keyed like the candidates
-- (appointment_id), with what the views show and the sink sends: name, and the employee email when usable.
-- A class attendee's visit (`attendee-<id>`) has its class's practitioner (int_appointment_candidates).
-- A visit whose practitioner Cliniko no longer returns keeps its practitioner_id with no name.
-- A temp table of one partition, like the other intermediate models.
create or replace temp table int_visit_practitioners as
with
visits as (
    select appointment_id, practitioner_id
    from int_appointment_candidates
    where practitioner_id is not null
),

practitioners as (
    select *
    from staging.stg_cliniko__practitioners
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

joined as (
    select
        visits.appointment_id,
        visits.practitioner_id,
        practitioners.practitioner_name,
        practitioners.first_name as practitioner_first_name,
        practitioners.last_name as practitioner_last_name,
        practitioners.employee_email as practitioner_email
    from visits
    left join practitioners on visits.practitioner_id = practitioners.practitioner_id
)

select * from joined;
