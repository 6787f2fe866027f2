"""The calendar rules of SPEC §8 (`pipeline/calendar/rules.py`): close times, runnable-at, due times, the
catch-up horizon, retry backoff and scope. Pure functions, so every expectation below is an instant worked out
by hand (the arithmetic is in the comments), never one produced by the function under test."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.calendar import rules

LA = "America/Los_Angeles"
HONOLULU = "Pacific/Honolulu"
LONDON = "Europe/London"
SYDNEY = "Australia/Sydney"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


def utc(text: str) -> datetime:
    """'2026-06-16 07:00' as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


# --- helpers that read the zone database directly (to verify preconditions, not to compute expectations) ---


def offset_at(zone_name: str, instant: datetime) -> timedelta:
    """The zone's UTC offset at a UTC instant."""
    return instant.astimezone(ZoneInfo(zone_name)).utcoffset()


def midnight_is_skipped(zone_name: str, day: date) -> bool:
    """Local `day` 00:00 never shows on the zone's clocks (DST jumps over it)."""
    wall = datetime.combine(day, time.min)
    round_trip = wall.replace(tzinfo=ZoneInfo(zone_name)).astimezone(UTC).astimezone(ZoneInfo(zone_name))
    return round_trip.replace(tzinfo=None) != wall


def midnight_is_repeated(zone_name: str, day: date) -> bool:
    """Local `day` 00:00 shows twice on the zone's clocks (DST ends and the clock falls back onto it)."""
    wall = datetime.combine(day, time.min, tzinfo=ZoneInfo(zone_name))
    return not midnight_is_skipped(zone_name, day) and (
        wall.replace(fold=0).utcoffset() != wall.replace(fold=1).utcoffset()
    )


