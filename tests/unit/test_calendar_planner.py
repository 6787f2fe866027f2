"""What the scheduler decides for one mapping on one tick (`pipeline/calendar/planner.py`, SPEC §8).

Most cases use a clinic in Los Angeles in January (PST, UTC-8) with a fetch delay of 0, so for every partition
date D: T = D, C(D) = (D+1) 00:00 PST = (D+1) 08:00 UTC, and R(D) = max(C(D), D 00:00 UTC) = (D+1) 08:00 UTC.
A Sydney clinic in January (AEDT, UTC+11) has C(D) = (D+1) 00:00 +11:00 = D 13:00 UTC = R(D).
Expected values are worked out by hand from those two lines, never by calling the planner or the rules.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.calendar.planner import History, Request, Schedule, candidate_dates, catch_up, plan

LA = "America/Los_Angeles"
SYDNEY = "Australia/Sydney"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
EARLY = date(2020, 1, 1)  # a partitions_start that never gets in the way


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


def days(first: str, last: str) -> list[date]:
    """Every date from `first` to `last`, both included."""
    start, end = d(first), d(last)
    return [start + k * DAY for k in range((end - start).days + 1)]


def schedule(
    *,
    next_run: str,
    first_run: str = "2025-12-01 06:00",
    frequency: timedelta = DAY,
    hourly: bool = False,
    delay: int = 0,
    catchup: int = 7,
    zones: tuple[str | None, ...] | None = (LA,),
) -> Schedule:
    return Schedule(
        business_number="1000001",
        group_id=42,
        next_run_time=utc(next_run),
        first_run_time=utc(first_run),
        frequency=frequency,
        hourly=hourly,
        fetch_delay_days=delay,
        catchup_days=catchup,
        time_zones=zones,
    )


def closed_through(last: str, closed_at: str, back: int = 60) -> dict[date, History]:
    """A history where the `back` partitions up to and including `last` have closed at `closed_at`."""
    end = d(last)
    return {end - k * DAY: History(runs=1, closed_at=utc(closed_at)) for k in range(back)}


def tick(
    sched: Schedule,
    now: str,
    history: dict[date, History] | None = None,
    in_flight: frozenset[date] = frozenset(),
    requested: frozenset[date] = frozenset(),
    partitions_start: date = EARLY,
):
    return plan(sched, utc(now), history or {}, set(in_flight), set(requested), partitions_start)


def due(*dates: date, partial: bool = False) -> list[Request]:
    return [Request(day, "due", partial) for day in dates]


# --- which partition a daily due time requests, by zone ---


def test_daily_los_angeles_due_at_06_utc_requests_the_partition_of_two_days_ago():
    sched = schedule(next_run="2026-01-16 06:00")
    history = closed_through("2026-01-13", closed_at="2026-01-15 06:10")
    result = tick(sched, "2026-01-16 06:00", history)
    # 01-14: R = 01-15 08:00 <= 01-16 06:00, requested. 01-15 (yesterday): R = 01-16 08:00, LA's day is not
    # over at 06:00 UTC (22:00 PST), not runnable yet. 01-16: R = 01-17 08:00.
    assert result.due_at == utc("2026-01-16 06:00")
    assert result.requests == due(d("2026-01-14"))
    assert result.advance_to is None  # the due request is not out yet
    assert result.failing == [] and result.before_partitions_start == [] and result.stalled is False


def test_daily_sydney_due_at_06_utc_requests_yesterday():
    sched = schedule(next_run="2026-01-16 06:00", zones=(SYDNEY,))
    history = closed_through("2026-01-14", closed_at="2026-01-15 06:10")
    result = tick(sched, "2026-01-16 06:00", history)
    # 01-15: R = 01-15 13:00 UTC <= 01-16 06:00, requested. 01-16: R = 01-16 13:00, not yet.
    assert result.requests == due(d("2026-01-15"))


def test_a_business_in_each_zone_waits_for_the_later_close():
    # Sydney + LA: R(01-15) = max(01-15 13:00, 01-16 08:00) = 01-16 08:00: not runnable at 01-16 06:00.
    sched = schedule(next_run="2026-01-16 06:00", zones=(SYDNEY, LA))
    history = closed_through("2026-01-14", closed_at="2026-01-15 06:10")
    result = tick(sched, "2026-01-16 06:00", history)
    assert result.requests == []
    assert result.advance_to == utc("2026-01-17 06:00")


def test_unknown_zones_wait_until_utc_minus_12_has_closed():
    # No zones fetched yet: C(D) = (D+1) 00:00 UTC-12 = (D+1) 12:00 UTC. At 01-16 12:00 the partition 01-15
    # becomes runnable (R == due time counts), 01-16 is not.
    sched = schedule(next_run="2026-01-16 12:00", zones=None)
    history = closed_through("2026-01-14", closed_at="2026-01-15 12:10")
    assert tick(sched, "2026-01-16 12:00", history).requests == due(d("2026-01-15"))
    sched = schedule(next_run="2026-01-16 11:59", zones=None)
    assert tick(sched, "2026-01-16 11:59", history).requests == []


def test_fetch_delay_asks_on_day_d_for_target_day_d_minus_delay():
    # Delay 3, LA: D = 01-16 has T = 01-13, closed at 01-14 08:00 UTC, but D itself begins at 01-16 00:00 UTC,
    # so R(01-16) = 01-16 00:00 <= 01-16 06:00; R(01-17) = 01-17 00:00, not yet.
    sched = schedule(next_run="2026-01-16 06:00", delay=3)
    history = closed_through("2026-01-15", closed_at="2026-01-15 06:10")
    assert tick(sched, "2026-01-16 06:00", history).requests == due(d("2026-01-16"))


# --- frequencies of days: nothing skipped ---


def test_two_day_frequency_requests_both_unclosed_partitions_oldest_first():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    # 01-13: R = 01-14 08:00, 01-14: R = 01-15 08:00, both <= 01-16 06:00; 01-15: R = 01-16 08:00, not yet.
    result = tick(sched, "2026-01-16 06:00", history)
    assert result.requests == due(d("2026-01-13"), d("2026-01-14"))
    assert result.advance_to is None


def _simulate(sched: Schedule, history: dict[date, History], due_times: int) -> list[list[date]]:
    """Run the sensor's loop: at each due time request; tick again a minute later while the runs are in
    flight (nothing new, no advance); let the runs close 30 min later, tick again with those requests
    recorded, and move nextRunTime to `advance_to`."""
    batches = []
    for _ in range(due_times):
        at = sched.next_run_time
        first = plan(sched, at, history, set(), set(), EARLY)
        assert first.due_at == at and first.advance_to is None
        batch = [r.partition_date for r in first.requests]
        assert all(r.reason == "due" and not r.partial for r in first.requests)
        batches.append(batch)
        running = plan(sched, at + MINUTE, history, set(batch), set(batch), EARLY)
        assert running.requests == [] and (running.advance_to is None) == bool(batch)
        for day in batch:
            history[day] = History(runs=1, closed_at=at + 30 * MINUTE)
        second = plan(sched, at + 31 * MINUTE, history, set(), set(batch), EARLY)
        assert second.requests == [] and second.advance_to == at + sched.frequency
        sched = dataclasses.replace(sched, next_run_time=second.advance_to)
    return batches


def test_two_day_frequency_skips_nothing_across_due_times():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    # Due 01-16 06:00: 01-13, 01-14. Due 01-18 06:00: 01-15 (R 01-16 08:00), 01-16 (R 01-17 08:00); 01-17 has
    # R = 01-18 08:00. And so on, two per due time.
    assert _simulate(sched, history, 4) == [
        days("2026-01-13", "2026-01-14"),
        days("2026-01-15", "2026-01-16"),
        days("2026-01-17", "2026-01-18"),
        days("2026-01-19", "2026-01-20"),
    ]


def test_daily_frequency_requests_one_partition_per_due_time_with_none_skipped():
    sched = schedule(next_run="2026-01-16 06:00")
    history = closed_through("2026-01-13", closed_at="2026-01-15 06:10")
    assert _simulate(sched, history, 5) == [[day] for day in days("2026-01-14", "2026-01-18")]


# --- frequencies of hours: today's partition runs partial ---


def test_six_hour_frequency_runs_today_partial_and_yesterday_once_it_has_closed():
    history = closed_through("2026-01-14", closed_at="2026-01-15 12:10")
    # 00:00 and 06:00: 01-15 has R = 01-16 08:00 (LA still has 01-15 evening appointments) and is not today in
    # UTC, so only today's 01-16 runs, partial (its R is 01-17 08:00).
    for now in ("2026-01-16 00:00", "2026-01-16 06:00"):
        sched = schedule(next_run=now, frequency=6 * HOUR, hourly=True)
        result = tick(sched, now, history)
        assert result.due_at == utc(now)
        assert result.requests == due(d("2026-01-16"), partial=True)
        assert result.advance_to is None
    # 12:00: 01-15 is runnable since 08:00 and runs normally; 01-16 runs partial again.
    sched = schedule(next_run="2026-01-16 12:00", frequency=6 * HOUR, hourly=True)
    result = tick(sched, "2026-01-16 12:00", history)
    assert result.requests == [Request(d("2026-01-15"), "due", False), Request(d("2026-01-16"), "due", True)]
    # Next day at 12:00, with 01-15 closed and 01-16 only partially run: 01-16 (R = 01-17 08:00) now runs
    # normally, and today's 01-17 partial.
    history = {**history, d("2026-01-15"): History(runs=1, closed_at=utc("2026-01-16 12:20"))}
    history[d("2026-01-16")] = History(runs=4)
    sched = schedule(next_run="2026-01-17 12:00", frequency=6 * HOUR, hourly=True)
    result = tick(sched, "2026-01-17 12:00", history)
    assert result.requests == [Request(d("2026-01-16"), "due", False), Request(d("2026-01-17"), "due", True)]


def test_six_hour_frequency_runs_todays_partition_normally_once_it_has_closed():
    # Sydney: R(01-16) = 01-16 13:00 UTC. At 12:00 UTC it is a partial run, at 18:00 UTC a normal one.
    history = closed_through("2026-01-15", closed_at="2026-01-16 00:10")
    sched = schedule(next_run="2026-01-16 12:00", frequency=6 * HOUR, hourly=True, zones=(SYDNEY,))
    assert tick(sched, "2026-01-16 12:00", history).requests == due(d("2026-01-16"), partial=True)
    sched = schedule(next_run="2026-01-16 18:00", frequency=6 * HOUR, hourly=True, zones=(SYDNEY,))
    assert tick(sched, "2026-01-16 18:00", history).requests == due(d("2026-01-16"), partial=False)


def test_six_hour_frequency_advances_once_the_partial_run_is_requested():
    sched = schedule(next_run="2026-01-16 06:00", frequency=6 * HOUR, hourly=True)
    history = closed_through("2026-01-14", closed_at="2026-01-15 12:10")
    result = tick(sched, "2026-01-16 06:01", history, requested={d("2026-01-16")})
    assert result.requests == []
    assert result.advance_to == utc("2026-01-16 12:00")


def test_daily_frequency_never_runs_a_partial():
    sched = schedule(next_run="2026-01-16 06:00", hourly=False, zones=(SYDNEY,))
    history = closed_through("2026-01-15", closed_at="2026-01-16 00:10")
    # Today's 01-16 (R 01-16 13:00) is not runnable, and a days frequency runs no partial.
    result = tick(sched, "2026-01-16 06:00", history)
    assert result.requests == []
    assert result.advance_to == utc("2026-01-17 06:00")


# --- closed, in flight, already requested; when nextRunTime advances ---


def test_closed_partitions_are_never_requested():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-14", closed_at="2026-01-15 09:00")
    # Everything with R <= 01-16 06:00 (up to 01-14) is closed: nothing to do, the due time is handled.
    result = tick(sched, "2026-01-16 06:00", history)
    assert result.requests == []
    assert result.advance_to == utc("2026-01-18 06:00")


def test_a_partition_closed_out_of_order_is_not_requested_again():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    history[d("2026-01-14")] = History(runs=1, closed_at=utc("2026-01-15 09:00"))  # a manual run
    assert tick(sched, "2026-01-16 06:00", history).requests == due(d("2026-01-13"))


def test_partitions_in_flight_are_not_requested():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    result = tick(sched, "2026-01-16 06:00", history, in_flight={d("2026-01-13")})
    assert result.requests == due(d("2026-01-14"))
    assert result.advance_to is None
    # Both in flight (a UI backfill, say): nothing to request, and the due time is handled.
    result = tick(sched, "2026-01-16 06:00", history, in_flight={d("2026-01-13"), d("2026-01-14")})
    assert result.requests == []
    assert result.advance_to == utc("2026-01-18 06:00")


def test_partitions_already_requested_for_the_due_time_are_not_requested_again():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    # One of the two requested (a tick cut short): the other is requested, the due time is not handled yet.
    result = tick(sched, "2026-01-16 06:01", history, requested={d("2026-01-13")})
    assert result.requests == due(d("2026-01-14"))
    assert result.advance_to is None
    # Both requested and both still running: nothing new, and the due time waits for its runs (they may
    # have learnt the clinics' zones, so it is planned once more when they are over).
    requested = {d("2026-01-13"), d("2026-01-14")}
    result = tick(sched, "2026-01-16 06:01", history, requested=requested, in_flight=requested)
    assert result.requests == [] and result.advance_to is None
    # Both requested and over (failed, say: retries are not the due time's business): nextRunTime moves on.
    result = tick(sched, "2026-01-16 06:01", history, requested=requested)
    assert result.due_at == utc("2026-01-16 06:00")
    assert result.requests == []
    assert result.advance_to == utc("2026-01-18 06:00")


def test_no_due_time_yet_means_no_due_requests_and_no_advance():
    sched = schedule(next_run="2026-01-16 06:00")
    result = tick(sched, "2026-01-16 05:59", {})
    assert result.due_at is None
    assert result.requests == []
    assert result.advance_to is None


def test_a_late_tick_advances_from_the_latest_due_time_not_the_missed_ones():
    # nextRunTime 01-10 06:00 and the daemon back at 01-16 07:00: the latest due time is 01-16 06:00, and once
    # it is handled nextRunTime becomes 01-17 06:00 (not 01-11 06:00).
    sched = schedule(next_run="2026-01-10 06:00")
    history = closed_through("2026-01-14", closed_at="2026-01-15 09:00")
    result = tick(sched, "2026-01-16 07:00", history)
    assert result.due_at == utc("2026-01-16 06:00")
    assert result.requests == []
    assert result.advance_to == utc("2026-01-17 06:00")


# --- the catch-up horizon ---


def test_a_mapping_paused_for_20_days_catches_up_only_inside_the_horizon():
    # Paused with nextRunTime 01-11 06:00 and back at 01-31 06:00 (the latest due time): partitions up to
    # 01-09 had closed. A partition D is launched when R(D) <= 01-31 06:00 and 01-31 06:00 - R(D) < 1 + 7
    # days, i.e. (D+1) 08:00 > 01-23 06:00: D >= 01-22 (R = 01-23 08:00, 7 d 22 h before the due time); 01-21
    # has R = 01-22 08:00, 8 d 22 h before, too old. Newest: 01-29 (R = 01-30 08:00); 01-30 has R 01-31 08:00.
    sched = schedule(next_run="2026-01-11 06:00")
    history = closed_through("2026-01-09", closed_at="2026-01-10 09:00")
    result = tick(sched, "2026-01-31 06:00", history)
    assert result.due_at == utc("2026-01-31 06:00")
    assert result.requests == due(*days("2026-01-22", "2026-01-29"))


def test_catchup_zero_still_runs_the_normal_window_of_the_due_time():
    # Catch-up 0, daily: 01-31 06:00 - R(D) < 1 day, R(D) <= 01-31 06:00: only 01-29 (R = 01-30 08:00).
    sched = schedule(next_run="2026-01-11 06:00", catchup=0)
    history = closed_through("2026-01-09", closed_at="2026-01-10 09:00")
    assert tick(sched, "2026-01-31 06:00", history).requests == due(d("2026-01-29"))
    # Catch-up 0, every 2 days (01-11 + 10 x 2 days = 01-31 06:00 is a due time): R(D) in (01-29 06:00,
    # 01-31 06:00]: 01-28 (R 01-29 08:00) and 01-29 (R 01-30 08:00); 01-27 (R 01-28 08:00) is too old.
    sched = schedule(next_run="2026-01-11 06:00", frequency=2 * DAY, catchup=0)
    assert tick(sched, "2026-01-31 06:00", history).requests == due(d("2026-01-28"), d("2026-01-29"))


def test_catchup_zero_with_a_fetch_delay_longer_than_the_horizon_still_runs_each_partition_once():
    # Delay 3, catch-up 0, Sydney: R(D) = max(C(T = D-3), D 00:00) = D 00:00 UTC. Due 01-16 06:00: R(01-16) =
    # 01-16 00:00, 6 h before, inside 1 day; R(01-15) = 01-15 00:00, 1 d 6 h before: outside.
    sched = schedule(next_run="2026-01-16 06:00", delay=3, catchup=0, zones=(SYDNEY,))
    assert tick(sched, "2026-01-16 06:00", {}).requests == due(d("2026-01-16"))


def test_horizon_boundaries_are_exact():
    # Due 01-31 08:00. 01-22: R = 01-23 08:00, exactly 8 days before: outside (strict <). 01-23: 7 days,
    # inside. 01-30: R = 01-31 08:00 == the due time: runnable. 01-31: R = 02-01 08:00: not yet.
    sched = schedule(next_run="2026-01-31 08:00", first_run="2025-12-01 08:00")
    result = tick(sched, "2026-01-31 08:00", {})
    assert result.requests == due(*days("2026-01-23", "2026-01-30"))


def test_a_paused_mapping_keeps_its_catchup_days_property():
    # Catch-up 30 days, paused 20 days: all 20 open partitions are inside 1 + 30 days and run, oldest first.
    # Due 01-31 06:00, history closed through 01-09: 01-10 (R 01-11 08:00) ... 01-29 (R 01-30 08:00).
    sched = schedule(next_run="2026-01-11 06:00", catchup=30)
    history = closed_through("2026-01-09", closed_at="2026-01-10 09:00")
    assert tick(sched, "2026-01-31 06:00", history).requests == due(*days("2026-01-10", "2026-01-29"))


@pytest.mark.parametrize(
    ("frequency_days", "catchup", "oldest"),
    [
        # Due 03-01 06:00; R(D) = (D+1) 08:00 UTC (LA is on PST until 03-08). Wanted: R(D) <= 03-01 06:00, so
        # D <= 02-27, and 03-01 06:00 - R(D) < frequency + catch-up, so the oldest is 02-27 minus
        # (frequency + catch-up - 1) days, e.g. daily + 7: R > 02-21 06:00, D >= 02-20 (R = 02-21 08:00).
        (1, 0, "2026-02-27"),
        (1, 7, "2026-02-20"),
        (2, 0, "2026-02-26"),
        (2, 7, "2026-02-19"),
        (3, 0, "2026-02-25"),
        (3, 7, "2026-02-18"),
        (7, 0, "2026-02-21"),
        (7, 7, "2026-02-14"),
    ],
)
def test_a_tick_after_a_stopped_daemon_runs_what_the_latest_due_time_runs(frequency_days, catchup, oldest):
    """rules: 'The latest due time covers the ones a stopped daemon missed: it runs the same partitions.'
    SPEC §8: a stopped machine catches up on its return, within the horizon; nothing is skipped. The next due
    time cannot make up for a partition lost here: it is already outside that due time's horizon."""
    frequency = frequency_days * DAY
    sched = schedule(next_run="2026-03-01 06:00", frequency=frequency, catchup=catchup)
    expected = due(*days(oldest, "2026-02-27"))
    assert len(expected) == frequency_days + catchup
    # On time, at the due time itself.
    on_time = tick(sched, "2026-03-01 06:00", {})
    assert on_time.requests == expected
    # The daemon was stopped from before the due time and returns a minute before the next one: the latest
    # due time is still 03-01 06:00 and it runs the same partitions.
    late = plan(sched, utc("2026-03-01 06:00") + frequency - MINUTE, {}, set(), set(), EARLY)
    assert late.due_at == utc("2026-03-01 06:00")
    assert late.requests == expected


