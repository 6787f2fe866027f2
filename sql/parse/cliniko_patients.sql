-- Raw `patients` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of
-- raw.cliniko_patients, with `_reason` naming every value of the wrong type (that value is null in its
-- column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko sent it.
-- (`pipeline/warehouse/pages.py` resolves an id that comes twice.)
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"patients": [{
            "id": "VARCHAR",
            "first_name": "JSON", "last_name": "JSON", "preferred_first_name": "JSON",
            "email": "JSON", "reminder_type": "JSON", "patient_phone_numbers": "JSON",
            "archived_at": "VARCHAR", "deleted_at": "VARCHAR", "merged_at": "VARCHAR",
            "created_at": "VARCHAR", "updated_at": "VARCHAR"
        }]}').patients as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as patient_id,
        false as is_missing,
        text_value(r.first_name) as first_name,
        text_value(r.last_name) as last_name,
        text_value(r.preferred_first_name) as preferred_first_name,
        text_value(r.email) as email,
        text_value(r.reminder_type) as reminder_type,
        phones_value(r.patient_phone_numbers) as phone_numbers,
        ts_value(r.archived_at) as archived_at,
        ts_value(r.deleted_at) as deleted_at,
        ts_value(r.merged_at) as merged_at,
        ts_value(r.created_at) as created_at,
        ts_value(r.updated_at) as updated_at,
        r
    from records
),
-- The reasons read the typed columns from here: beside them, each would repeat its columns' expressions and
-- the query would take twice as long to plan.
checked as (
    select * exclude (r),
        nullif(concat_ws('; ',
            id_reason('patient_id', patient_id, true),
            text_reason('first_name', r.first_name),
            text_reason('last_name', r.last_name),
            text_reason('preferred_first_name', r.preferred_first_name),
            text_reason('email', r.email),
            text_reason('reminder_type', r.reminder_type),
            case when phones_bad(r.patient_phone_numbers) then 'phone_numbers: expected a list of '
                || '{phone_type, number}, got ' || shown(r.patient_phone_numbers) end,
            ts_reason('archived_at', r.archived_at, archived_at),
            ts_reason('deleted_at', r.deleted_at, deleted_at),
            ts_reason('merged_at', r.merged_at, merged_at),
            ts_reason('created_at', r.created_at, created_at),
            ts_reason('updated_at', r.updated_at, updated_at)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
