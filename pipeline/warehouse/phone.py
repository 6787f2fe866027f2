"""E.164 normalisation of patients' mobile numbers, exposed to SQL as the DuckDB function `e164_mobile`.

The rule (SMS needs a mobile number in E.164) lives in one small pure function so it can be tested without
DuckDB; `register_phone_functions` makes it callable from `sql/intermediate/int_patient_channels.sql`. The UDF
is vectorised (arrow): DuckDB hands it whole vectors, which costs one Python call per 2048 rows instead of one
per row, and an LRU cache absorbs the repeats (the same patient in many partitions).
"""

from __future__ import annotations

from functools import lru_cache

import duckdb
import phonenumbers
import pyarrow as pa
from phonenumbers import PhoneNumberFormat, PhoneNumberType

SQL_FUNCTION_NAME = "e164_mobile"
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


@lru_cache(maxsize=65536)
def e164_mobile(raw: str | None, country_code: str | None) -> str | None:
    """Return `raw` as an E.164 mobile number (`+61412345678`), or None if it is not a valid mobile number.

    `country_code` (ISO 3166-1 alpha-2, the Cliniko business's country) reads national numbers such as
    `0412 345 678`; numbers written with their country code but without `+` (`61444444444`) are tried as
    international when the national reading is not valid. Fixed lines, garbage and numbers of an unknown
    country give None, because SMS can only go to a mobile.
    """
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    region = country_code.strip().upper() if country_code and country_code.strip() else None
    number = _parse(text, region) if region or text.startswith("+") else None
    if number is None and not text.startswith("+"):
        digits = "".join(ch for ch in text if ch.isdigit())
        number = _parse("+" + digits, None) if digits else None
    if number is None or phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _e164_mobile_arrow(raw: pa.Array, country_code: pa.Array) -> pa.Array:
    return pa.array(
        [e164_mobile(r, c) for r, c in zip(raw.to_pylist(), country_code.to_pylist(), strict=True)],
        type=pa.string(),
    )


def register_phone_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Make `e164_mobile(number varchar, country_code varchar) -> varchar` callable on `con` (idempotent).

    UDFs live on the connection, not in the database file, so every connection that builds models calls this.
    """
    try:  # a probe call: listing duckdb_functions() costs ~50 ms, a quarter of a partition build
        con.execute(f"select {SQL_FUNCTION_NAME}(null, null)").fetchall()
        return
    except duckdb.CatalogException:
        pass
    con.create_function(
        SQL_FUNCTION_NAME,
        _e164_mobile_arrow,
        [duckdb.sqltype("VARCHAR"), duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("VARCHAR"),
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