def offset_change_between(zone_name: str, start: datetime, end: datetime) -> datetime:
    """The first whole UTC second in (start, end] with the offset in force at `end` (bisection; zone changes
    happen on whole seconds)."""
    target = offset_at(zone_name, end)
    assert offset_at(zone_name, start) != target
    low, high = int(start.timestamp()), int(end.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if offset_at(zone_name, datetime.fromtimestamp(middle, UTC)) == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


# --- zone() and target_day() ---


@pytest.mark.parametrize("identifier", [None, "", "Mars/Olympus", "../../etc/passwd"])
def test_zone_falls_back_to_utc_for_missing_or_unusable_identifiers(identifier):
    assert rules.zone(identifier) == ZoneInfo("UTC")


def test_zone_resolves_an_iana_identifier():
    assert rules.zone(SYDNEY) == ZoneInfo(SYDNEY)


@pytest.mark.parametrize(
    ("partition", "delay", "expected"),
    [
        ("2026-06-15", 0, "2026-06-15"),
        ("2026-06-15", 1, "2026-06-14"),
        ("2026-03-01", 1, "2026-02-28"),  # 2026 is not a leap year
        ("2028-03-01", 1, "2028-02-29"),  # 2028 is
        ("2026-01-02", 3, "2025-12-30"),  # across a year
        ("2026-06-15", 365, "2025-06-15"),
    ],
)
def test_target_day_is_the_partition_date_minus_the_fetch_delay(partition, delay, expected):
    assert rules.target_day(d(partition), delay) == d(expected)


# --- close_time: ordinary days, one zone ---


@pytest.mark.parametrize(
    ("zone_name", "target", "expected"),
    [
        # Summer in the north (PDT = UTC-7): 2026-06-16 00:00 -07:00 = 2026-06-16 07:00 UTC.
        (LA, "2026-06-15", "2026-06-16 07:00"),
        # Winter (PST = UTC-8): 2026-01-16 00:00 -08:00 = 2026-01-16 08:00 UTC.
        (LA, "2026-01-15", "2026-01-16 08:00"),
        # Hawaii has no DST (HST = UTC-10): 00:00 -10:00 = 10:00 UTC, all year.
        (HONOLULU, "2026-06-15", "2026-06-16 10:00"),
        (HONOLULU, "2026-01-15", "2026-01-16 10:00"),
        # BST = UTC+1: 2026-06-16 00:00 +01:00 = 2026-06-15 23:00 UTC.
        (LONDON, "2026-06-15", "2026-06-15 23:00"),
        # GMT = UTC+0: 2026-01-16 00:00 = 2026-01-16 00:00 UTC.
        (LONDON, "2026-01-15", "2026-01-16 00:00"),
        # Southern winter (AEST = UTC+10): 2026-06-16 00:00 +10:00 = 2026-06-15 14:00 UTC.
        (SYDNEY, "2026-06-15", "2026-06-15 14:00"),
        # Southern summer (AEDT = UTC+11): 2026-01-16 00:00 +11:00 = 2026-01-15 13:00 UTC.
        (SYDNEY, "2026-01-15", "2026-01-15 13:00"),
    ],
)
def test_close_time_of_one_zone_is_the_local_midnight_that_ends_the_target_day(zone_name, target, expected):
    assert rules.close_time(d(target), [zone_name]) == utc(expected)


def test_close_time_is_returned_as_a_utc_instant():
    closed = rules.close_time(d("2026-06-15"), [SYDNEY])
    assert closed.utcoffset() == timedelta(0)


# --- close_time: several zones, missing zones, unknown zones ---


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        # Sydney 06-15 14:00, London 06-15 23:00, LA 06-16 07:00, Honolulu 06-16 10:00 UTC: Honolulu is last.
        ([SYDNEY, LONDON, LA, HONOLULU], "2026-06-16 10:00"),
        ([HONOLULU, LA, LONDON, SYDNEY], "2026-06-16 10:00"),  # order does not matter
        ([SYDNEY, LONDON], "2026-06-15 23:00"),
        ([LA, LA, SYDNEY], "2026-06-16 07:00"),  # two businesses in one zone
        # A business without a zone is in UTC: 06-16 00:00 UTC is later than Sydney's 06-15 14:00 UTC ...
        ([SYDNEY, None], "2026-06-16 00:00"),
        # ... and earlier than Honolulu's 06-16 10:00 UTC.
        ([None, HONOLULU], "2026-06-16 10:00"),
        ([None], "2026-06-16 00:00"),
        # An identifier zoneinfo cannot resolve counts as UTC too.
        (["Mars/Olympus"], "2026-06-16 00:00"),
        ([""], "2026-06-16 00:00"),
    ],
)
def test_close_time_of_several_businesses_is_the_latest_of_their_midnights(zones, expected):
    assert rules.close_time(d("2026-06-15"), zones) == utc(expected)


@pytest.mark.parametrize("zones", [None, [], ()], ids=["no-list", "empty-list", "empty-tuple"])
def test_close_time_with_unknown_zones_assumes_the_last_place_where_a_day_ends(zones):
    # Unknown zones mean Etc/GMT+12, i.e. UTC-12: 2026-06-16 00:00 -12:00 = 2026-06-16 12:00 UTC.
    assert rules.close_time(d("2026-06-15"), zones) == utc("2026-06-16 12:00")


def test_unknown_zones_close_no_earlier_than_any_real_zone():
    # UTC-12 is the last midnight on Earth: no IANA zone closes 2026-06-15 later than 06-16 12:00 UTC.
    latest = max(rules.close_time(d("2026-06-15"), [name]) for name in zoneinfo.available_timezones())
    assert latest <= rules.close_time(d("2026-06-15"), None) == utc("2026-06-16 12:00")


def test_close_time_accepts_any_iterable_of_zones():
    zones = (name for name in [SYDNEY, HONOLULU])
    assert rules.close_time(d("2026-06-15"), zones) == utc("2026-06-16 10:00")


# --- close_time and local_day_window across ordinary DST changes ---


