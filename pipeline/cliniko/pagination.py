"""Cliniko's page envelope and how to walk it: `{<collection>: [...], "total_entries": n, "links": {...}}`.

Cliniko recommends following `links.next` until it is absent. Two guards keep a misbehaving server from
looping the client forever: an empty page ends the walk, and more than `ceil(total_entries / per_page) + 1`
pages is an error (one extra page is allowed because page-number pagination can shift while rows are added).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

PER_PAGE = 100


class MalformedPage(Exception):
    """A 200 response whose body is not a Cliniko page; retried like a 5xx (it is usually a truncated
    body)."""


@dataclass(frozen=True)
class Page:
    records: list[Any]
    next_url: str | None
    total_entries: int | None


def collection_key(path: str) -> str:
    """`/individual_appointments?x` -> `individual_appointments`; `/patients/archived` -> `patients`."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    if len(segments) >= 2 and segments[-1] in {"archived", "deleted", "cancelled", "inactive"}:
        return segments[-2]
    return segments[-1]


def parse_page(content: bytes, key: str) -> Page:
    """Parse one page body; raise `MalformedPage` for anything that is not the documented envelope."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise MalformedPage(f"body is not valid JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise MalformedPage(f"body has no '{key}' list")
    links = body.get("links")
    next_url = links.get("next") if isinstance(links, dict) else None
    total = body.get("total_entries")
    try:
        total_entries = int(total) if total is not None else None
    except (TypeError, ValueError):
        total_entries = None
    return Page(body[key], next_url if isinstance(next_url, str) and next_url else None, total_entries)


def page_cap(total_entries: int | None) -> int | None:
    """Most pages a walk may take given the first page's `total_entries` (None: no count, no cap)."""
    if total_entries is None:
        return None
    return math.ceil(total_entries / PER_PAGE) + 1
