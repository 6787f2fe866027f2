-- One row per candidate (a visit: an individual appointment or a class attendee) with exactly one outcome:
-- eligible, or the first restriction code that applies (seeds/restriction_codes.sql lists them in precedence
-- order). Holds every partition; building a partition
-- replaces only its own (business_number, partition_date) rows. The sink reads the eligible rows.
--
-- duplicate_patient is decided before cooled_off, as in SPEC §4. This keeps a partition's outcome stable when it is
-- re-run after the sink has sent its request: the appointment already in the ledger stays the selected one (it is
-- not cooled off by its own ledger row), and the patient's other appointments stay duplicate_patient instead of
-- turning into cooled_off. Among a patient's screened appointments the one already holding a ledger row of the
-- partition wins, then the latest-ending one (appointment_id breaks ties).
--
-- Only screened-eligible appointments compete for a patient's one request (`duplicate_patient` is decided among
-- rows whose screening code is null). An excluded_type visit is screened out like a did-not-arrive one, so it
-- never makes the patient's other appointment of the day a duplicate: "don't ask after a free consult" must not
-- turn into "don't ask after the treatment either".
create schema if not exists marts;

create table if not exists marts.appointment_eligibility (
    business_number     varchar not null,
    partition_date      date not null,
    target_date         date not null,
    group_id            bigint not null,
    appointment_id      varchar not null,
    patient_id          varchar,
    cliniko_business_id varchar not null,
    location_name       varchar,
    appointment_ends_at timestamptz not null,
    is_eligible         boolean not null,
    restriction_code    varchar,
    restriction_reason  varchar,
    channels            varchar,
    sms_phone           varchar,
    email               varchar,
    patient_name        varchar,
    is_test             boolean not null,
    practitioner_id     varchar,
    practitioner_name   varchar,
    practitioner_first_name varchar,
    practitioner_last_name  varchar,
    practitioner_email  varchar,  -- sent as the check-in's `employees` (staff address, not the patient's)
    appointment_kind    varchar default 'individual'  -- 'individual' | 'group' (a class attendee's visit)
);
-- Warehouses made before classes and practitioners get their columns here (the insert below is by name, so
-- their order does not matter). Every row a warehouse held before classes is an individual appointment.
alter table marts.appointment_eligibility add column if not exists appointment_kind varchar default 'individual';
alter table marts.appointment_eligibility add column if not exists practitioner_id varchar;
alter table marts.appointment_eligibility add column if not exists practitioner_name varchar;
alter table marts.appointment_eligibility add column if not exists practitioner_first_name varchar;
alter table marts.appointment_eligibility add column if not exists practitioner_last_name varchar;
alter table marts.appointment_eligibility add column if not exists practitioner_email varchar;

delete from marts.appointment_eligibility
where business_number = $business_number
  and partition_date = cast($partition_date as date);

insert into marts.appointment_eligibility by name
with
candidates as (
    select * from int_appointment_candidates
),

