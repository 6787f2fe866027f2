-- Raw `group_appointments` pages (table `pages`: page_no, body) -> one typed row per record, in the columns
-- of raw.cliniko_group_appointments, with `_reason` naming every value of the wrong type (that value is null
-- in its column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko sent
-- it. (`pipeline/warehouse/pages.py` resolves an id that comes twice.)
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"group_appointments": [{
            "id": "VARCHAR",
            "business": {"links": {"self": "VARCHAR"}},
            "practitioner": {"links": {"self": "VARCHAR"}},
            "appointment_type": {"links": {"self": "VARCHAR"}},
            "starts_at": "VARCHAR", "ends_at": "VARCHAR",
            "archived_at": "VARCHAR", "deleted_at": "VARCHAR",
            "created_at": "VARCHAR", "updated_at": "VARCHAR"
        }]}').group_appointments as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as group_appointment_id,
        link_id(r.business.links.self) as cliniko_business_id,
        link_id(r.practitioner.links.self) as practitioner_id,
        link_id(r.appointment_type.links.self) as appointment_type_id,
        ts_value(r.starts_at) as starts_at,
        ts_value(r.ends_at) as ends_at,
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
            id_reason('group_appointment_id', group_appointment_id, true),
            id_reason('cliniko_business_id', cliniko_business_id, false),
            id_reason('practitioner_id', practitioner_id, false),
            id_reason('appointment_type_id', appointment_type_id, false),
            required_reason('ends_at', ends_at),
            ts_reason('starts_at', r.starts_at, starts_at),
            ts_reason('ends_at', r.ends_at, ends_at),
            ts_reason('archived_at', r.archived_at, archived_at),
            ts_reason('deleted_at', r.deleted_at, deleted_at),
            ts_reason('created_at', r.created_at, created_at),
            ts_reason('updated_at', r.updated_at, updated_at)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
