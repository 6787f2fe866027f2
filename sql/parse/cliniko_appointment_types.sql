-- Raw `appointment_types` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of
-- raw.cliniko_appointment_types, with `_reason` naming every value of the wrong type (that value is null in
-- its column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko sent it.
-- (`pipeline/warehouse/pages.py` resolves an id that comes twice.)
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"appointment_types": [{
            "id": "VARCHAR", "name": "JSON", "category": "JSON",
            "archived_at": "VARCHAR", "created_at": "VARCHAR", "updated_at": "VARCHAR"
        }]}').appointment_types as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as appointment_type_id,
        text_value(r.name) as appointment_type_name,
        text_value(r.category) as category,
        ts_value(r.archived_at) as archived_at,
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
            id_reason('appointment_type_id', appointment_type_id, true),
            text_reason('appointment_type_name', r.name),
            text_reason('category', r.category),
            ts_reason('archived_at', r.archived_at, archived_at),
            ts_reason('created_at', r.created_at, created_at),
            ts_reason('updated_at', r.updated_at, updated_at)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