# --- retries ---


def _failing(failures: int, minutes_ago: float, now: str = "2026-01-16 10:00") -> History:
    return History(runs=failures, failures_in_a_row=failures, last_failed_at=utc(now) - minutes_ago * MINUTE)


def _retry_tick(history_for_0114: History, **kwargs):
    # Between due times (nextRunTime 01-17 06:00, now 01-16 10:00): only retries can be requested.
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-13", closed_at="2026-01-14 09:00")
    history[d("2026-01-14")] = history_for_0114
    return tick(sched, "2026-01-16 10:00", history, **kwargs)


@pytest.mark.parametrize(
    ("failures", "minutes_ago", "retried"),
    [
        (1, 9, False),  # 10 min not yet passed
        (1, 10, True),  # exactly the backoff
        (1, 11, True),
        (2, 11, False),  # 20 min after two failures
        (2, 19, False),
        (2, 21, True),
        (3, 39, False),  # 40 min after three
        (3, 41, True),
        (7, 5 * 60 + 59, False),  # capped at 6 h
        (7, 6 * 60 + 1, True),
    ],
)
def test_a_failed_partition_is_retried_after_its_backoff(failures, minutes_ago, retried):
    result = _retry_tick(_failing(failures, minutes_ago))
    assert result.due_at is None
    assert result.requests == ([Request(d("2026-01-14"), "retry", False)] if retried else [])
    assert result.advance_to is None


