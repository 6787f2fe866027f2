-- Every restriction code of the partition is in seeds.restriction_codes, with that code's text.
-- Returns the offending appointments.
with
restricted as (
    select appointment_id, restriction_code, restriction_reason
    from marts.appointment_eligibility
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
      and restriction_code is not null
)

select
    restricted.appointment_id,
    restricted.restriction_code,
    restricted.restriction_reason,
    restriction_codes.restriction_reason as expected_reason
from restricted
left join seeds.restriction_codes
    on restricted.restriction_code = restriction_codes.restriction_code
where restriction_codes.restriction_code is null
   or restricted.restriction_reason is distinct from restriction_codes.restriction_reason
order by restricted.appointment_id;
