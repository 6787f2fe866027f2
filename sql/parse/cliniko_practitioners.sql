-- Raw `practitioners` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of
-- raw.cliniko_practitioners, with `_reason` naming every value of the wrong type (that value is null in its
-- column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko sent it.
-- (`pipeline/warehouse/pages.py` resolves an id that comes twice.) `is_active` (from the listing that
-- returned the record: /practitioners or /practitioners/inactive) and `email` (the practitioner's user's) are
-- set by `pipeline.assets.practitioners.practitioner_lookup`.
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"practitioners": [{
            "id": "VARCHAR",
            "user": {"links": {"self": "VARCHAR"}},
            "first_name": "JSON", "last_name": "JSON",
            "created_at": "VARCHAR", "updated_at": "VARCHAR"
        }]}').practitioners as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as practitioner_id,
        false as is_missing,
        null::boolean as is_active,
        link_id(r.user.links.self) as user_id,
        text_value(r.first_name) as first_name,
        text_value(r.last_name) as last_name,
        null::varchar as email,
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
            id_reason('practitioner_id', practitioner_id, true),
            id_reason('user_id', user_id, false),
            text_reason('first_name', r.first_name),
            text_reason('last_name', r.last_name),
            ts_reason('created_at', r.created_at, created_at),
            ts_reason('updated_at', r.updated_at, updated_at)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