def test_a_partition_failing_for_weeks_is_still_retried_every_six_hours():
    # Catch-up 30: a partition retried every 6 h for 10 days has failed ~45 times in a row; it is still inside
    # the horizon (R(01-14) = 01-15 08:00, 1 + 30 days) and its backoff is 6 h.
    sched = schedule(next_run="2026-01-26 06:00", first_run="2026-01-01 06:00", catchup=30)
    history = closed_through("2026-01-23", closed_at="2026-01-25 09:00")
    history[d("2026-01-14")] = _failing(45, 7 * 60, now="2026-01-25 10:00")
    result = tick(sched, "2026-01-25 10:00", history)
    assert result.requests == [Request(d("2026-01-14"), "retry", False)]


def test_a_failed_partition_is_not_retried_while_in_flight():
    result = _retry_tick(_failing(1, 60), in_flight={d("2026-01-14")})
    assert result.requests == []


def test_a_failed_partition_is_retried_even_if_requested_for_the_due_time():
    # Requested at 06:00 for the due time and failed at 09:00: the 10 min backoff has passed at 10:00.
    sched = schedule(next_run="2026-01-16 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-13", closed_at="2026-01-14 09:00")
    history[d("2026-01-14")] = _failing(1, 60)
    result = tick(sched, "2026-01-16 10:00", history, requested={d("2026-01-14")})
    assert result.requests == [Request(d("2026-01-14"), "retry", False)]
    assert result.advance_to == utc("2026-01-17 06:00")  # no 'due' request left for this due time


