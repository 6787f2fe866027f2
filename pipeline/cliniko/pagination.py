"""Cliniko's page envelope and how to walk it: `{<collection>: [...], "total_entries": n, "links": {...}}`.

Cliniko recommends following `links.next` until it is absent. Two guards keep a misbehaving server from
looping the client forever: an empty page ends the walk, and more than `ceil(total_entries / per_page) + 1`
pages is an error (one extra page is allowed because page-number pagination can shift while rows are added).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

PER_PAGE = 100


class MalformedPage(Exception):
    """A 200 response whose body is not a Cliniko page; retried like a 5xx (it is usually a truncated
    body)."""


@dataclass(frozen=True)
class RawPage:
    """A page whose records are left unparsed (for DuckDB): the body and its envelope."""

    body: bytes
    empty: bool
    next_url: str | None
    total_entries: int | None


def collection_key(path: str) -> str:
    """`/individual_appointments?x` -> `individual_appointments`; `/patients/archived` -> `patients`."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    if len(segments) >= 2 and segments[-1] in {"archived", "deleted", "cancelled", "inactive"}:
        return segments[-2]
    return segments[-1]


def raw_page(content: bytes, key: str) -> RawPage:
    """The envelope of a page without parsing its records; raise `MalformedPage` for anything that is not the
    documented envelope (the records are typed later, by DuckDB).

    Cliniko's body opens with the collection and closes with the two small members, `{"<key>": [...],
    "total_entries": n, "links": {...}}`. So the opening is matched, and only the tail from the last
    `"total_entries"` is parsed: it holds the next link, and it parses only if the body arrived whole (a
    truncated body is retried). A key can only occur as a key there (inside a string its quotes would be
    escaped), and no record has one of that name. A body of any other shape takes the full parse.
    """
    head = _opening(key).match(content)
    start = content.rfind(b'"total_entries"')
    if head is not None and start > head.end():
        try:
            tail = orjson.loads(b"{" + content[start:])
        except orjson.JSONDecodeError:
            tail = None
        if isinstance(tail, dict) and key not in tail:
            next_url, total_entries = _envelope(tail)
            empty = _CLOSING.match(content, head.end()) is not None
            return RawPage(content, empty, next_url, total_entries)
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise MalformedPage(f"body is not valid JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise MalformedPage(f"body has no '{key}' list")
    next_url, total_entries = _envelope(body)
    return RawPage(content, not body[key], next_url, total_entries)


@cache
def _opening(key: str) -> re.Pattern[bytes]:
    return re.compile(rb'\s*\{\s*"' + re.escape(key.encode()) + rb'"\s*:\s*\[')


_CLOSING = re.compile(rb"\s*\]")


def _envelope(body: dict[str, Any]) -> tuple[str | None, int | None]:
    links = body.get("links")
    next_url = links.get("next") if isinstance(links, dict) else None
    total = body.get("total_entries")
    try:
        total_entries = int(total) if total is not None else None
    except (TypeError, ValueError):
        total_entries = None
    return (next_url if isinstance(next_url, str) and next_url else None), total_entries


def page_cap(total_entries: int | None) -> int | None:
    """Most pages a walk may take given the first page's `total_entries` (None: no count, no cap)."""
    if total_entries is None:
        return None
    return math.ceil(total_entries / PER_PAGE) + 1
