-- Candidates = eligible + restricted, and the restricted rows add up over the codes. Returns the partition's
-- counts when they do not reconcile.
with
partition_rows as (
    select *
    from marts.appointment_eligibility
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

counts as (
    select
        count(*) as candidates,
        count(*) filter (where is_eligible) as eligible,
        count(*) filter (where not is_eligible) as restricted,
        count(restriction_code) as with_restriction_code
    from partition_rows
)

select candidates, eligible, restricted, with_restriction_code
from counts
where candidates <> eligible + restricted
   or restricted <> with_restriction_code;