def test_a_failed_partition_outside_the_horizon_is_never_retried():
    # At 01-16 10:00, with catch-up 7 (horizon 8 days from R): 01-07 has R = 01-08 08:00, 8 d 2 h ago: out.
    # 01-08 has R = 01-09 08:00, 7 d 2 h ago: retried.
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-13", closed_at="2026-01-14 09:00")
    history[d("2026-01-07")] = _failing(1, 24 * 60)
    history[d("2026-01-08")] = _failing(1, 24 * 60)
    result = tick(sched, "2026-01-16 10:00", history)
    assert result.requests == [Request(d("2026-01-08"), "retry", False)]


def test_a_failed_partial_run_is_not_retried_before_the_partition_can_close():
    # 6-hour mapping, LA: today's 01-16 failed its partial run at 09:00; R(01-16) = 01-17 08:00 is ahead, so
    # no retry (the next due time runs it partial again).
    sched = schedule(
        next_run="2026-01-16 12:00", frequency=6 * HOUR, hourly=True, first_run="2026-01-01 00:00"
    )
    history = closed_through("2026-01-15", closed_at="2026-01-16 09:00")
    history[d("2026-01-16")] = _failing(1, 60)
    assert tick(sched, "2026-01-16 10:00", history).requests == []


# --- alerts: failing and stalled ---


