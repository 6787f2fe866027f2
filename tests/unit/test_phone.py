"""E.164 normalisation of mobile numbers, alone and as the DuckDB function the channel model calls."""

import duckdb
import pytest

from pipeline.warehouse.phone import e164_mobile, register_phone_functions


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("61444444444", "AU", "+61444444444"),  # country code without +
        ("61444444444", None, "+61444444444"),
        ("0412 345 678", "AU", "+61412345678"),
        ("0412 345 678", "au", "+61412345678"),
        ("  +64 21 123 4567 ", "AU", "+64211234567"),  # international wins over the business's country
        ("+64 21 123 4567", None, "+64211234567"),
        ("(415) 555-2671", "US", "+14155552671"),  # FIXED_LINE_OR_MOBILE is usable
        ("021 123 4567", "NZ", "+64211234567"),
        ("02 9876 5432", "AU", None),  # a fixed line cannot receive SMS
        ("0412 345 678", None, None),  # a national number without a country
        ("garbage", "AU", None),
        ("12", "AU", None),
        ("", "AU", None),
        (None, "AU", None),
    ],
)
def test_e164_mobile(raw: str | None, country: str | None, expected: str | None) -> None:
    assert e164_mobile(raw, country) == expected


def test_sql_function_is_vectorised_and_registered_once() -> None:
    con = duckdb.connect()
    register_phone_functions(con)
    register_phone_functions(con)
    rows = con.execute(
        "select e164_mobile(number, country) from (values ('0412 345 678', 'AU'), (null, 'AU'), "
        "('+64 21 123 4567', null), ('02 9876 5432', 'AU')) as t(number, country)"
    ).fetchall()
    assert rows == [("+61412345678",), (None,), ("+64211234567",), (None,)]
    count = con.execute(
        "select count(e164_mobile('0412' || lpad(i::varchar, 6, '0'), 'AU')) from range(5000) t(i)"
    )
    assert count.fetchall() == [(5000,)]
