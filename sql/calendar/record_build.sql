-- The build of partition ($business_number, $partition_date) by run $run_id, in the build's transaction (after
-- `newer_build.sql` found no newer run that built it).
insert or replace into calendar.partition_runs
    (run_id, business_number, partition_date, group_id, target_date, run_started_at, close_at, is_partial, status,
     candidates, eligible, updated_at)
select
    $run_id,
    $business_number,
    cast($partition_date as date),
    $group_id,
    cast($target_date as date),
    cast($run_started_at as timestamptz),
    cast($close_at as timestamptz),
    cast($run_started_at as timestamptz) < cast($close_at as timestamptz),
    'built',
    count(*),
    count(*) filter (where is_eligible),
    current_timestamp
from marts.appointment_eligibility
where business_number = $business_number
  and partition_date = cast($partition_date as date);