def test_failing_lists_open_partitions_with_three_failures_in_a_row():
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-11", closed_at="2026-01-12 09:00")
    history[d("2026-01-12")] = _failing(2, 1)
    history[d("2026-01-13")] = _failing(3, 1)
    history[d("2026-01-14")] = _failing(5, 1)
    result = tick(sched, "2026-01-16 10:00", history)
    assert result.failing == [d("2026-01-13"), d("2026-01-14")]


def test_a_closed_partition_is_not_failing():
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-14", closed_at="2026-01-15 09:00")
    history[d("2026-01-13")] = History(runs=4, closed_at=utc("2026-01-15 09:00"), failures_in_a_row=0)
    assert tick(sched, "2026-01-16 10:00", history).failing == []


def _stalled_setup():
    """Daily LA mapping; the due times at 01-15 06:00 and 01-16 06:00 have been handled (nextRunTime is 01-17
    06:00) and it is 01-16 12:00. 01-13 (R = 01-14 08:00) was runnable at the earlier due time 01-15 06:00 and
    is still open: it failed twice, the last time 5 min ago (backoff 20 min, no retry yet). The last partition
    closed at 01-14 06:20, before 01-15 06:00."""
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:20")
    history[d("2026-01-13")] = History(runs=2, failures_in_a_row=2, last_failed_at=utc("2026-01-16 11:55"))
    return sched, history