def test_sydney_dst_start_makes_2026_10_04_a_23_hour_day():
    # 2026-10-04 (first Sunday of October) 02:00 AEST (+10) jumps to 03:00 AEDT (+11).
    assert offset_at(SYDNEY, utc("2026-10-03 15:59")) == 10 * HOUR
    assert offset_at(SYDNEY, utc("2026-10-03 16:00")) == 11 * HOUR
    # 10-03 ends at 10-04 00:00 AEST = 10-03 14:00 UTC (before the change).
    assert rules.close_time(d("2026-10-03"), [SYDNEY]) == utc("2026-10-03 14:00")
    # 10-04 ends at 10-05 00:00 AEDT = 10-04 13:00 UTC (after it).
    assert rules.close_time(d("2026-10-04"), [SYDNEY]) == utc("2026-10-04 13:00")
    assert rules.local_day_window(d("2026-10-03"), SYDNEY) == (
        utc("2026-10-02 14:00"),
        utc("2026-10-03 14:00"),
    )
    start, end = rules.local_day_window(d("2026-10-04"), SYDNEY)
    assert (start, end) == (utc("2026-10-03 14:00"), utc("2026-10-04 13:00"))
    assert end - start == 23 * HOUR


def test_sydney_dst_end_makes_2026_04_05_a_25_hour_day():
    # 2026-04-05 (first Sunday of April) 03:00 AEDT (+11) falls back to 02:00 AEST (+10) = 04-04 16:00 UTC.
    assert offset_at(SYDNEY, utc("2026-04-04 15:59")) == 11 * HOUR
    assert offset_at(SYDNEY, utc("2026-04-04 16:00")) == 10 * HOUR
    # 04-04 ends at 04-05 00:00 AEDT = 04-04 13:00 UTC.
    assert rules.close_time(d("2026-04-04"), [SYDNEY]) == utc("2026-04-04 13:00")
    # 04-05 ends at 04-06 00:00 AEST = 04-05 14:00 UTC.
    assert rules.close_time(d("2026-04-05"), [SYDNEY]) == utc("2026-04-05 14:00")
    start, end = rules.local_day_window(d("2026-04-05"), SYDNEY)
    assert (start, end) == (utc("2026-04-04 13:00"), utc("2026-04-05 14:00"))
    assert end - start == 25 * HOUR


def test_london_dst_changes_of_2026():
    # 2026-10-25 (last Sunday of October) 02:00 BST (+1) falls back to 01:00 GMT, at 01:00 UTC.
    # 10-24 ends at 10-25 00:00 BST = 10-24 23:00 UTC; 10-25 ends at 10-26 00:00 GMT = 10-26 00:00 UTC.
    assert rules.close_time(d("2026-10-24"), [LONDON]) == utc("2026-10-24 23:00")
    assert rules.close_time(d("2026-10-25"), [LONDON]) == utc("2026-10-26 00:00")
    start, end = rules.local_day_window(d("2026-10-25"), LONDON)
    assert (start, end) == (utc("2026-10-24 23:00"), utc("2026-10-26 00:00"))
    assert end - start == 25 * HOUR
    # 2026-03-29 (last Sunday of March) 01:00 GMT jumps to 02:00 BST: from 03-29 00:00 UTC to 03-30 00:00 BST
    # = 03-29 23:00 UTC, 23 hours.
    start, end = rules.local_day_window(d("2026-03-29"), LONDON)
    assert (start, end) == (utc("2026-03-29 00:00"), utc("2026-03-29 23:00"))


def test_los_angeles_dst_changes_of_2026():
    # 2026-11-01 (first Sunday of November) 02:00 PDT (-7) falls back to 01:00 PST (-8).
    # 10-31 ends at 11-01 00:00 PDT = 11-01 07:00 UTC; 11-01 ends at 11-02 00:00 PST = 11-02 08:00 UTC.
    assert rules.close_time(d("2026-10-31"), [LA]) == utc("2026-11-01 07:00")
    assert rules.close_time(d("2026-11-01"), [LA]) == utc("2026-11-02 08:00")
    start, end = rules.local_day_window(d("2026-11-01"), LA)
    assert end - start == 25 * HOUR
    # 2026-03-08 (second Sunday of March) 02:00 PST jumps to 03:00 PDT: from 03-08 08:00 UTC to
    # 03-09 00:00 PDT = 03-09 07:00 UTC, 23 hours.
    start, end = rules.local_day_window(d("2026-03-08"), LA)
    assert (start, end) == (utc("2026-03-08 08:00"), utc("2026-03-09 07:00"))


