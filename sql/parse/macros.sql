-- Helpers of the page parsers (cliniko_*.sql here). A field is read as JSON text (`"a"`, `5`, `true`, `null`)
-- where its JSON type matters, and as VARCHAR (the text of any scalar) where only its text does.
-- `""` is read as null, as Cliniko's old payloads use it for null.
create or replace temp macro shown(j) as
    case when length(j) > 60 then left(j, 57) || '...' else j end;
-- The id of a related record from its `links.self` URL: the last path segment, without query or slash
-- (a text without a slash is no link).
create or replace temp macro link_id(url) as
    case when contains(url, '/') then nullif(regexp_extract(split_part(url, '?', 1), '([^/]*)/*$', 1), '') end;
create or replace temp macro ts_value(v) as try_cast(nullif(v, '') as timestamptz);
-- `v` was there but did not parse into `ts` (the column computed from it).
create or replace temp macro ts_bad(v, ts) as nullif(v, '') is not null and ts is null;
create or replace temp macro bool_value(j) as case j when 'true' then true when 'false' then false end;
create or replace temp macro bool_bad(j) as j not in ('true', 'false', 'null', '""');
create or replace temp macro text_value(j) as case when left(j, 1) = '"' then nullif(j ->> '$', '') end;
create or replace temp macro text_bad(j) as j <> 'null' and left(j, 1) <> '"';
-- A phone list: null, or an array of objects whose phone_type and number are text or null.
create or replace temp macro phones_bad(j) as
    j not in ('null', '""') and not (
        left(j, 1) = '['
        and coalesce(list_bool_and(list_transform(
            from_json(j, '["JSON"]'),
            lambda p: left(p, 1) = '{'
                and coalesce(json_type(p, '$.phone_type'), 'NULL') in ('VARCHAR', 'NULL')
                and coalesce(json_type(p, '$.number'), 'NULL') in ('VARCHAR', 'NULL')
        )), true)
    );
create or replace temp macro phones_value(j) as
    case when left(j, 1) = '[' and not phones_bad(j) then list_transform(
        from_json(j, '[{"phone_type": "VARCHAR", "number": "VARCHAR"}]'),
        lambda p: {'phone_type': nullif(p.phone_type, ''), 'number': nullif(p.number, '')}
    ) end;
-- One reason for `_reason`, or null: column `name` held something other than its type.
create or replace temp macro ts_reason(name, v, ts) as
    case when ts_bad(v, ts) then name || ': unparsable timestamp, got ' || shown(v) end;
create or replace temp macro bool_reason(name, j) as
    case when bool_bad(j) then name || ': expected true/false, got ' || shown(j) end;
create or replace temp macro text_reason(name, j) as
    case when text_bad(j) then name || ': expected text, got ' || shown(j) end;
-- An id column (`v`, computed above): a record's own id must be there; every id must be made of digits.
create or replace temp macro id_reason(name, v, required) as
    case when v is null then case when required then name || ': missing' end
         when not regexp_full_match(v, '[0-9]+') then name || ': not a Cliniko id, got ' || shown(v) end;
-- A column the table cannot do without (a visit's end, an attendee's class), as typed above.
create or replace temp macro required_reason(name, v) as case when v is null then name || ': missing' end;
