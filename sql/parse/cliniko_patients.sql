-- Raw `patients` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of
-- raw.cliniko_patients, with `_reason` naming every value of the wrong type (that value is null in its
-- column), and `_page`, `_index` to find the record as Cliniko sent it. (`pages.py` resolves an id that
-- comes twice.) A reason names the column computed above it in the same select.
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
        nullif(concat_ws('; ',
            case when text_bad(r.first_name) then 'first_name: expected text, got ' || shown(r.first_name) end,
            case when text_bad(r.last_name) then 'last_name: expected text, got ' || shown(r.last_name) end,
            case when text_bad(r.preferred_first_name)
                then 'preferred_first_name: expected text, got ' || shown(r.preferred_first_name) end,
            case when text_bad(r.email) then 'email: expected text, got ' || shown(r.email) end,
            case when text_bad(r.reminder_type)
                then 'reminder_type: expected text, got ' || shown(r.reminder_type) end,
            case when phones_bad(r.patient_phone_numbers) then 'phone_numbers: expected a list of '
                || '{phone_type, number}, got ' || shown(r.patient_phone_numbers) end,
            case when ts_bad(r.archived_at, archived_at) then 'archived_at: unparsable timestamp, got ' || shown(r.archived_at) end,
            case when ts_bad(r.deleted_at, deleted_at) then 'deleted_at: unparsable timestamp, got ' || shown(r.deleted_at) end,
            case when ts_bad(r.merged_at, merged_at) then 'merged_at: unparsable timestamp, got ' || shown(r.merged_at) end,
            case when ts_bad(r.created_at, created_at) then 'created_at: unparsable timestamp, got ' || shown(r.created_at) end,
            case when ts_bad(r.updated_at, updated_at) then 'updated_at: unparsable timestamp, got ' || shown(r.updated_at) end
        ), '') as _reason
    from records
)
select * from typed
order by _page, _index
