-- Channels of each candidate's patient: what reminder_type allows, kept only where a usable address exists.
-- 'SMS & Email' -> sms and email; 'SMS' -> sms; 'Email' -> email; 'None', null or anything else -> none.
-- SMS needs a phone of type Mobile that e164_mobile() (pipeline/warehouse/phone.py) reads as a mobile number in
-- the Cliniko business's country; the first such number in the patient's list wins. Email needs a usable
-- address (macros/usable_email.sql: well formed, at most 40 characters). Keyed by (patient_id, country_code): a
-- mobile number is read in the country of the business the appointment is at.
create or replace temp table int_patient_channels as
with
candidate_patients as (
    select distinct patient_id, country_code
    from int_appointment_candidates
    where patient_id is not null
),

patients as (
    select *
    from staging.stg_cliniko__patients
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

allowed as (
    select
        candidate_patients.patient_id,
        candidate_patients.country_code,
        lower(patients.reminder_type) in ('sms & email', 'sms') as sms_allowed,
        lower(patients.reminder_type) in ('sms & email', 'email') as email_allowed,
        patients.email,
        patients.phone_numbers
    from candidate_patients
    inner join patients on candidate_patients.patient_id = patients.patient_id
),

phones as (
    select
        patient_id,
        country_code,
        phone_numbers,
        generate_subscripts(phone_numbers, 1) as phone_position
    from allowed
    where sms_allowed
),

mobile_numbers as (
    select
        patient_id,
        country_code,
        phone_position,
        e164_mobile(phone_numbers[phone_position].number, country_code) as sms_phone
    from phones
    where lower(trim(phone_numbers[phone_position].phone_type)) = 'mobile'
),

first_mobile_numbers as (
    select
        patient_id,
        country_code,
        arg_min(sms_phone, phone_position) as sms_phone
    from mobile_numbers
    where sms_phone is not null
    group by patient_id, country_code
),

addressed as (
    select
        allowed.patient_id,
        allowed.country_code,
        allowed.sms_allowed,
        allowed.email_allowed,
        case when allowed.sms_allowed then first_mobile_numbers.sms_phone end as sms_phone,
        case
            when allowed.email_allowed and usable_email(allowed.email) then allowed.email
        end as email
    from allowed
    left join first_mobile_numbers
        on allowed.patient_id = first_mobile_numbers.patient_id
        and allowed.country_code is not distinct from first_mobile_numbers.country_code
),

channels as (
    select
        patient_id,
        country_code,
        sms_allowed or email_allowed as has_allowed_channel,
        nullif(concat_ws(',',
            case when sms_phone is not null then 'sms' end,
            case when email is not null then 'email' end
        ), '') as channels,
        sms_phone,
        email
    from addressed
)

select * from channels;
