-- The build of partition ($business_number, $partition_date) by run $run_id, in the build's transaction.
-- A partition is never rebuilt by a run that started before the run that built it last: that older run would
-- replace newer decisions with what it saw earlier (a partial view of the day). It stops with an error instead,
-- and nothing of its build lands.
select error(
    'partition ' || cast($partition_date as date) || '|' || $business_number || ' was already built by run '
    || run_id || ', which started at ' || run_started_at || ', after this run started; this run changes nothing'
)
from calendar.partition_runs
where business_number = $business_number
  and partition_date = cast($partition_date as date)
  and status in ('built', 'succeeded')
  and run_started_at > cast($run_started_at as timestamptz)
  and run_id <> $run_id
limit 1;

insert or replace into calendar.partition_runs
    (run_id, business_number, partition_date, group_id, target_date, run_started_at, close_at, is_partial, status,
     candidates, eligible, updated_at)
select
    $run_id,
    $business_number,
    cast($partition_date as date),
    $group_id,
    cast($partition_date as date) - cast($fetch_delay_days as integer),
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
