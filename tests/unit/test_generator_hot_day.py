"""The generator's `hot_day` option: one heavy mapping-day inside a long history, for the ingest benchmark."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pipeline.sandbox.generator import generate_account

START, END, HOT = date(2026, 1, 1), date(2026, 3, 1), date(2026, 2, 10)


def local_start_days(account, business_index: int) -> list[date]:
    business = account.businesses[business_index]
    zone = ZoneInfo(business["time_zone_identifier"] or "UTC")
    table = account.appointments
    starts = table.starts_at[table.business_id == int(business["id"])]
    return [datetime.fromtimestamp(int(s), UTC).astimezone(zone).date() for s in starts]


def test_hot_day_puts_that_many_appointments_on_the_first_business_that_day():
    plain = generate_account(3, appointments=3_000, start=START, end=END)
    hot = generate_account(3, appointments=3_000, start=START, end=END, hot_day=HOT, hot_day_appointments=800)

    assert len(hot.appointments) == len(plain.appointments) == 3_000
    on_hot_day = local_start_days(hot, 0).count(HOT)
    usual = local_start_days(plain, 0).count(HOT)
    assert 800 <= on_hot_day <= 800 + 3 * max(usual, 10)
    # The rest of the history still spans the whole range.
    assert min(local_start_days(hot, 1)) < date(2026, 1, 5) and max(local_start_days(hot, 1)) > date(
        2026, 2, 24
    )


def test_without_hot_day_the_account_is_unchanged():
    a = generate_account(4, appointments=500, start=START, end=END)
    b = generate_account(4, appointments=500, start=START, end=END, hot_day=None, hot_day_appointments=0)
    assert np.array_equal(a.appointments.id, b.appointments.id)
    assert list(a.appointments.records()) == list(b.appointments.records())


@pytest.mark.parametrize(
    ("hot_day", "count"), [(None, 10), (date(2025, 12, 31), 10), (END, 10), (HOT, 501), (HOT, -1)]
)
def test_hot_day_arguments_are_checked(hot_day, count):
    with pytest.raises(ValueError):
        generate_account(
            4, appointments=500, start=START, end=END, hot_day=hot_day, hot_day_appointments=count
        )
