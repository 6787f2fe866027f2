-- Raw `users` pages (table `pages`: page_no, body) -> one row per record: the user's id and email (a
-- practitioner's email is its user's), with `_reason`, `_page`, `_index` as in the other parsers.
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
        text_reason('email', r.email) as _reason
    from records
)
select * from typed
order by _page, _index