patients as (
    select *
    from staging.stg_cliniko__patients
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

patient_channels as (
    select * from int_patient_channels
),

-- Patients whose Cliniko record failed validation: quarantined with the reason, so not in `patients`.
quarantined_patients as (
    select distinct record_id as patient_id
    from raw.cliniko_quarantine
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
      and resource = 'patients'
),

-- This partition's ledger rows, at most one per appointment (the ledger's key), tell a re-run what its
-- appointments already have:
-- - a request that may have reached Birdeye, or that it refused (`failed`, never retried by itself): the
--   appointment keeps that outcome, whatever a re-run finds about the patient or the group's other requests
--   (SPEC §8: an appointment that has an outcome keeps it);
-- - a dry run (a test mapping is evaluated the same way, and never posts): the same, but it still holds the
--   patient's one request, so that of two dry runs of one patient (a partition built before dry runs were
--   kept) one becomes duplicate_patient and sink/claims.sql withdraws it;
-- - any row: the appointment stays the patient's selected one (a re-run after the sink ran).
partition_ledger as (
    select appointment_id, status
    from sink.review_request_ledger
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

-- Requests of the group that count as "asked": only those whose target day can fall inside the cool-off window
-- of this partition are read, so the ledger's history is skipped by its zonemaps.
live_requests as (
    select business_number, appointment_id, patient_id, target_date
    from sink.review_request_ledger
    where group_id = $group_id
      and status in ('pending', 'sending', 'sent', 'uncertain')
      and target_date > cast($target_date as date) - cast($cooloff_days as integer)
      and target_date < cast($target_date as date) + cast($cooloff_days as integer)
),

screened as (
    select
        candidates.*,
        patients.patient_name,
        patient_channels.channels,
        patient_channels.sms_phone,
        patient_channels.email,
        coalesce(partition_ledger.status in ('sending', 'sent', 'uncertain', 'failed'), false) as is_posted,
        coalesce(partition_ledger.status = 'dry_run', false) as is_dry_run,
        case
            when partition_ledger.status in ('sending', 'sent', 'uncertain', 'failed', 'dry_run') then null
            when cast($beta as boolean) then 'integration_beta'
            when patients.is_inactive
                or (patients.patient_id is null and quarantined_patients.patient_id is null)
                then 'customer_inactive'
            when quarantined_patients.patient_id is not null then 'invalid_record'
            when candidates.did_not_arrive then 'did_not_arrive'
            when candidates.is_excluded_type then 'excluded_type'
            when not coalesce(patient_channels.has_allowed_channel, false) then 'opted_out'
            when patient_channels.channels is null then 'no_contact'
        end as screening_code,
        partition_ledger.appointment_id is not null as is_already_requested
    from candidates
    left join partition_ledger
        on candidates.appointment_id = partition_ledger.appointment_id
    left join patients
        on candidates.patient_id = patients.patient_id
    left join patient_channels
        on candidates.patient_id = patient_channels.patient_id
        and candidates.country_code is not distinct from patient_channels.country_code
    left join quarantined_patients
        on candidates.patient_id = quarantined_patients.patient_id
),

deduplicated as (
    select
        *,
        case
            when is_posted then null
            when screening_code is not null then screening_code
            when row_number() over (
                partition by patient_id, screening_code is null
                order by is_already_requested desc, appointment_ends_at desc, appointment_id desc
            ) > 1 then 'duplicate_patient'
        end as deduplicated_code
    from screened
),

cooled as (
    select
        *,
        case
            when is_posted then null
            when deduplicated_code is not null then deduplicated_code
            when is_dry_run then null
            when exists (
                select 1
                from live_requests
                where live_requests.patient_id = deduplicated.patient_id
                  and abs(live_requests.target_date - deduplicated.target_date) < cast($cooloff_days as integer)
                  and not (
                      live_requests.business_number = deduplicated.business_number
                      and live_requests.appointment_id = deduplicated.appointment_id
                  )
            ) then 'cooled_off'
        end as restriction_code
    from deduplicated
),

final as (
    select
        cooled.business_number,
        cooled.partition_date,
        cooled.target_date,
        cast($group_id as bigint) as group_id,
        cooled.appointment_id,
        cooled.patient_id,
        cooled.cliniko_business_id,
        cooled.location_name,
        cooled.appointment_ends_at,
        cooled.restriction_code is null as is_eligible,
        cooled.restriction_code,
        restriction_codes.restriction_reason,
        cooled.channels,
        cooled.sms_phone,
        cooled.email,
        cooled.patient_name,
        cast($test as boolean) as is_test,
        visit_practitioners.practitioner_id,
        visit_practitioners.practitioner_name,
        visit_practitioners.practitioner_first_name,
        visit_practitioners.practitioner_last_name,
        visit_practitioners.practitioner_email,
        cooled.appointment_kind
    from cooled
    left join seeds.restriction_codes
        on cooled.restriction_code = restriction_codes.restriction_code
    -- Joined last: who saw the patient names the request, it never decides whether there is one.
    left join int_visit_practitioners as visit_practitioners
        on cooled.appointment_id = visit_practitioners.appointment_id
)

select * from final;
