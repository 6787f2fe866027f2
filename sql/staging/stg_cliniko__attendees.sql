-- Cliniko attendees of the partition's classes, typed and named for the models. One slice per
-- (business_number, partition_date).
-- `visit_id` is the attendee's visit as the product keys it everywhere an appointment id goes
-- (`sql/macros/visit_kind.sql`). `did_not_arrive` only when Cliniko says `arrived = false`; an attendee whose
-- attendance was never recorded (null) counts as attended, as an individual appointment without
-- `did_not_arrive` does.
create schema if not exists staging;
create or replace view staging.stg_cliniko__attendees as
with source as (
    select * from raw.cliniko_attendees
),
renamed as (
    select
        business_number,
        partition_date,
        attendee_id,
        attendee_visit_id(attendee_id) as visit_id,
        booking_id as group_appointment_id,
        patient_id,
        arrived is not distinct from false as did_not_arrive,
        cancelled_at is not null as is_cancelled,
        archived_at is not null or deleted_at is not null as is_archived,
        loaded_at
    from source
)
select * from renamed;