def test_stalled_when_an_overdue_partition_is_open_and_nothing_closed_since_the_earlier_due_time():
    sched, history = _stalled_setup()
    result = tick(sched, "2026-01-16 12:00", history)
    assert result.requests == []
    assert result.stalled is True


def test_not_stalled_when_something_closed_after_the_earlier_due_time():
    sched, history = _stalled_setup()
    history[d("2026-01-12")] = History(runs=1, closed_at=utc("2026-01-15 06:30"))
    assert tick(sched, "2026-01-16 12:00", history).stalled is False


def test_not_stalled_while_something_is_in_flight():
    sched, history = _stalled_setup()
    assert tick(sched, "2026-01-16 12:00", history, in_flight={d("2026-01-14")}).stalled is False


def test_not_stalled_while_something_is_requested():
    sched, history = _stalled_setup()
    # The backoff of 20 min has passed at 12:20: 01-13 is retried, so the mapping is being worked on.
    result = tick(sched, "2026-01-16 12:20", history)
    assert result.requests == [Request(d("2026-01-13"), "retry", False)]
    assert result.stalled is False


def test_not_stalled_when_the_open_partition_was_only_due_once():
    # 01-14 (R = 01-15 08:00) open and failing, but it was not runnable at 01-15 06:00; 01-13 closed at
    # 01-15 07:00 (after the earlier due time, anyway).
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-01 06:00")
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:20")
    history[d("2026-01-13")] = History(runs=1, closed_at=utc("2026-01-14 06:20"))
    history[d("2026-01-14")] = History(runs=2, failures_in_a_row=2, last_failed_at=utc("2026-01-16 11:55"))
    assert tick(sched, "2026-01-16 12:00", history).stalled is False


