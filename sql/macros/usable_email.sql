-- The one rule for an email address Birdeye is sent: well formed and at most 40 characters (Birdeye answers a
-- longer customer email with 1088, and documents no other limit). A patient's email channel needs one
-- (int_patient_channels), and so does a practitioner's `employees` entry (stg_cliniko__practitioners).
create or replace macro usable_email(address) as
    length(address) <= 40
    and regexp_full_match(
        address,
        '[A-Za-z0-9.!#$%&''*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+'
    );
