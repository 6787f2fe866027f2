"""The integration dashboard: the manual's "integration support dashboard" as one page on the admin server.

The page (`/`) and its files (`/dashboard/...`) are plain HTML, CSS and JavaScript shipped in this package: no
build step, nothing fetched from the internet. They hold no registry data, so they load without the admin
token; every registry read or write the page makes goes to the admin API on the same origin and carries the
token like any other client.

`/dashboard/rules.json` hands the page the registry's catalogue and value rules (property keys, Cliniko
shards, ranges), taken from `pipeline.registry.model`, so the page can check a whole set-up before its first
write instead of keeping its own copy of the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from pipeline.registry.model import (
    BIRDEYE_API_KEY,
    CATCHUP_DAYS,
    CLINIKO_API_KEY,
    CLINIKO_SHARDS,
    COOLOFF_DAYS,
    DEFAULT_FREQUENCY,
    DEFAULT_RUN_TIME_UTC,
    DEFAULT_SHARD,
    FETCH_DELAY,
    GROUP_KEYS,
    LOCATION_NAME,
    MAPPING_KEYS,
    MAX_BUSINESS_NUMBER_DIGITS,
    MAX_FREQUENCY,
    SOURCES,
    TRIGGERS,
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
        },
        "groupKeys": list(GROUP_KEYS),
        "mappingKeys": list(MAPPING_KEYS),
        "integerRanges": {key: list(bounds) for key, bounds in INTEGER_RANGES.items()},
        "clinikoShards": list(CLINIKO_SHARDS),
        "defaultShard": DEFAULT_SHARD,
        "maxBusinessNumberDigits": MAX_BUSINESS_NUMBER_DIGITS,
        "maxFrequency": dict(MAX_FREQUENCY),
        "defaultFrequency": {"value": DEFAULT_FREQUENCY[0], "unit": DEFAULT_FREQUENCY[1]},
        "defaultRunTimeUtc": DEFAULT_RUN_TIME_UTC.strftime("%H:%M"),
    }


def mount_dashboard(app: FastAPI) -> None:
    """Serve the page at `/`, its rules at `/dashboard/rules.json`, its files under `/dashboard/static/`."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)

    @router.get("/dashboard/rules.json")
    def page_rules() -> dict[str, Any]:
        return rules()

    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