def test_a_brand_new_mapping_is_not_stalled_after_its_first_due_time():
    # First due time 01-16 06:00, handled (nextRunTime 01-17 06:00); nothing ever ran.
    sched = schedule(next_run="2026-01-17 06:00", first_run="2026-01-16 06:00")
    result = tick(sched, "2026-01-16 12:00", {})
    assert result.stalled is False
    # Also at the first due time itself: LA's 01-15 (R = 01-16 08:00) is not runnable, nothing to request.
    sched = schedule(next_run="2026-01-16 06:00", first_run="2026-01-16 06:00")
    result = tick(sched, "2026-01-16 06:00", {})
    assert result.requests == [] and result.stalled is False
    assert result.advance_to == utc("2026-01-17 06:00")


def test_a_new_mapping_that_never_closed_anything_stalls_at_its_second_due_time():
    # Sydney, first due time 01-16 06:00 requested 01-15 (R = 01-15 13:00), which keeps failing. After the
    # second due time (01-17 06:00, nextRunTime now 01-18 06:00) nothing has ever closed.
    sched = schedule(next_run="2026-01-18 06:00", first_run="2026-01-16 06:00", zones=(SYDNEY,))
    history = {
        d("2026-01-15"): History(runs=3, failures_in_a_row=3, last_failed_at=utc("2026-01-17 11:30")),
        d("2026-01-16"): History(runs=1, failures_in_a_row=1, last_failed_at=utc("2026-01-17 11:55")),
    }
    result = tick(sched, "2026-01-17 12:00", history)
    assert result.requests == []
    assert result.failing == [d("2026-01-15")]
    assert result.stalled is True


# --- partitions before partitions_start ---


def test_due_partitions_before_partitions_start_are_reported_not_requested():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    # The due time wants 01-13 and 01-14; partitions start at 01-14.
    result = tick(sched, "2026-01-16 06:00", history, partitions_start=d("2026-01-14"))
    assert result.before_partitions_start == [d("2026-01-13")]
    assert result.requests == due(d("2026-01-14"))
    assert result.advance_to is None
    # Once 01-14 is requested, the due time is handled although 01-13 never will be.
    result = tick(
        sched, "2026-01-16 06:01", history, requested={d("2026-01-14")}, partitions_start=d("2026-01-14")
    )
    assert result.before_partitions_start == [d("2026-01-13")]
    assert result.requests == []
    assert result.advance_to == utc("2026-01-18 06:00")


def test_a_due_time_wanting_only_partitions_before_the_start_still_advances():
    sched = schedule(next_run="2026-01-16 06:00", frequency=2 * DAY)
    history = closed_through("2026-01-12", closed_at="2026-01-14 06:10")
    result = tick(sched, "2026-01-16 06:00", history, partitions_start=d("2026-01-20"))
    assert result.before_partitions_start == [d("2026-01-13"), d("2026-01-14")]
    assert result.requests == []
    assert result.advance_to == utc("2026-01-18 06:00")