def test_dst_in_one_zone_can_change_which_zone_closes_last():
    # London 10-25 closes at 10-26 00:00 UTC (GMT again); Lagos (WAT, UTC+1, no DST) at 10-25 23:00 UTC.
    assert rules.close_time(d("2026-10-25"), ["Africa/Lagos", LONDON]) == utc("2026-10-26 00:00")
    # In summer London (BST) and Lagos (WAT) are both UTC+1: 06-15 23:00 UTC for either.
    assert rules.close_time(d("2026-06-15"), ["Africa/Lagos", LONDON]) == utc("2026-06-15 23:00")


# --- close_time where DST moves the clock at midnight ---


def test_havana_skips_midnight_and_the_day_before_ends_at_the_change():
    # America/Havana, 2026-03-08: the clock jumps from 00:00 CST (-5) straight to 01:00 CDT (-4), at
    # 00:00 -05:00 = 05:00 UTC. Verify that the zone database says so before relying on it.
    assert midnight_is_skipped("America/Havana", d("2026-03-08"))
    assert offset_at("America/Havana", utc("2026-03-08 04:59:59")) == -5 * HOUR
    assert offset_at("America/Havana", utc("2026-03-08 05:00")) == -4 * HOUR
    # 03-07 is over at the instant of the change: 05:00 UTC (the first wall time of 03-08 is 01:00 CDT).
    assert rules.close_time(d("2026-03-07"), ["America/Havana"]) == utc("2026-03-08 05:00")
    # 03-08 runs from 05:00 UTC to 03-09 00:00 CDT = 03-09 04:00 UTC: 23 hours.
    start, end = rules.local_day_window(d("2026-03-08"), "America/Havana")
    assert (start, end) == (utc("2026-03-08 05:00"), utc("2026-03-09 04:00"))


def test_santiago_skips_midnight_in_september():
    # America/Santiago, 2026-09-06: 00:00 -04 jumps to 01:00 -03 at 00:00 -04:00 = 04:00 UTC.
    assert midnight_is_skipped("America/Santiago", d("2026-09-06"))
    assert offset_change_between("America/Santiago", utc("2026-09-06 00:00"), utc("2026-09-06 08:00")) == utc(
        "2026-09-06 04:00"
    )
    assert rules.close_time(d("2026-09-05"), ["America/Santiago"]) == utc("2026-09-06 04:00")


def test_a_clock_that_reaches_midnight_and_falls_back_ends_the_day_at_the_next_midnight():
    # America/Santiago, 2026-04-05: at 00:00 -03 (03:00 UTC) the clock falls back to 04-04 23:00 -04, so the
    # wall clock shows 04-04 for another hour; 04-04 ends at 04-05 00:00 -04:00 = 04:00 UTC.
    assert offset_at("America/Santiago", utc("2026-04-05 02:59:59")) == -3 * HOUR
    assert offset_at("America/Santiago", utc("2026-04-05 03:00")) == -4 * HOUR
    assert utc("2026-04-05 03:30").astimezone(ZoneInfo("America/Santiago")).date() == d("2026-04-04")
    assert rules.close_time(d("2026-04-04"), ["America/Santiago"]) == utc("2026-04-05 04:00")
    # So 04-04 lasted from 04-04 00:00 -03:00 = 03:00 UTC to 04:00 UTC the next day: 25 hours.
    start, end = rules.local_day_window(d("2026-04-04"), "America/Santiago")
    assert (start, end) == (utc("2026-04-04 03:00"), utc("2026-04-05 04:00"))
    # Asia/Beirut, 2026-10-25 does the same: 00:00 +03 (10-24 21:00 UTC) falls back to 23:00 +02, and
    # 10-24 ends at 10-25 00:00 +02:00 = 10-24 22:00 UTC.
    assert offset_at("Asia/Beirut", utc("2026-10-24 20:59:59")) == 3 * HOUR
    assert offset_at("Asia/Beirut", utc("2026-10-24 21:00")) == 2 * HOUR
    assert rules.close_time(d("2026-10-24"), ["Asia/Beirut"]) == utc("2026-10-24 22:00")


