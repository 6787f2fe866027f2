-- The run that last built partition ($business_number, $partition_date), if it started after run $run_id did.
-- A partition is never rebuilt by a run that started before the run that built it last: that older run would
-- replace newer decisions with what it saw earlier (a partial view of the day), so it stops instead and nothing
-- of its build lands (`pipeline.warehouse.models.refuse_if_superseded`). Plain SQL that DuckDB (a group's own
-- runs) and PostgreSQL (every host's runs) both run.
select run_id, run_started_at
from calendar.partition_runs
where business_number = $business_number
  and partition_date = cast($partition_date as date)
  and status in ('built', 'succeeded')
  and run_started_at > cast($run_started_at as timestamptz)
  and run_id <> $run_id
order by run_started_at desc
limit 1