# --- candidate_dates ---


@pytest.mark.parametrize(
    ("kwargs", "now", "first", "last"),
    [
        # reach = catch-up 7 + 2 x 1 day + 3 = 12 days before today 01-16.
        ({}, "2026-01-16 06:00", "2026-01-04", "2026-01-16"),
        # A mapping whose first due time is 01-14 06:00 answers from the day before: 01-13.
        ({"first_run": "2026-01-14 06:00"}, "2026-01-16 06:00", "2026-01-13", "2026-01-16"),
        # 6 hours: frequency.days = 0, reach = 7 + 0 + 3 = 10.
        ({"frequency": 6 * HOUR, "hourly": True}, "2026-01-16 23:00", "2026-01-06", "2026-01-16"),
        # 2 days, catch-up 0: reach = 0 + 2 x 2 + 3 = 7.
        ({"frequency": 2 * DAY, "catchup": 0}, "2026-01-16 00:00", "2026-01-09", "2026-01-16"),
    ],
)
def test_candidate_dates(kwargs, now, first, last):
    sched = schedule(next_run="2026-01-16 06:00", **kwargs)
    assert candidate_dates(sched, utc(now)) == days(first, last)


def test_candidate_dates_use_the_utc_day_of_now():
    # 01-16 09:00 in Sydney is 01-15 22:00 UTC: today is 01-15, and the dates run 01-03 .. 01-15.
    sched = schedule(next_run="2026-01-16 06:00")
    now = datetime(2026, 1, 16, 9, 0, tzinfo=ZoneInfo(SYDNEY))
    assert candidate_dates(sched, now) == days("2026-01-03", "2026-01-15")


def test_a_due_time_is_planned_again_once_its_first_run_learnt_the_zones():
    # A new Sydney mapping, first due 01-16 15:00 UTC, businesses never fetched: only 01-15 is surely over
    # (unknown zones close at 01-16 12:00 UTC), so only it is requested.
    unknown = schedule(next_run="2026-01-16 15:00", first_run="2026-01-16 15:00", zones=None)
    first = tick(unknown, "2026-01-16 15:00")
    assert first.requests == due(d("2026-01-15")) and first.advance_to is None
    # While that run is in flight nothing is decided: the due time waits for it.
    running = tick(unknown, "2026-01-16 15:01", requested={d("2026-01-15")}, in_flight={d("2026-01-15")})
    assert running.requests == [] and running.advance_to is None
    # It fetched the businesses: Sydney's 01-16 closed at 01-16 13:00 UTC, so the same due time wants it too.
    known = dataclasses.replace(unknown, time_zones=(SYDNEY,))
    history = {d("2026-01-15"): History(runs=1, closed_at=utc("2026-01-16 15:02"))}
    again = tick(known, "2026-01-16 15:03", history, requested={d("2026-01-15")})
    assert again.requests == due(d("2026-01-16")) and again.advance_to is None


# --- a nextRunTime in the past: what the first tick catches up (the dashboard's warning) ---


def test_catch_up_of_a_past_next_run_time_runs_the_horizon_and_skips_the_older_days():
    # The paused mapping above, as a new one: its scope starts the day before its first due time (01-10).
    # The latest due time 01-31 06:00 runs 01-22 .. 01-29 and no further back; 01-10 .. 01-21 are skipped.
    sched = schedule(next_run="2026-01-11 06:00", first_run="2026-01-11 06:00")
    found = catch_up(sched, utc("2026-01-31 07:00"))
    assert found is not None
    assert found.due_at == utc("2026-01-31 06:00")
    assert found.run == days("2026-01-22", "2026-01-29")
    assert found.skipped == days("2026-01-10", "2026-01-21")
    assert found.next_run_time == utc("2026-02-01 06:00")


def test_catch_up_of_a_recent_next_run_time_skips_nothing_and_a_future_one_is_none():
    sched = schedule(next_run="2026-01-29 06:00", first_run="2026-01-29 06:00")
    found = catch_up(sched, utc("2026-01-31 07:00"))
    assert found is not None and found.skipped == [] and found.run == days("2026-01-28", "2026-01-29")
    assert catch_up(schedule(next_run="2026-02-01 06:00"), utc("2026-01-31 07:00")) is None
