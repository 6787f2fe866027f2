-- One review request per patient per partition: no patient has two eligible rows. Returns the offending patients.
with
eligible as (
    select patient_id, appointment_id
    from marts.appointment_eligibility
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
      and is_eligible
)

select patient_id, count(*) as eligible_rows, list(appointment_id order by appointment_id) as appointment_ids
from eligible
group by patient_id
having count(*) > 1
order by patient_id;
