-- Raw `users` pages (table `pages`: page_no, body) -> one typed row per record, in the columns of the users
-- (for raw.cliniko_practitioners' emails), with `_reason` naming every value of the wrong type (that value is
-- null in its column) and every missing or malformed id, and `_page`, `_index` to find the record as Cliniko
-- sent it. (`pipeline/warehouse/pages.py` resolves an id that comes twice.) Only what a practitioner needs of
-- its user: the email.
with records as (
    select page_no, unnest(range(len(r))) as record_no, unnest(r) as r
    from (
        select page_no, json_transform(body, '{"users": [{"id": "VARCHAR", "email": "JSON"}]}').users as r
        from (select page_no, decode(body) as body from pages)
    )
),
typed as (
    select
        page_no as _page,
        record_no as _index,
        nullif(r.id, '') as user_id,
        text_value(r.email) as email,
        r
    from records
),
-- The reasons read the typed columns from here: beside them, each would repeat its columns' expressions and
-- the query would take twice as long to plan.
checked as (
    select * exclude (r),
        nullif(concat_ws('; ',
            id_reason('user_id', user_id, true),
            text_reason('email', r.email)
        ), '') as _reason
    from typed
)
select * from checked
order by _page, _index
