"""The first day of the `date` partitions: PARTITIONS_START, or as far back as the calendar may ask for a
partition (the largest frequency and catch-up horizon, from the day the code location loads). Each case
imports the definitions in a process of its own, as a code location does."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.registry.model import MAX_CATCHUP_DAYS, MAX_FREQUENCY
from pipeline.settings import PROJECT_ROOT

PRINT_START = (
    "from pipeline.automation.partitions import daily_partitions as p; print(p.start.date().isoformat())"
)


def first_day(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PARTITIONS_START"} | env
    return subprocess.run(
        [sys.executable, "-c", PRINT_START], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True
    )


def test_unset_the_partitions_start_as_far_back_as_the_calendar_may_ask():
    before = datetime.now(UTC).date()
    printed = date.fromisoformat(first_day().stdout.strip())
    after = datetime.now(UTC).date()
    # A yearly mapping (the largest frequency) with the largest catch-up horizon, paused a year: its due time
    # asks for every partition runnable since one frequency plus the horizon before it.
    furthest = timedelta(days=MAX_FREQUENCY["days"] + MAX_CATCHUP_DAYS + 2)
    assert printed in {d - furthest for d in (before, after)}
    assert printed <= before - timedelta(days=365 + 90)


def test_partitions_start_sets_the_first_day():
    assert first_day(PARTITIONS_START="2025-03-01").stdout.strip() == "2025-03-01"


@pytest.mark.parametrize("value", ["2025-13-01", "March 2025", "2025/03/01"])
def test_a_malformed_partitions_start_says_how_to_write_it(value):
    result = first_day(PARTITIONS_START=value)
    assert result.returncode != 0
    expected = f"PARTITIONS_START must be a date written YYYY-MM-DD (e.g. 2026-09-01), not {value!r}"
    assert expected in result.stderr


def test_the_run_command_refuses_a_day_before_the_partitions_and_says_what_to_set():
    from pipeline.automation.partitions import PARTITIONS_START_DATE
    from pipeline.runner import select_partitions

    day = PARTITIONS_START_DATE - timedelta(days=1)
    with pytest.raises(ValueError, match=f"set PARTITIONS_START={day} \\(or earlier\\)"):
        select_partitions(None, [day, PARTITIONS_START_DATE])
