-- The one rule for matching a name a person typed (a mapping's `cliniko.location.name`, its excluded
-- appointment types) against the names Cliniko holds: trimmed and lower-cased. "Straße" and "STRASSE" are two
-- names. Every match, in the models and in the ingestion's checks, goes through it.
create or replace macro name_key(name) as lower(trim(name));