def test_a_repeated_midnight_closes_the_day_before_at_its_first_pass():
    # America/Havana, 2026-11-01: at 01:00 CDT (-4) = 05:00 UTC the clock falls back to 00:00 CST (-5), so
    # 11-01 00:00 shows twice: at 04:00 UTC (CDT) and at 05:00 UTC (CST). Between them the clock already
    # reads 11-01: 10-31 ended at the first pass.
    assert midnight_is_repeated("America/Havana", d("2026-11-01"))
    assert offset_at("America/Havana", utc("2026-11-01 04:59:59")) == -4 * HOUR
    assert offset_at("America/Havana", utc("2026-11-01 05:00")) == -5 * HOUR
    assert rules.close_time(d("2026-10-31"), ["America/Havana"]) == utc("2026-11-01 04:00")
    # Atlantic/Azores, 2026-10-25: 01:00 +00 falls back to 00:00 -01 at 01:00 UTC; passes at 00:00 and 01:00
    # UTC; 10-24 ended at the first, 00:00 UTC.
    assert midnight_is_repeated("Atlantic/Azores", d("2026-10-25"))
    assert rules.close_time(d("2026-10-24"), ["Atlantic/Azores"]) == utc("2026-10-25 00:00")


MIDNIGHT_DST_CANDIDATES = [
    "America/Havana",
    "America/Asuncion",
    "America/Santiago",
    "Asia/Beirut",
    "Atlantic/Azores",
    "Africa/Cairo",
    "America/Nuuk",
]


def test_every_skipped_or_repeated_midnight_of_2026_in_candidate_zones():
    """Search the zone database (not a guess) for 2026 midnights that DST skips or repeats, and check each."""
    skipped, repeated = [], []
    for name in MIDNIGHT_DST_CANDIDATES:
        for k in range(365):
            day = d("2026-01-01") + timedelta(days=k)
            if midnight_is_skipped(name, day):
                skipped.append((name, day))
            elif midnight_is_repeated(name, day):
                repeated.append((name, day))
    assert skipped and repeated, (skipped, repeated)
    for name, day in skipped:
        # Skipped: the day before ends at the instant of the change, found by bisecting the offsets between
        # two instants safely either side of local midnight.
        noon_before = datetime.combine(day - DAY, time(12), tzinfo=ZoneInfo(name)).astimezone(UTC)
        noon_after = datetime.combine(day, time(12), tzinfo=ZoneInfo(name)).astimezone(UTC)
        change = offset_change_between(name, noon_before, noon_after)
        assert rules.close_time(day - DAY, [name]) == change, (name, day)
    for name, day in repeated:
        # Repeated: the first of the two passes of 00:00 (from then on the clock reads `day`).
        midnight = datetime.combine(day, time.min, tzinfo=ZoneInfo(name))
        passes = [midnight.replace(fold=f) for f in (0, 1)]
        first, later = sorted(p.astimezone(UTC) for p in passes)
        assert first < later
        assert rules.close_time(day - DAY, [name]) == first, (name, day)


# --- a property over every IANA zone ---

# Dates of 2026 when DST changes somewhere (US, EU, Havana, Beirut, Cairo, Sydney, Santiago, New Zealand,
# ...): each is checked as the target day, and so is the day before it.
DST_DAYS_2026 = [
    "2026-03-08",
    "2026-03-29",
    "2026-04-05",
    "2026-04-24",
    "2026-09-06",
    "2026-09-27",
    "2026-10-04",
    "2026-10-25",
    "2026-10-30",
    "2026-11-01",
]
PROPERTY_TARGETS = sorted({d(day) - k * DAY for day in DST_DAYS_2026 for k in (0, 1)})


