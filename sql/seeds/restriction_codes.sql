-- Restriction codes and their texts (SPEC §4), in precedence order: a candidate gets the first that applies.
-- The first three texts are the support manual's own. Rebuilt on every run so a wording change lands at once.
create schema if not exists seeds;
create or replace table seeds.restriction_codes as
with codes as (
    select * from (values
        (1, 'integration_beta',  'Integration is beta'),
        (2, 'customer_inactive', 'The customer is inactive'),
        (3, 'invalid_record',    'The Cliniko record failed validation'),
        (4, 'did_not_arrive',    'The patient did not arrive for an appointment.'),
        (5, 'excluded_type',     'The appointment type is excluded'),
        (6, 'opted_out',         'The customer opted out of email and SMS'),
        (7, 'no_contact',        'No usable email or mobile number'),
        (8, 'duplicate_patient', 'Another appointment of this patient was selected'),
        (9, 'cooled_off',        'The customer was asked recently')
    ) as codes (precedence, restriction_code, restriction_reason)
)
select restriction_code, restriction_reason, precedence from codes;
