"""The ingestion matches a mapping's location names against the stored businesses by the models' own rule
(`int_matched_businesses`), and reads their time zones back from DuckDB to find each one's local day."""

from datetime import UTC, date, datetime

import duckdb
import pytest
from models_fixtures import Warehouse

from pipeline.calendar.rules import local_day_window, zone
from pipeline.warehouse.models import match_locations
from pipeline.warehouse.slices import ensure_tables


def test_a_business_without_a_known_time_zone_reads_back_as_utc_and_gets_a_utc_day(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_tables(con)
    con.execute(
        "insert into raw.cliniko_businesses (business_number, cliniko_business_id, business_name, "
        "time_zone_identifier, loaded_at) values "
        "('1', '10', 'Mobile Visits', null, now()), "
        "('1', '11', 'Sydney CBD Physio', 'Australia/Sydney', now()), "
        "('1', '12', 'Base One', 'Mars/Base', now())"
    )
    matched = match_locations(con, "1", ["Mobile Visits", "Sydney CBD Physio", "Base One"])
    con.close()
    businesses = {b["location_name"]: b for b in matched.businesses}
    assert businesses["Mobile Visits"]["time_zone"] == "UTC"
    assert local_day_window(date(2026, 11, 24), businesses["Mobile Visits"]["time_zone"]) == (
        datetime(2026, 11, 24, tzinfo=UTC),
        datetime(2026, 11, 25, tzinfo=UTC),
    )
    assert businesses["Sydney CBD Physio"]["time_zone"] == "Australia/Sydney"
    # A zone nobody knows is UTC in the models as in Python (`rules.zone`), not an error in one of them.
    assert businesses["Base One"]["time_zone"] == "UTC" == zone("Mars/Base").key
    assert matched.unknown == []


@pytest.fixture
def wh(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield Warehouse(con)
    con.close()


def test_what_the_ingestion_matches_is_exactly_what_the_candidates_read(wh):
    """One rule for both: a name the ingestion accepts is a name the build finds visits of, and one it
    refuses would have found none. Python's casefold would match "STRASSE" to "Straße"; the models do not."""
    wh.business("1001", "b1", "  Praxis Straße ")
    wh.business("1001", "b2", "Sydney CBD Physio")
    wh.patient("1001", "p1")
    wh.patient("1001", "p2")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00", cliniko_business_id="b1")
    wh.appointment("1001", "a2", patient_id="p2", ends_at="2026-11-24 11:00", cliniko_business_id="b2")

    matched = match_locations(wh.con, "1001", ["praxis STRAßE", "STRASSE", "sydney cbd physio "])
    assert sorted(b["cliniko_business_id"] for b in matched.businesses) == ["b1", "b2"]
    assert matched.unknown == ["STRASSE"]
    assert matched.existing == ["Praxis Straße", "Sydney CBD Physio"]

    wh.build("1001", location_names=["praxis STRAßE", "STRASSE"])
    assert set(wh.outcomes("1001")) == {"a1"}


def test_a_business_whose_zone_nobody_knows_builds_its_day_in_utc(wh):
    wh.business("1001", "b1", "Base One", tz="Mars/Base")
    wh.patient("1001", "p1")
    wh.patient("1001", "p2")
    # 2026-11-24 23:30 UTC is that day in UTC (and the 25th in Sydney, the fixtures' default zone).
    wh.appointment("1001", "a-utc", patient_id="p1", ends_at="2026-11-24 23:30", tz="UTC")
    wh.appointment("1001", "a-next", patient_id="p2", ends_at="2026-11-25 00:30", tz="UTC")
    wh.build("1001", location_names=["Base One"])
    assert set(wh.outcomes("1001")) == {"a-utc"}
