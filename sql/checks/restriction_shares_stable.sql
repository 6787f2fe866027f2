-- Warns when a restriction code's share of the partition's candidates jumps against the mapping's previous 28
-- days: up by 30 points or more, and by at least 4 standard errors of a share of that many candidates (so a
-- small clinic's ordinary day-to-day swing does not count), over 20+ candidates now and 50+ before. A sign that
-- a Cliniko field changed (e.g. opted_out from 20 % to 90 %), so only the codes Cliniko's data decides are
-- watched: beta, excluded types, duplicates and cool-off follow the product's own settings and history (adding
-- a type to `cliniko.appointment.types.excluded` is a jump an operator made, not a Cliniko change).
-- Returns the codes that jumped.
with
current_rows as (
    select restriction_code
    from marts.appointment_eligibility
    where business_number = $business_number
      and partition_date = cast($partition_date as date)
),

earlier_rows as (
    select restriction_code
    from marts.appointment_eligibility
    where business_number = $business_number
      and partition_date >= cast($partition_date as date) - 28
      and partition_date < cast($partition_date as date)
),

totals as (
    select
        (select count(*) from current_rows) as candidates_now,
        (select count(*) from earlier_rows) as candidates_before
),

shares as (
    select
        codes.restriction_code,
        totals.candidates_now,
        totals.candidates_before,
        (select count(*) from current_rows where restriction_code = codes.restriction_code)
            / greatest(totals.candidates_now, 1) as share_now,
        (select count(*) from earlier_rows where restriction_code = codes.restriction_code)
            / greatest(totals.candidates_before, 1) as share_before
    from seeds.restriction_codes as codes
    cross join totals
    where codes.restriction_code not in ('integration_beta', 'excluded_type', 'duplicate_patient', 'cooled_off')
)

select restriction_code, round(share_before, 3) as share_before, round(share_now, 3) as share_now,
       candidates_before, candidates_now
from shares
where candidates_now >= 20
  and candidates_before >= 50
  and share_now - share_before >= 0.3
  and (share_now - share_before)
      / sqrt(greatest(share_before * (1 - share_before), 0.0025) / candidates_now) >= 4
order by restriction_code;
