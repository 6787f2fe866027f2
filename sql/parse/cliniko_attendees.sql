-- Raw `attendees` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of
-- raw.cliniko_attendees, with `_reason` naming every value of the wrong type (that value is null in its
-- column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko sent it.
-- (`pipeline/warehouse/pages.py` resolves an id that comes twice.) The class is the attendee's `booking` link
-- (bookings and group appointments share their ids).
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"attendees": [{
            "id": "VARCHAR",
            "booking": {"links": {"self": "VARCHAR"}},
            "patient": {"links": {"self": "VARCHAR"}},
            "arrived": "JSON",
            "cancelled_at": "VARCHAR", "archived_at": "VARCHAR", "deleted_at": "VARCHAR",
            "created_at": "VARCHAR", "updated_at": "VARCHAR"
        }]}').attendees as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as attendee_id,
        link_id(r.booking.links.self) as booking_id,
        link_id(r.patient.links.self) as patient_id,
        bool_value(r.arrived) as arrived,
        ts_value(r.cancelled_at) as cancelled_at,
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
            id_reason('attendee_id', attendee_id, true),
            id_reason('booking_id', booking_id, true),
            id_reason('patient_id', patient_id, false),
            bool_reason('arrived', r.arrived),
            ts_reason('cancelled_at', r.cancelled_at, cancelled_at),
            ts_reason('archived_at', r.archived_at, archived_at),
            ts_reason('deleted_at', r.deleted_at, deleted_at),
            ts_reason('created_at', r.created_at, created_at),
            ts_reason('updated_at', r.updated_at, updated_at)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