def test_close_time_property_over_every_zone_around_dst_changes():
    checked = 0
    for name in sorted(zoneinfo.available_timezones()):
        tz = ZoneInfo(name)
        for target in PROPERTY_TARGETS:
            c = rules.close_time(target, [name])
            local = c.astimezone(tz)
            # At C the zone's clocks show T+1 ...
            assert local.date() == target + DAY, (name, target, local)
            # ... and never show T again afterwards (a fall-back of up to 2 h, Antarctica/Troll, is covered).
            for k in range(1, 7):
                assert (c + k * timedelta(minutes=30)).astimezone(tz).date() > target, (name, target, k)
            # C is the first instant of T+1: just before it the clocks still show T (a repeated midnight
            # closes T at its first pass).
            just_before = (c - MICROSECOND).astimezone(tz)
            assert just_before.date() == target, (name, target, just_before)
            # The local day window is [C(T-1), C(T)), between 22 h (Troll's 2-hour DST) and 26 h long.
            start, end = rules.local_day_window(target, name)
            assert end == c and start == rules.close_time(target - DAY, [name])
            assert 22 * HOUR <= end - start <= 26 * HOUR, (name, target, end - start)
            # R(D) is never before C(D) nor before D 00:00 UTC, and is one of the two.
            for delay in (0, 1):
                partition = target + delay * DAY
                r = rules.runnable_at(partition, delay, [name])
                start_of_partition = datetime.combine(partition, time.min, tzinfo=UTC)
                assert r >= c and r >= start_of_partition
                assert r in (c, start_of_partition)
            checked += 1
    assert checked > 5_000


# --- runnable_at ---


@pytest.mark.parametrize(
    ("partition", "delay", "zones", "expected"),
    [
        # Delay 0, LA in June: T = 06-15, C = 06-16 07:00 UTC, later than 06-15 00:00 UTC.
        ("2026-06-15", 0, [LA], "2026-06-16 07:00"),
        # Delay 0, Sydney: C = 06-15 14:00 UTC, later than 06-15 00:00 UTC.
        ("2026-06-15", 0, [SYDNEY], "2026-06-15 14:00"),
        # Delay 1, LA: D = 06-16, T = 06-15, C = 06-16 07:00 UTC, later than 06-16 00:00 UTC.
        ("2026-06-16", 1, [LA], "2026-06-16 07:00"),
        # Delay 1, Sydney: C = 06-15 14:00 UTC but D = 06-16 has not come until 06-16 00:00 UTC.
        ("2026-06-16", 1, [SYDNEY], "2026-06-16 00:00"),
        # Delay 1, London: C(T = 06-15) = 06-15 23:00 UTC, D = 06-16 starts later, at 00:00 UTC.
        ("2026-06-16", 1, [LONDON], "2026-06-16 00:00"),
        # Delay 3, LA: T = 06-15 closed at 06-16 07:00 UTC, long before D = 06-18 00:00 UTC.
        ("2026-06-18", 3, [LA], "2026-06-18 00:00"),
        # Delay 1, unknown zones: C(T = 06-15) = 06-16 12:00 UTC (UTC-12), after 06-16 00:00 UTC.
        ("2026-06-16", 1, None, "2026-06-16 12:00"),
        # Delay 0, Honolulu + Sydney: the later close, Honolulu's 06-16 10:00 UTC.
        ("2026-06-15", 0, [SYDNEY, HONOLULU], "2026-06-16 10:00"),
    ],
)
def test_runnable_at_is_the_later_of_the_close_time_and_the_partition_day(partition, delay, zones, expected):
    assert rules.runnable_at(d(partition), delay, zones) == utc(expected)


# --- latest_due ---

NEXT_RUN = utc("2026-06-10 06:00")


@pytest.mark.parametrize(
    ("frequency", "now", "expected"),
    [
        (DAY, "2026-06-10 05:59:59", None),  # next run time still ahead
        (DAY, "2026-06-10 06:00", "2026-06-10 06:00"),  # exactly at it
        (DAY, "2026-06-10 23:00", "2026-06-10 06:00"),
        (DAY, "2026-06-13 05:00", "2026-06-12 06:00"),  # 2 d 23 h later: 2 whole days
        (DAY, "2026-06-13 06:00", "2026-06-13 06:00"),  # exactly 3 days later
        (2 * DAY, "2026-06-13 05:00", "2026-06-12 06:00"),  # 2 d 23 h // 2 d = 1
        (2 * DAY, "2026-06-14 06:00", "2026-06-14 06:00"),
        (6 * HOUR, "2026-06-10 11:59", "2026-06-10 06:00"),
        (6 * HOUR, "2026-06-10 17:59", "2026-06-10 12:00"),
        (6 * HOUR, "2026-06-11 00:00", "2026-06-11 00:00"),
        (6 * HOUR, "2026-06-12 05:00", "2026-06-12 00:00"),
    ],
)
def test_latest_due(frequency, now, expected):
    assert rules.latest_due(NEXT_RUN, frequency, utc(now)) == (utc(expected) if expected else None)


