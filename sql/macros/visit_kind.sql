-- The one rule for a visit's key and kind. An individual appointment is keyed by its Cliniko id (digits only);
-- a class attendee's visit by `attendee-<id>`, which no appointment id can equal. The key goes wherever an
-- appointment id goes (the ledger, Birdeye's additionalParams, the analysts' views), so its kind is read back
-- from it: 'individual' or 'group'.
create or replace macro attendee_visit_id(attendee_id) as 'attendee-' || attendee_id;
create or replace macro visit_kind(visit_id) as
    case when starts_with(visit_id, 'attendee-') then 'group' else 'individual' end;
