-- Claims (SPEC §5, §8): the partition's eligible candidates become ledger rows in the same transaction that
-- decided them, `pending` (`dry_run` for a test mapping). A decision and its claim are one step under the
-- warehouse lock, so a run of the same integration group that decides next reads these rows first: two runs can
-- never both ask one patient inside the cool-off window, nor twice in one partition. A row the ledger already
-- holds (a re-run) is left exactly as it is, but for a `pending` claim or a dry run this decision no longer
-- makes: nothing of it reached Birdeye, so it is withdrawn (the patient archived or marked did-not-arrive
-- since, say), and the appointment keeps one outcome, its restriction.
delete from sink.review_request_ledger as ledger
where ledger.business_number = $business_number
  and ledger.partition_date = cast($partition_date as date)
  and ledger.status in ('pending', 'dry_run')
  and not exists (
      select 1
      from marts.appointment_eligibility as decided
      where decided.business_number = ledger.business_number
        and decided.partition_date = ledger.partition_date
        and decided.appointment_id = ledger.appointment_id
        and decided.is_eligible
  );

insert into sink.review_request_ledger
    (business_number, appointment_id, partition_date, target_date, group_id, patient_id, channels, status, updated_at)
select
    business_number,
    appointment_id,
    partition_date,
    target_date,
    group_id,
    patient_id,
    channels,
    case when is_test then 'dry_run' else 'pending' end,
    current_timestamp
from marts.appointment_eligibility
where business_number = $business_number
  and partition_date = cast($partition_date as date)
  and is_eligible
on conflict do nothing;
