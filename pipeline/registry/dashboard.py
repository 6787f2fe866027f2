"""The integration dashboard: the manual's "integration support dashboard" as one page on the admin server.

The page (`/`) and its files (`/dashboard/...`) are plain HTML, CSS and JavaScript shipped in this package: no
build step, nothing fetched from the internet. They hold no registry data, so they load without the admin
token; every registry read or write the page makes goes to the admin API on the same origin and carries the
token like any other client.

`/dashboard/rules.json` hands the page the registry's catalogue and value rules (property keys, Cliniko
shards, ranges), taken from `pipeline.registry.model`, so the page can check a whole set-up before its first
write instead of keeping its own copy of the numbers.

`/dashboard/catch-up` says in words what the scheduler will do with a `nextRunTime` in the past, from the
calendar's own planner (`pipeline.calendar.planner.catch_up`, pure: no registry data, no Dagster), so the
page never holds a second copy of the catch-up horizon rule.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from pipeline.calendar.planner import Schedule, catch_up
from pipeline.cliniko.shards import DEFAULT_SHARD, KNOWN_SHARDS, SHARD_PATTERN
from pipeline.registry.model import (
    BIRDEYE_API_KEY,
    CATCHUP_DAYS,
    CLINIKO_API_KEY,
    COOLOFF_DAYS,
    DEFAULT_CATCHUP_DAYS,
    DEFAULT_FREQUENCY,
    DEFAULT_RUN_TIME_UTC,
    EXCLUDED_TYPES,
    FETCH_DELAY,
    GROUP_KEYS,
    LOCATION_NAME,
    MAPPING_KEYS,
    MAX_BUSINESS_NUMBER_DIGITS,
    MAX_CATCHUP_DAYS,
    MAX_FREQUENCY,
    SOURCES,
    TRIGGERS,
    Frequency,
    RegistryError,
    format_run_time,
    parse_frequency,
    parse_run_time,
)

STATIC_DIR = Path(__file__).with_name("static")
_PREFIX = "/dashboard/"

# Ranges of the integer properties; tests/unit/test_dashboard_rules.py holds them against normalize_property.
INTEGER_RANGES = {FETCH_DELAY: (0, 365), COOLOFF_DAYS: (0, 3650), CATCHUP_DAYS: (0, 90)}

# The page may only talk to its own origin: a stray CDN link or injected script fails loudly in the browser.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public(method: str, path: str) -> bool:
    """The page and its static files need no token: they carry no registry data."""
    return method in ("GET", "HEAD") and (path == "/" or path.startswith(_PREFIX))


def rules() -> dict[str, Any]:
    """The catalogue and value rules the page checks a set-up against before it writes anything."""
    return {
        "sources": list(SOURCES),
        "triggers": list(TRIGGERS),
        "keys": {
            "clinikoApiKey": CLINIKO_API_KEY,
            "birdeyeApiKey": BIRDEYE_API_KEY,
            "fetchDelay": FETCH_DELAY,
            "cooloffDays": COOLOFF_DAYS,
            "locationName": LOCATION_NAME,
            "catchupDays": CATCHUP_DAYS,
            "excludedTypes": EXCLUDED_TYPES,
        },
        "groupKeys": list(GROUP_KEYS),
        "mappingKeys": list(MAPPING_KEYS),
        "integerRanges": {key: list(bounds) for key, bounds in INTEGER_RANGES.items()},
        "clinikoShards": list(KNOWN_SHARDS),
        "shardPattern": SHARD_PATTERN.pattern,
        "defaultShard": DEFAULT_SHARD,
        "maxBusinessNumberDigits": MAX_BUSINESS_NUMBER_DIGITS,
        "maxFrequency": dict(MAX_FREQUENCY),
        "defaultFrequency": {"value": DEFAULT_FREQUENCY[0], "unit": DEFAULT_FREQUENCY[1]},
        "defaultRunTimeUtc": DEFAULT_RUN_TIME_UTC.strftime("%H:%M"),
        "defaultCatchupDays": DEFAULT_CATCHUP_DAYS,
    }


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit if count == 1 else unit + 's'}"


def _ago(span: timedelta) -> str:
    if span >= timedelta(days=1):
        return _plural(span.days, "day")
    if span >= timedelta(hours=1):
        return _plural(span.seconds // 3600, "hour")
    return "less than an hour"


def _days(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def catch_up_words(
    next_run_time: datetime,
    frequency: Frequency,
    *,
    fetch_delay_days: int,
    catchup_days: int,
    active: bool,
    existing: bool,
    now: datetime,
) -> dict[str, Any]:
    """What the scheduler will do with this next run time, for a person: `past` is False (and `message` None)
    while it lies ahead. Days are the days whose appointments are asked about (partition date - fetch delay).

    The clinics' time zones are not known here, so the days are counted as the scheduler counts them before
    its first fetch (a day ends when it has ended everywhere, UTC-12): "about".
    """
    first_run = max(next_run_time, now - timedelta(days=MAX_CATCHUP_DAYS))
    plan = catch_up(
        Schedule(
            business_number="0",
            group_id=0,
            next_run_time=next_run_time,
            first_run_time=first_run,
            frequency=frequency.as_timedelta(),
            hourly=frequency.unit == "hours",
            fetch_delay_days=fetch_delay_days,
            catchup_days=catchup_days,
            time_zones=None,
        ),
        now,
    )
    if plan is None:
        return {"past": False, "message": None}
    every = _plural(frequency.value, frequency.unit.removesuffix("s"))
    horizon = f"its catch-up horizon of {_plural(catchup_days, 'day')} plus one frequency ({every})"
    opening = f"This next run time, {_when(next_run_time)}, is {_ago(now - next_run_time)} in the past."
    result: dict[str, Any] = {
        "past": True,
        "catchupDays": catchup_days,
        "runDays": len(plan.run),
        "skippedDays": len(plan.skipped),
        "nextRunTimeAfter": format_run_time(plan.next_run_time),
    }
    if not active:
        result["message"] = (
            f"{opening} The location is inactive, so nothing runs until it is made active; then the "
            f"scheduler catches up the missed days, going no further back than {horizon}."
        )
        return result
    target = [day - timedelta(days=fetch_delay_days) for day in plan.run]
    dropped = [day - timedelta(days=fetch_delay_days) for day in plan.skipped]
    words = [opening, "The scheduler does not repeat every missed run."]
    if target:
        words.append(
            f"At its next check after saving it catches up the missed days: about "
            f"{_plural(len(target), 'day')} of appointments ({_days(target[0], target[-1])}), going no "
            f"further back than {horizon}."
        )
    else:
        words.append(
            f"At its next check after saving no missed day has ended yet everywhere, so it runs nothing; it "
            f"never goes further back than {horizon}."
        )
    if dropped:
        words.append(
            f"The {_plural(len(dropped), 'older day')} ({_days(dropped[0], dropped[-1])}) "
            f"{'is' if len(dropped) == 1 else 'are'} skipped: no review requests are sent for "
            f"{'it' if len(dropped) == 1 else 'them'} unless a data engineer runs "
            f"{'it' if len(dropped) == 1 else 'them'} on purpose."
        )
    if existing:
        words.append("Days this location already ran are not run again.")
    words.append(f"Then the next run time becomes {_when(plan.next_run_time)}.")
    result["message"] = " ".join(words)
    return result


def mount_dashboard(app: FastAPI) -> None:
    """Serve the page at `/`, its rules at `/dashboard/rules.json`, its files under `/dashboard/static/`."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)

    @router.get("/dashboard/rules.json")
    def page_rules() -> dict[str, Any]:
        return rules()

    @router.get("/dashboard/catch-up")
    def page_catch_up(
        nextRunTime: str,
        frequencyValue: int,
        frequencyUnit: str,
        fetchDelay: int = 0,
        catchupDays: int = DEFAULT_CATCHUP_DAYS,
        active: bool = True,
        existing: bool = False,
    ) -> dict[str, Any]:
        """The catch-up warning of the location drawer and the review step (see `catch_up_words`)."""
        if not 0 <= catchupDays <= MAX_CATCHUP_DAYS:
            raise RegistryError("catchupDays", f"must be an integer from 0 to {MAX_CATCHUP_DAYS}")
        if not 0 <= fetchDelay <= INTEGER_RANGES[FETCH_DELAY][1]:
            raise RegistryError(
                "fetchDelay", f"must be an integer from 0 to {INTEGER_RANGES[FETCH_DELAY][1]}"
            )
        return catch_up_words(
            parse_run_time(nextRunTime, "nextRunTime"),
            parse_frequency(frequencyValue, frequencyUnit, "frequency"),
            fetch_delay_days=fetchDelay,
            catchup_days=catchupDays,
            active=active,
            existing=existing,
            now=datetime.now(UTC),
        )

    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
