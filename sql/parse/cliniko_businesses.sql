-- Raw `businesses` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of
-- raw.cliniko_businesses, with `_reason` naming every value of the wrong type (that value is null in its
-- column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko sent it.
-- (`pipeline/warehouse/pages.py` resolves an id that comes twice.)
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"businesses": [{
            "id": "VARCHAR",
            "business_name": "JSON", "display_name": "JSON", "time_zone_identifier": "JSON",
            "country_code": "JSON",
            "archived_at": "VARCHAR", "deleted_at": "VARCHAR",
            "created_at": "VARCHAR", "updated_at": "VARCHAR"
        }]}').businesses as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as cliniko_business_id,
        text_value(r.business_name) as business_name,
        text_value(r.display_name) as display_name,
        text_value(r.time_zone_identifier) as time_zone_identifier,
        text_value(r.country_code) as country_code,
        ts_value(r.archived_at) as archived_at,
        ts_value(r.deleted_at) as deleted_at,
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
            id_reason('cliniko_business_id', cliniko_business_id, true),
            text_reason('business_name', r.business_name),
            text_reason('display_name', r.display_name),
            text_reason('time_zone_identifier', r.time_zone_identifier),
            text_reason('country_code', r.country_code),
            ts_reason('archived_at', r.archived_at, archived_at),
            ts_reason('deleted_at', r.deleted_at, deleted_at),
            ts_reason('created_at', r.created_at, created_at),
            ts_reason('updated_at', r.updated_at, updated_at)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
