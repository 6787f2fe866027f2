"""The words of the dashboard's warning for a next run time in the past (`catch_up_words`), at a fixed now."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.registry.dashboard import catch_up_words
from pipeline.registry.model import Frequency

NOW = datetime(2026, 7, 20, 10, 0, tzinfo=UTC)
DAILY = Frequency(1, "days")


def words(next_run: datetime, frequency: Frequency = DAILY, **options) -> dict:
    settings = {"fetch_delay_days": 0, "catchup_days": 7, "active": True, "existing": False, **options}
    return catch_up_words(next_run, frequency, now=NOW, **settings)


def test_ten_days_back_catches_up_the_horizon_and_names_the_skipped_days():
    # Unknown zones: a day has ended at 12:00 UTC the day after. Due 07-20 06:00 runs 07-11 .. 07-18 (R(D)
    # within 1 + 7 days); the scope's 07-09 and 07-10 are older; 07-19 waits for the next due time.
    found = words(datetime(2026, 7, 10, 6, 0, tzinfo=UTC))
    assert (found["runDays"], found["skippedDays"], found["nextRunTimeAfter"]) == (
        8,
        2,
        "2026-07-21T06:00:00Z",
    )
    assert found["message"] == (
        "This next run time, 2026-07-10 06:00 UTC, is 10 days in the past. The scheduler does not repeat "
        "every missed run. At its next check after saving it catches up the missed days: about 8 days of "
        "appointments (2026-07-11 to 2026-07-18), going no further back than its catch-up horizon of 7 days "
        "plus one frequency (1 day). The 2 older days (2026-07-09 to 2026-07-10) are skipped: no review "
        "requests are sent for them unless a data engineer runs them on purpose. Then the next run time "
        "becomes 2026-07-21 06:00 UTC."
    )


def test_the_days_named_are_the_appointment_days_after_the_fetch_delay_and_an_edit_keeps_closed_days():
    found = words(datetime(2026, 7, 18, 6, 0, tzinfo=UTC), fetch_delay_days=2, existing=True)
    assert "about 4 days of appointments (2026-07-15 to 2026-07-18)" in found["message"]
    assert "skipped" not in found["message"]
    assert "Days this location already ran are not run again." in found["message"]


def test_an_inactive_location_runs_nothing_until_it_is_made_active():
    found = words(datetime(2026, 7, 1, 6, 0, tzinfo=UTC), catchup_days=3, active=False)
    assert found["message"] == (
        "This next run time, 2026-07-01 06:00 UTC, is 19 days in the past. The location is inactive, so "
        "nothing runs until it is made active; then the scheduler catches up the missed days, going no "
        "further back than its catch-up horizon of 3 days plus one frequency (1 day)."
    )


def test_a_time_ahead_has_no_warning():
    assert words(datetime(2026, 7, 21, 6, 0, tzinfo=UTC)) == {"past": False, "message": None}
