-- Every candidate of the partition has exactly one outcome: one row per appointment, and either eligible with no
-- restriction code or restricted with exactly one. Returns the offending appointments.
with
partition_rows as (
    select *
    from marts.appointment_eligibility
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

outcomes as (
    select
        appointment_id,
        count(*) as row_count,
        count(*) filter (where is_eligible = (restriction_code is not null)) as contradictory_rows
    from partition_rows
    group by appointment_id
)

select appointment_id, row_count, contradictory_rows
from outcomes
where row_count <> 1 or contradictory_rows > 0
order by appointment_id;
