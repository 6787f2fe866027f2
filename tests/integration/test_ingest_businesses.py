"""The appointments asset reads the mapping's stored businesses back from DuckDB to find their time zones."""

from datetime import UTC, date, datetime

import duckdb

from pipeline.assets.ingest import stored_businesses
from pipeline.calendar.rules import local_day_window
from pipeline.warehouse.slices import ensure_tables


def test_a_business_without_time_zone_reads_back_as_none_and_gets_a_utc_day(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_tables(con)
    con.execute(
        "insert into raw.cliniko_businesses (business_number, cliniko_business_id, business_name, "
        "time_zone_identifier, loaded_at) values "
        "('1', '10', 'Mobile Visits', null, now()), "
        "('1', '11', 'Sydney CBD Physio', 'Australia/Sydney', now())"
    )
    businesses = {b["business_name"]: b for b in stored_businesses(con, "1")}
    con.close()
    assert businesses["Mobile Visits"]["time_zone_identifier"] is None
    assert local_day_window(date(2026, 11, 24), businesses["Mobile Visits"]["time_zone_identifier"]) == (
        datetime(2026, 11, 24, tzinfo=UTC),
        datetime(2026, 11, 25, tzinfo=UTC),
    )
    assert businesses["Sydney CBD Physio"]["time_zone_identifier"] == "Australia/Sydney"