# --- the catch-up horizon ---

RUNNABLE = utc("2026-06-16 07:00")


@pytest.mark.parametrize(
    ("frequency", "catchup", "after", "expected"),
    [
        (DAY, 7, timedelta(0), True),
        (DAY, 7, 8 * DAY - MICROSECOND, True),  # 1 day + 7 days, strictly less
        (DAY, 7, 8 * DAY, False),
        (DAY, 0, DAY - MICROSECOND, True),  # catch-up 0 still leaves the normal due time
        (DAY, 0, DAY, False),
        (2 * DAY, 0, 2 * DAY - MICROSECOND, True),
        (2 * DAY, 0, 2 * DAY, False),
        (6 * HOUR, 0, 6 * HOUR - MICROSECOND, True),
        (6 * HOUR, 0, 6 * HOUR, False),
        (6 * HOUR, 7, 7 * DAY + 6 * HOUR - MICROSECOND, True),
        (6 * HOUR, 7, 7 * DAY + 6 * HOUR, False),
        (DAY, 90, 91 * DAY - MICROSECOND, True),
        (DAY, 90, 91 * DAY, False),
    ],
)
def test_within_horizon_is_measured_from_runnable_at_and_strict(frequency, catchup, after, expected):
    assert rules.within_horizon(RUNNABLE, RUNNABLE + after, frequency, catchup) is expected


def test_horizon_end_is_the_first_instant_outside_the_horizon():
    # 06-16 07:00 + 1 day + 7 days = 06-24 07:00.
    end = rules.horizon_end(RUNNABLE, DAY, 7)
    assert end == utc("2026-06-24 07:00")
    assert not rules.within_horizon(RUNNABLE, end, DAY, 7)
    assert rules.within_horizon(RUNNABLE, end - MICROSECOND, DAY, 7)
    # 6 hours + 0 days.
    assert rules.horizon_end(RUNNABLE, 6 * HOUR, 0) == utc("2026-06-16 13:00")


# --- retry backoff ---


@pytest.mark.parametrize(
    ("failures", "minutes"),
    [
        (0, 10),
        (1, 10),
        (2, 20),
        (3, 40),
        (4, 80),
        (5, 160),
        (6, 320),  # 5 h 20 min
        (7, 360),  # 640 min capped at 6 h
        (8, 360),
        (20, 360),
        (38, 360),
    ],
)
def test_retry_delay_doubles_from_ten_minutes_up_to_six_hours(failures, minutes):
    assert rules.retry_delay(failures) == timedelta(minutes=minutes)


@pytest.mark.parametrize("failures", [39, 40, 100, 1_000])
def test_retry_delay_stays_at_six_hours_after_many_failures(failures):
    # A partition retried every 6 h inside a horizon of up to 91 days fails hundreds of times in a row.
    assert rules.retry_delay(failures) == timedelta(hours=6)


# --- scope_start ---


@pytest.mark.parametrize(
    ("first_run", "partitions_start", "expected"),
    [
        (utc("2026-06-10 06:00"), "2026-01-01", "2026-06-09"),
        (utc("2026-06-10 00:00"), "2026-01-01", "2026-06-09"),
        (utc("2026-06-10 06:00"), "2026-06-09", "2026-06-09"),
        (utc("2026-06-10 06:00"), "2026-06-20", "2026-06-20"),  # never before partitions_start
        # A first run time in Sydney time: 06-10 01:00 +10:00 = 06-09 15:00 UTC, so the day before is 06-08.
        (datetime(2026, 6, 10, 1, 0, tzinfo=ZoneInfo(SYDNEY)), "2026-01-01", "2026-06-08"),
    ],
)
def test_scope_start_is_the_day_before_the_first_due_time(first_run, partitions_start, expected):
    assert rules.scope_start(first_run, d(partitions_start)) == d(expected)
