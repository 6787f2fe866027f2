"""A local Cliniko `/v1` API (read-only) that behaves like the real one, for the demo, tests and benchmarks.

It follows `reference/cliniko-api.md` (§1-7 and the §10 checklist), not the client's convenience: whatever
the real API rejects, this rejects too. Decisions where the reference is silent ([UNK]/[INF] there) are
listed here and are part of the contract:

- One shard (`au4` by default). The Basic-auth username is the key with or without its `-shard` suffix; a
  suffix naming another shard gets 401, like a wrong-shard key on the real API. The password is ignored.
- Check order: outage (`set_outage`: 503 to everything) -> User-Agent -> `Accept` (only when
  `require_accept_json`) -> auth -> rate limit -> route -> permission -> injected faults. Unknown paths get
  404 `{"message": "Not found"}` after auth.
- 401: `WWW-Authenticate: Basic realm="Application"`, text body `HTTP Basic: Access denied.`. A User-Agent
  that is not `Name (email@host)` gets `user_agent_status` (403) with text `Requires a user agent`.
- Rate limit: fixed windows aligned to the epoch (as Rack::Attack does), `rate_limit` authenticated requests
  per window per account; over it, 429 `{"message": "Too many requests"}` with `X-RateLimit-Reset: <epoch s
  of the window end>` (and `Retry-After` only with `send_retry_after`). Throttled requests are not counted.
- `per_page` defaults to 50; 1..100 is allowed. Above 100 answers 400 (`per_page_over_max="reject"`,
  default, so a client that would send it is caught) or is clamped to 100 (`"clamp"`). A page past the end
  is an empty list.
- Filters `q[]=field:<op><value>` (also the old bare `q=`), AND-ed, typed per field. Unknown field: 400
  `{"message": "This column is not searchable."}`; an operator the field's type lacks, a bad value, or a
  DateTime that is not UTC `...Z` (optionally with fractional seconds): 400 with a message naming the
  filter.
- Hidden by default on list endpoints: rows whose `archived_at`, `cancelled_at` or `deleted_at` is set. Each
  is shown only when the same field is filtered with `*` (`archived_at:*` shows archived rows,
  `cancelled_at:*` cancelled ones, `deleted_at:*` deleted ones); no other operator lifts it. Businesses,
  patients and appointment types hide archived rows, appointments hide all three. Deleted patients are never
  returned. Single-record GETs return archived and cancelled records; deleted ones are 404.
- `sort=a,b:desc` over the searchable fields (400 `This column is not sortable.` otherwise); the deprecated
  `order=desc` flips columns without an explicit direction. Default `created_at` ascending; `id` always
  breaks ties. Nulls sort last ascending and first descending, as in Postgres.
- Practitioners: `/practitioners` lists active ones only and `/practitioners/inactive` the others, with the
  same filters; `/practitioners/{id}` shows either. A practitioner links its Cliniko `user`; `/users` (not in
  the reference: the official docs repository's `sections/users.md`) lists every user, active or not, with
  `email` and `user_active`, filterable by `id` (Integer, so `id:=1,2,3`), `created_at` and `updated_at`.
- Filterable fields: the lists in §4.2, plus `archived_at` on patients and businesses (a working client uses
  it) and the portal's `archived_at`/`category`/`show_in_online_bookings` on appointment types (not `name`:
  a client cannot ask Cliniko for types by name, it lists them and matches names itself).
- Classes: `/group_appointments` filters on the fields of §4.2 (no `cancelled_at`: a class is archived or
  deleted, its attendees are cancelled) and hides archived classes unless `archived_at:*`; deleted classes are
  never listed. `/attendees` filters on `booking_id`, `created_at`, `id`, `patient_id`, `updated_at` and, as
  the working client sends them, `archived_at` and `cancelled_at`, and hides archived and cancelled attendees
  unless those are asked for with `*`; attendees of a deleted class are never listed. An attendee links its
  class as `booking` (`/bookings/{id}`, the ids of bookings and group appointments are one space). Nested
  routes (`/group_appointments/{id}/attendees`) are not served: filter `/attendees` by `booking_id` instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import numpy as np
import orjson

from pipeline.masking import mask
from pipeline.sandbox.generator import NULL, Account

MAX_PER_PAGE = 100
# Rendered records are kept (as JSON bytes) up to this size: a 200,000-appointment account takes ~300 MB.
RENDER_CACHE_BYTES = 768 * 1024 * 1024
DEFAULT_PER_PAGE = 50
NOT_SEARCHABLE = "This column is not searchable."
_SHARD_SUFFIX = re.compile(r"^[a-z]{2}\d{1,2}$", re.IGNORECASE)
_USER_AGENT = re.compile(r"^[^()]*\S[^()]*\(\s*[^\s()@]+@[^\s()@]+\s*\)\s*$")
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,6})?Z$")
_DATE = re.compile(r"^[\d*]{4}-[\d*]{2}-[\d*]{2}$")
_OPERATORS = ("!?", "!=", ">=", "<=", "~~", "=", ">", "<", "~", "?", "*")
_TYPE_OPERATORS = {
    "datetime": {">=", ">", "<=", "<", "?", "!?", "*"},
    "date": {"=", ">=", ">", "<=", "<", "?", "!?"},
    "numeric": {"=", "!=", ">=", ">", "<=", "<", "?", "!?"},
    "string": {"=", "!=", "~", "~~", "?", "!?"},
    "boolean": {"=", "!="},
}


@dataclass(frozen=True)
class FaultConfig:
    """Injected trouble. Every decision is a hash of (seed, request or record), so runs reproduce exactly.

    Per request (method, path, query and how many times that exact request was seen before), one draw picks
    at most one of: a dropped connection (`drop_rate`), a 5xx from `error_statuses` (`error_rate`), or a 200
    whose body is truncated JSON (`malformed_json_rate`). An independent draw adds `slow_seconds` of latency
    (`slow_rate`). Per record (by id), `malformed_record_rate` of records are served with a wrong type or a
    missing field, always the same records; `empty_string_null_rate` of records render null datetimes as `""`
    as the old docs did. Faults hit only authenticated, non-throttled requests to known paths.
    """

    seed: int = 0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    slow_rate: float = 0.0
    slow_seconds: float = 0.5
    drop_rate: float = 0.0
    malformed_json_rate: float = 0.0
    malformed_record_rate: float = 0.0
    empty_string_null_rate: float = 0.0


@dataclass(frozen=True)
class ClinikoEmulatorConfig:
    """Everything the emulator serves and how strict it is. `forbidden` maps an API key to resource names
    (`patients`, `individual_appointments`, ...) that key's user may not read (403)."""

    accounts: Sequence[Account]
    shard: str = "au4"
    rate_limit: int = 200
    rate_window_seconds: float = 60.0
    send_retry_after: bool = False
    user_agent_status: int = 403
    require_accept_json: bool = False
    per_page_over_max: str = "reject"
    forbidden: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)
    faults: FaultConfig = field(default_factory=FaultConfig)
    request_log_path: Path | None = None

    def __post_init__(self) -> None:
        if self.per_page_over_max not in ("reject", "clamp"):
            raise ValueError("per_page_over_max must be 'reject' or 'clamp'")
        if not _SHARD_SUFFIX.match(self.shard):
            raise ValueError(f"shard {self.shard!r} is not a Cliniko shard name like 'au4'")


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class _Filter:
    column: str
    op: str
    value: str


class _Table:
    """One resource of one account: typed filter columns, optional indexes, and a renderer for rows."""

    def __init__(
        self,
        kinds: dict[str, str],
        columns: dict[str, np.ndarray],
        render: Callable[[np.ndarray, str], list[dict]],
        hidden_unless_star: tuple[str, ...],
        hidden_always: np.ndarray | None = None,
    ) -> None:
        self.kinds = kinds
        self.columns = columns
        self.render = render
        self.hidden_unless_star = hidden_unless_star
        self.hidden_always = hidden_always
        ids = columns["id"]
        self._id_order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._id_order]
        self.by_business: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.columns["id"])

    def index_by_business(self) -> None:
        """Per business, rows sorted by `ends_at`: a day window of a few businesses costs O(rows in it)."""
        business, ends = self.columns["business_id"], self.columns["ends_at"]
        order = np.lexsort((ends, business))
        sorted_business = business[order]
        bounds = np.flatnonzero(np.diff(sorted_business)) + 1
        for chunk in np.split(order, bounds):
            if len(chunk):
                self.by_business[int(business[chunk[0]])] = (ends[chunk], chunk)

    def rows_of_ids(self, wanted: Sequence[int]) -> np.ndarray:
        """Row numbers of the ids that exist, in ascending row order (binary search over the sorted ids)."""
        keys = np.unique(np.array([v for v in wanted if 0 <= v < NULL], dtype=np.int64))
        at = np.searchsorted(self._sorted_ids, keys)
        found = at < len(self._sorted_ids)
        found[found] = self._sorted_ids[at[found]] == keys[found]
        return np.sort(self._id_order[at[found]])

    def visible(self, row: int) -> bool:
        return self.hidden_always is None or not self.hidden_always[row]

    def query(self, filters: list[_Filter], sort: list[tuple[str, bool]]) -> np.ndarray:
        """Row numbers matching every filter, in sort order. Cached: paging through a result is O(page)."""
        key = (tuple(filters), tuple(sort))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        rows = self._select(filters)
        rows = rows[self._order(rows, sort)]
        with self._lock:
            self._cache[key] = rows
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return rows

    def _candidates(self, filters: list[_Filter]) -> np.ndarray:
        for f in filters:
            if f.column == "id" and f.op == "=":
                return self.rows_of_ids(_ints(f))
        if self.by_business:
            for f in filters:
                if f.column == "business_id" and f.op == "=":
                    return self._business_window(_ints(f), filters)
        return np.arange(len(self), dtype=np.int64)

    def _business_window(self, businesses: list[int], filters: list[_Filter]) -> np.ndarray:
        low, high = -math.inf, math.inf
        for f in filters:
            if f.column == "ends_at" and f.op in (">=", ">"):
                low = max(low, _epoch(f.value))
            elif f.column == "ends_at" and f.op in ("<=", "<"):
                high = min(high, _epoch(f.value))
        parts = []
        for business in sorted(set(businesses)):
            if business in self.by_business:
                ends, rows = self.by_business[business]
                lo = 0 if low == -math.inf else int(np.searchsorted(ends, low, side="left"))
                hi = len(ends) if high == math.inf else int(np.searchsorted(ends, high, side="right"))
                parts.append(rows[lo:hi])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _select(self, filters: list[_Filter]) -> np.ndarray:
        rows = self._candidates(filters)
        keep = np.ones(len(rows), dtype=bool)
        if self.hidden_always is not None:
            keep &= ~self.hidden_always[rows]
        starred = {f.column for f in filters if f.op == "*"}
        for column in self.hidden_unless_star:
            if column not in starred:
                keep &= self.columns[column][rows] == NULL
        for f in filters:
            keep &= _match(self.kinds[f.column], self.columns[f.column][rows], f)
        return rows[keep]

    def _order(self, rows: np.ndarray, sort: list[tuple[str, bool]]) -> np.ndarray:
        keys: list[np.ndarray] = []
        for column, descending in sort:
            values = self.columns[column][rows]
            if values.dtype == object:
                distinct = sorted({v for v in values if v is not None})
                rank = {v: i for i, v in enumerate(distinct)}
                values = np.fromiter((rank.get(v, len(distinct)) for v in values), np.int64, len(values))
            elif values.dtype == bool:
                values = values.astype(np.int64)
            keys.append(-values if descending else values)
        if not any(column == "id" for column, _ in sort):
            keys.append(self.columns["id"][rows])
        return np.lexsort(keys[::-1])


def _ints(f: _Filter) -> list[int]:
    try:
        return [int(v) for v in f.value.split(",")] if f.op == "=" else [int(f.value)]
    except ValueError:
        raise _BadRequest(f"Invalid value for {f.column}: {f.value!r} is not a number.") from None


def _epoch(value: str) -> float:
    m = _DATETIME.match(value)
    if not m:
        raise _BadRequest(
            f"Invalid date time value {value!r}: use UTC ISO 8601 with a Z suffix, e.g. 2014-08-30T18:00:00Z."
        )
    try:
        whole = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise _BadRequest(f"Invalid date time value {value!r}: no such date or time.") from None
    return whole + (float(m.group(2)) if m.group(2) else 0.0)


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def _match(kind: str, values: np.ndarray, f: _Filter) -> np.ndarray:
    """The rows of `values` that satisfy one filter; nulls satisfy only `!?` and `*`, as in SQL."""
    op, raw = f.op, f.value
    if op == "*":
        return np.ones(len(values), dtype=bool)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _BadRequest(f"Invalid value for {f.column}: use true or false.")
        same = values == (raw == "true")
        return same if op == "=" else ~same
    if kind in ("datetime", "numeric"):
        present = values != NULL
        if op == "?":
            return present
        if op == "!?":
            return ~present
        if kind == "numeric" and op == "=":
            return present & np.isin(values, np.array(_ints(f), dtype=np.int64))
        target = _epoch(raw) if kind == "datetime" else _ints(f)[0]
        compare = {
            "!=": np.not_equal,
            ">=": np.greater_equal,
            ">": np.greater,
            "<=": np.less_equal,
            "<": np.less,
        }[op]
        return present & compare(values, target)
    present = np.fromiter((v is not None for v in values), bool, len(values))
    if op == "?":
        return present
    if op == "!?":
        return ~present
    if kind == "date":
        return _match_date(values, f)
    if op == "~":
        needle = raw.lower()
        test: Callable[[str], bool] = lambda v: needle in v.lower()  # noqa: E731
    elif op == "~~":
        test = _like(raw).match  # type: ignore[assignment]
    elif op == "=":
        test = raw.__eq__
    else:
        test = raw.__ne__
    return np.fromiter((v is not None and bool(test(v)) for v in values), bool, len(values))


def _match_date(values: np.ndarray, f: _Filter) -> np.ndarray:
    if not _DATE.match(f.value):
        raise _BadRequest(f"Invalid date value for {f.column}: {f.value!r}; use YYYY-MM-DD.")
    if "*" in f.value:
        if f.op != "=":
            raise _BadRequest(f"Wildcards in {f.column} work only with =.")
        pattern = re.compile("^" + f.value.replace("*", r"\d") + "$")
        return np.fromiter((v is not None and bool(pattern.match(v)) for v in values), bool, len(values))
    compare = {"=": str.__eq__, ">=": str.__ge__, ">": str.__gt__, "<=": str.__le__, "<": str.__lt__}[f.op]
    return np.fromiter((v is not None and compare(v, f.value) for v in values), bool, len(values))


def parse_filter(raw: str, kinds: Mapping[str, str]) -> _Filter:
    """`field:<op><value>` checked against the resource's searchable fields and the field's type."""
    column, sep, rest = raw.partition(":")
    column = column.strip()
    if column not in kinds:
        raise _BadRequest(NOT_SEARCHABLE)
    if not sep:
        raise _BadRequest(f"Invalid filter {raw!r}: expected field:<operator><value>.")
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None or (op == "*" and rest != "*"):
        raise _BadRequest(f"Invalid filter {raw!r}: unknown operator.")
    kind = kinds[column]
    if op not in _TYPE_OPERATORS[kind]:
        raise _BadRequest(f"Invalid filter {raw!r}: operator {op} does not apply to {column}.")
    value = rest[len(op) :]
    if op in ("?", "!?", "*") and value:
        raise _BadRequest(f"Invalid filter {raw!r}: {op} takes no value.")
    if op not in ("?", "!?", "*") and value == "":
        raise _BadRequest(f"Invalid filter {raw!r}: missing value.")
    f = _Filter(column, op, value)
    if kind == "datetime" and op not in ("?", "!?", "*"):
        _epoch(value)
    elif kind == "numeric" and op not in ("?", "!?"):
        _ints(f)
    return f


def _ts_column(values: Sequence[str | None]) -> np.ndarray:
    return np.fromiter(
        (NULL if not v else int(datetime.fromisoformat(v).timestamp()) for v in values),
        np.int64,
        len(values),
    )


def _id_column(values: Sequence[str | None]) -> np.ndarray:
    return np.fromiter((NULL if v is None else int(v) for v in values), np.int64, len(values))


def _link(url: str) -> dict:
    return {"links": {"self": url}}


def _record_table(
    records: list[dict],
    kinds: dict[str, str],
    render: Callable[[dict, str], dict],
    hidden_unless_star: tuple[str, ...],
) -> _Table:
    columns: dict[str, np.ndarray] = {}
    for name, kind in kinds.items():
        values = [r.get(name) for r in records]
        if kind == "datetime":
            columns[name] = _ts_column(values)
        elif kind == "numeric":
            columns[name] = _id_column(values)
        elif kind == "boolean":
            columns[name] = np.array([bool(v) for v in values], dtype=bool)
        else:
            columns[name] = np.array(values + [None], dtype=object)[:-1]
    return _Table(
        kinds, columns, lambda rows, base: [render(records[i], base) for i in rows], hidden_unless_star
    )


def _business_json(r: dict, base: str) -> dict:
    url = f"{base}/businesses/{r['id']}"
    return {
        **r,
        "practitioners": _link(f"{url}/practitioners"),
        "appointments": _link(f"{url}/appointments?page=1"),
        "links": {"self": url},
    }


def _patient_json(r: dict, base: str) -> dict:
    url = f"{base}/patients/{r['id']}"
    out = {k: v for k, v in r.items() if k != "merged_with_patient_id"}
    if r["merged_with_patient_id"] is not None:
        out["merged_with_patient"] = _link(f"{base}/patients/{r['merged_with_patient_id']}")
    out.update(
        concession_type=None,
        referring_doctor=None,
        medical_alerts=_link(f"{url}/medical_alerts"),
        invoices=_link(f"{url}/invoices"),
        appointments=_link(f"{url}/appointments?page=1"),
        links={"self": url},
    )
    return out


def _practitioner_json(r: dict, base: str) -> dict:
    url = f"{base}/practitioners/{r['id']}"
    out = {k: v for k, v in r.items() if k != "user_id"}
    out.update(
        user=_link(f"{base}/users/{r['user_id']}"),
        default_appointment_type=None,
        appointment_types=_link(f"{url}/appointment_types"),
        practitioner_reference_numbers=_link(f"{url}/practitioner_reference_numbers?page=1"),
        appointments=_link(f"{url}/appointments?page=1"),
        invoices=_link(f"{url}/invoices?page=1"),
        links={"self": url},
    )
    return out


def _user_json(r: dict, base: str) -> dict:
    return {**r, "links": {"self": f"{base}/users/{r['id']}"}}


def _practitioner_tables(practitioners: list[dict]) -> dict[str, _Table]:
    """`/practitioners` lists the active ones, `/practitioners/inactive` the others (reference §4.5, §6.4:
    an active flag, not archiving, so no filter lifts it); `/practitioners/{id}` shows either. Both lists take
    the same filters (`id` typed numeric like every id here, so `id:=1,2,3` works on each)."""
    kinds = {"id": "numeric", "created_at": "datetime", "updated_at": "datetime", "user_id": "numeric"}
    inactive = np.array([not p.get("active", True) for p in practitioners], dtype=bool)
    tables = {}
    for route, hidden in (
        ("practitioners", inactive),
        ("practitioners/inactive", ~inactive),
        ("practitioners/any", None),
    ):
        table = _record_table(practitioners, kinds, _practitioner_json, ())
        table.hidden_always = hidden if hidden is not None and hidden.any() else None
        tables[route] = table
    return tables


def _appointment_type_json(r: dict, base: str) -> dict:
    url = f"{base}/appointment_types/{r['id']}"
    return {**r, "practitioners": _link(f"{url}/practitioners"), "links": {"self": url}}


def _appointments_table(account: Account) -> _Table:
    t = account.appointments
    columns = {
        "id": t.id,
        "business_id": t.business_id,
        "patient_id": t.patient_id,
        "practitioner_id": t.practitioner_id,
        "appointment_type_id": t.appointment_type_id,
        "repeated_from_id": t.repeated_from_id,
        "starts_at": t.starts_at,
        "ends_at": t.ends_at,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "cancelled_at": t.cancelled_at,
        "archived_at": t.archived_at,
        "deleted_at": t.deleted_at,
    }
    kinds = {name: ("datetime" if name.endswith("_at") else "numeric") for name in columns}

    def render(rows: np.ndarray, base: str) -> list[dict]:
        return [_appointment_json(r, base) for r in t.records_at(rows)]

    def _appointment_json(r: dict, base: str) -> dict:
        url = f"{base}/individual_appointments/{r['id']}"
        return {
            "id": r["id"],
            "starts_at": r["starts_at"],
            "ends_at": r["ends_at"],
            "patient_name": r["patient_name"],
            "notes": None,
            "did_not_arrive": r["did_not_arrive"],
            "patient_arrived": r["patient_arrived"],
            "cancelled_at": r["cancelled_at"],
            "cancellation_reason": r["cancellation_reason"],
            "cancellation_reason_description": r["cancellation_reason_description"],
            "cancellation_note": r["cancellation_note"],
            "archived_at": r["archived_at"],
            "deleted_at": r["deleted_at"],
            "booking_ip_address": None,
            "online_booking_policy_accepted": None,
            "email_reminder_sent": r["email_reminder_sent"],
            "sms_reminder_sent": r["sms_reminder_sent"],
            "has_patient_appointment_notes": False,
            "invoice_status": None,
            "treatment_note_status": None,
            "telehealth_url": None,
            "repeat_rule": {},
            "repeats": None,
            "repeated_from": (
                None
                if r["repeated_from_id"] is None
                else _link(f"{base}/individual_appointments/{r['repeated_from_id']}")
            ),
            "conflicts": _link(f"{url}/conflicts"),
            "appointment_type": _link(f"{base}/appointment_types/{r['appointment_type_id']}"),
            "business": _link(f"{base}/businesses/{r['business_id']}"),
            "practitioner": _link(f"{base}/practitioners/{r['practitioner_id']}"),
            "patient": _link(f"{base}/patients/{r['patient_id']}"),
            "patient_case": None,
            "attendees": _link(f"{url}/attendees"),
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
            "links": {"self": url},
        }

    table = _Table(kinds, columns, render, ("archived_at", "cancelled_at", "deleted_at"))
    table.index_by_business()
    return table


def _group_appointment_json(r: dict, base: str) -> dict:
    url = f"{base}/group_appointments/{r['id']}"
    return {
        "id": r["id"],
        "starts_at": r["starts_at"],
        "ends_at": r["ends_at"],
        "max_attendees": r["max_attendees"],
        "notes": r["notes"],
        "patient_ids": r["patient_ids"],
        "archived_at": r["archived_at"],
        "telehealth_url": None,
        "repeat_rule": {},
        "repeats": None,
        "repeated_from": None,
        "conflicts": _link(f"{url}/conflicts"),
        "appointment_type": _link(f"{base}/appointment_types/{r['appointment_type_id']}"),
        "business": _link(f"{base}/businesses/{r['business_id']}"),
        "practitioner": _link(f"{base}/practitioners/{r['practitioner_id']}"),
        "attendees": _link(f"{url}/attendees"),
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
        "links": {"self": url},
    }


def _attendee_json(r: dict, base: str) -> dict:
    url = f"{base}/attendees/{r['id']}"
    return {
        "id": r["id"],
        "arrived": r["arrived"],
        "cancelled_at": r["cancelled_at"],
        "cancellation_reason": r["cancellation_reason"],
        "cancellation_reason_description": r["cancellation_reason_description"],
        "cancellation_note": r["cancellation_note"],
        "cancellation_url": None,
        "archived_at": r["archived_at"],
        "email_reminder_sent": r["email_reminder_sent"],
        "sms_reminder_sent": r["sms_reminder_sent"],
        "invoice_status": None,
        "treatment_note_status": None,
        "telehealth_url": None,
        "booking": _link(f"{base}/bookings/{r['booking_id']}"),
        "patient": _link(f"{base}/patients/{r['patient_id']}"),
        "patient_case": None,
        "invoices": _link(f"{url}/invoices"),
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
        "links": {"self": url},
    }


def _class_tables(account: Account) -> dict[str, _Table]:
    """`/group_appointments` (indexed by business and end time, as appointments are) and `/attendees`; deleted
    classes and their attendees are hidden always (their `deleted_at` is no searchable field there)."""
    classes = _record_table(
        account.group_appointments,
        {
            "id": "numeric",
            "appointment_type_id": "numeric",
            "archived_at": "datetime",
            "business_id": "numeric",
            "created_at": "datetime",
            "ends_at": "datetime",
            "practitioner_id": "numeric",
            "repeated_from_id": "numeric",
            "starts_at": "datetime",
            "updated_at": "datetime",
        },
        _group_appointment_json,
        ("archived_at",),
    )
    deleted = _ts_column([r["deleted_at"] for r in account.group_appointments]) != NULL
    classes.hidden_always = deleted if deleted.any() else None
    if len(classes):
        classes.index_by_business()
    attendees = _record_table(
        account.attendees,
        {
            "id": "numeric",
            "booking_id": "numeric",
            "created_at": "datetime",
            "patient_id": "numeric",
            "updated_at": "datetime",
            "archived_at": "datetime",
            "cancelled_at": "datetime",
        },
        _attendee_json,
        ("archived_at", "cancelled_at"),
    )
    deleted = _ts_column([r["deleted_at"] for r in account.attendees]) != NULL
    attendees.hidden_always = deleted if deleted.any() else None
    return {"group_appointments": classes, "attendees": attendees}


def _account_tables(account: Account) -> dict[str, _Table]:
    businesses = _record_table(
        account.businesses,
        {"id": "numeric", "created_at": "datetime", "updated_at": "datetime", "archived_at": "datetime"},
        _business_json,
        ("archived_at",),
    )
    deleted = _ts_column([b["deleted_at"] for b in account.businesses]) != NULL
    businesses.hidden_always = deleted if deleted.any() else None
    return {
        "businesses": businesses,
        "patients": _record_table(
            account.patients,
            {
                "id": "numeric",
                "created_at": "datetime",
                "updated_at": "datetime",
                "archived_at": "datetime",
                "date_of_birth": "date",
                "email": "string",
                "first_name": "string",
                "last_name": "string",
                "old_reference_id": "string",
            },
            _patient_json,
            ("archived_at",),
        ),
        "individual_appointments": _appointments_table(account),
        **_practitioner_tables(account.practitioners),
        "users": _record_table(
            account.users,
            {"id": "numeric", "created_at": "datetime", "updated_at": "datetime"},
            _user_json,
            (),
        ),
        "appointment_types": _record_table(
            account.appointment_types,
            {
                "id": "numeric",
                "created_at": "datetime",
                "updated_at": "datetime",
                "archived_at": "datetime",
                "category": "string",
                "show_in_online_bookings": "boolean",
            },
            _appointment_type_json,
            ("archived_at",),
        ),
        **_class_tables(account),
    }


def _unit(seed: int, *parts: object) -> float:
    """A uniform draw in [0, 1) fixed by the seed and the parts: reproducible fault decisions."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _malform(resource: str, record: dict, draw: float) -> dict:
    """A realistic breakage: an id as a number, an unparseable time, a missing field or a wrong type."""
    broken = dict(record)
    variant = int(draw * 4)
    if variant == 0:
        broken["id"] = int(record["id"])
    elif variant == 1:
        broken["updated_at" if resource != "individual_appointments" else "ends_at"] = "31/02/2026 25:61"
    elif variant == 2:
        broken.pop("patient" if resource == "individual_appointments" else "created_at", None)
    elif resource == "individual_appointments":
        broken["did_not_arrive"] = "no"
    elif resource == "patients":
        broken["patient_phone_numbers"] = "0412 345 678"
    else:
        broken["created_at"] = 1_700_000_000
    return broken


def _blank_nulls(record: dict) -> dict:
    return {k: ("" if v is None and k.endswith("_at") else v) for k, v in record.items()}


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json; charset=utf-8"
    fault: str | None = None


def _json(status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> _Response:
    """Compact UTF-8 JSON; orjson writes the same bytes as `json.dumps(ensure_ascii=False, separators=(",",
    ":"))` for the types served here, about ten times faster."""
    body = orjson.dumps(payload)
    return _Response(status, body, headers or [])


def _message(status: int, message: str) -> _Response:
    return _json(status, {"message": message})


_ROUTES = (
    "businesses",
    "patients",
    "individual_appointments",
    "group_appointments",
    "attendees",
    "practitioners",
    "appointment_types",
    "users",
)
_ERROR_PAGES = {
    500: b'{"message":"Internal Server Error"}',
    502: b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: b"<html><body><h1>503 Service Unavailable</h1></body></html>",
    504: b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
}


class ClinikoEmulator:
    """The ASGI app. `request_log` lists one dict per request (time, method, path, query, key (masked),
    account (its name, for an accepted key), status, fault, duration_ms); `requests_between(t0, t1)` and
    `clear_log()` help tests and benchmarks read it."""

    def __init__(self, config: ClinikoEmulatorConfig) -> None:
        self.config = config
        self._accounts: dict[str, tuple[Account, dict[str, _Table]]] = {}
        for account in config.accounts:
            base, sep, suffix = account.api_key.rpartition("-")
            if not sep or suffix.lower() != config.shard.lower():
                raise ValueError(f"account {account.name!r} has a key for another shard than {config.shard}")
            self._accounts[base] = (account, _account_tables(account))
        self._forbidden = {
            key.rpartition("-")[0] or key: frozenset(resources) for key, resources in config.forbidden.items()
        }
        self._outage = False
        self._windows: dict[str, tuple[int, int]] = {}
        self._seen: dict[tuple, int] = {}
        self._rendered: dict[tuple[int, str, str], dict[int, bytes]] = {}
        self._rendered_bytes = 0
        self._log: list[dict] = []
        self._log_lock = threading.Lock()
        self._log_file = (
            config.request_log_path.open("a", encoding="utf-8") if config.request_log_path else None
        )

    @property
    def request_log(self) -> list[dict]:
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        started = time.time()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        (key_shown, account), response, slow = self._handle(scope, headers, query)
        if slow:
            await asyncio.sleep(self.config.faults.slow_seconds)
        if response.fault == "drop":
            await self._drop(send)
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", response.content_type),
                        (b"content-length", str(len(response.body)).encode()),
                        *response.headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
        self._record(started, scope, query, key_shown, account, response, slow)

    async def _drop(self, send: Callable) -> None:
        """Close the socket without a byte of response; fall back to a truncated response elsewhere."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
                }
            )
            return
        transport.close()
        for _ in range(10):
            if getattr(cycle, "disconnected", True):
                return
            await asyncio.sleep(0)

    def _record(
        self,
        started: float,
        scope: dict,
        query: str,
        key: str | None,
        account: str | None,
        response: _Response,
        slow: bool,
    ) -> None:
        entry = {
            "time": datetime.fromtimestamp(started, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "epoch": started,
            "method": scope["method"],
            "path": scope["path"],
            "query": unquote_plus(query),
            "key": key,
            "account": account,
            "status": 0 if response.fault == "drop" else response.status,
            "fault": response.fault,
            "slow": slow,
            "duration_ms": round((time.time() - started) * 1000, 3),
        }
        with self._log_lock:
            self._log.append(entry)
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self._log_file.flush()

    def set_outage(self, down: bool) -> None:
        """Start or end an outage: while it lasts every request gets 503, as Cliniko's load balancer answers
        when the service is down (tests of failed runs and their retries switch it at chosen moments)."""
        self._outage = down

    def _handle(
        self, scope: dict, headers: dict[str, str], query: str
    ) -> tuple[tuple[str | None, str | None], _Response, bool]:
        """Who asked as the log shows it (the key masked, and the account's name once the key is accepted),
        the response, and whether to delay the answer."""
        config = self.config
        if self._outage:
            return (None, None), _message(503, "Service Unavailable"), False
        if not _USER_AGENT.match(headers.get("user-agent", "")):
            return (
                (None, None),
                _Response(config.user_agent_status, b"Requires a user agent", content_type=b"text/plain"),
                False,
            )
        if config.require_accept_json and not re.search(r"application/json|\*/\*", headers.get("accept", "")):
            return (None, None), _message(406, "Send Accept: application/json."), False
        username = _basic_username(headers.get("authorization", ""))
        shown = mask(username) if username else None
        base = self._authenticate(username)
        if base is None:
            return (
                (shown, None),
                _Response(
                    401,
                    b"HTTP Basic: Access denied.",
                    [(b"www-authenticate", b'Basic realm="Application"')],
                    b"text/plain; charset=utf-8",
                ),
                False,
            )
        who = (shown, self._accounts[base][0].name)
        throttled = self._throttle(base)
        if throttled is not None:
            return who, throttled, False
        if scope["method"] != "GET":
            return who, _message(405, "Method not allowed"), False
        parts = scope["path"].rstrip("/").split("/")
        if len(parts) not in (3, 4) or parts[1] != "v1" or parts[2] not in _ROUTES:
            return who, _message(404, "Not found"), False
        resource = parts[2]
        if resource in self._forbidden.get(base, ()):
            return who, _message(403, "You do not have permission to access this resource."), False
        fault, slow, malformed_json = self._request_fault(scope, query)
        if fault is not None:
            return who, fault, slow
        _, tables = self._accounts[base]
        root = f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}/v1"
        try:
            if resource == "practitioners" and len(parts) == 4 and parts[3] == "inactive":
                table = tables["practitioners/inactive"]
                response = self._list(resource, table, query, root, scope["path"])
            elif len(parts) == 4:
                table = tables["practitioners/any" if resource == "practitioners" else resource]
                response = self._show(resource, table, parts[3], root)
            else:
                response = self._list(resource, tables[resource], query, root, scope["path"])
        except _BadRequest as error:
            return who, _message(400, error.message), slow
        if malformed_json and response.status == 200:
            response.body = response.body[: max(1, len(response.body) // 2)]
            response.fault = "malformed_json"
        return who, response, slow

    def _authenticate(self, username: str | None) -> str | None:
        if not username:
            return None
        base, sep, suffix = username.rpartition("-")
        if sep and _SHARD_SUFFIX.match(suffix):
            if suffix.lower() != self.config.shard.lower():
                return None
        else:
            base = username
        return base if base in self._accounts else None

    def _throttle(self, base: str) -> _Response | None:
        window = self.config.rate_window_seconds
        now = time.time()
        current = int(now // window)
        seen_window, count = self._windows.get(base, (current, 0))
        if seen_window != current:
            count = 0
        if count >= self.config.rate_limit:
            reset = math.ceil((current + 1) * window)
            headers = [(b"x-ratelimit-reset", str(reset).encode())]
            if self.config.send_retry_after:
                headers.append((b"retry-after", str(max(1, math.ceil(reset - now))).encode()))
            return _json(429, {"message": "Too many requests"}, headers)
        self._windows[base] = (current, count + 1)
        return None

    def _request_fault(self, scope: dict, query: str) -> tuple[_Response | None, bool, bool]:
        """(fault response or None, add latency?, truncate the JSON?) for this occurrence of this request."""
        faults = self.config.faults
        key = (scope["method"], scope["path"], query)
        occurrence = self._seen.get(key, 0)
        self._seen[key] = occurrence + 1
        if not (faults.drop_rate or faults.error_rate or faults.malformed_json_rate or faults.slow_rate):
            return None, False, False
        draw = _unit(faults.seed, "request", *key, occurrence)
        slow = faults.slow_rate > 0 and _unit(faults.seed, "slow", *key, occurrence) < faults.slow_rate
        if draw < faults.drop_rate:
            return _Response(0, b"", fault="drop"), slow, False
        draw -= faults.drop_rate
        if draw < faults.error_rate:
            pick = _unit(faults.seed, "status", *key, occurrence)
            status = faults.error_statuses[int(pick * len(faults.error_statuses))]
            body = _ERROR_PAGES.get(status, b'{"message":"Server error"}')
            kind = b"text/html" if body.startswith(b"<") else b"application/json; charset=utf-8"
            return _Response(status, body, content_type=kind, fault="error"), slow, False
        return None, slow, draw - faults.error_rate < faults.malformed_json_rate

    def _rows_json(self, resource: str, table: _Table, rows: Sequence[int], root: str) -> list[dict]:
        faults = self.config.faults
        out = []
        ids = table.columns["id"]
        for row, record in zip(rows, table.render(np.asarray(rows, dtype=np.int64), root), strict=True):
            if faults.malformed_record_rate > 0:
                draw = _unit(faults.seed, "record", resource, int(ids[row]))
                if draw < faults.malformed_record_rate:
                    record = _malform(resource, record, draw / faults.malformed_record_rate)
            if faults.empty_string_null_rate > 0 and (
                _unit(faults.seed, "blank", resource, int(ids[row])) < faults.empty_string_null_rate
            ):
                record = _blank_nulls(record)
            out.append(record)
        return out

    def _rows_bytes(self, resource: str, table: _Table, rows: np.ndarray, root: str) -> list[bytes]:
        """`_rows_json` as JSON bytes, each record rendered once per account, resource and host name.

        The data and the per-record faults are fixed for the emulator's life, so a record's bytes never
        change; a page then costs a join instead of building and encoding 100 nested dicts. The cache is
        dropped when it outgrows `RENDER_CACHE_BYTES`.
        """
        if self._rendered_bytes > RENDER_CACHE_BYTES:
            self._rendered.clear()
            self._rendered_bytes = 0
        cache = self._rendered.setdefault((id(table), resource, root), {})
        keys = rows.tolist()
        missing = [row for row in keys if row not in cache]
        if missing:
            for row, record in zip(missing, self._rows_json(resource, table, missing, root), strict=True):
                encoded = orjson.dumps(record)
                cache[row] = encoded
                self._rendered_bytes += len(encoded)
        return [cache[row] for row in keys]

    def _show(self, resource: str, table: _Table, raw_id: str, root: str) -> _Response:
        found = table.rows_of_ids([int(raw_id)]) if raw_id.isdigit() else []
        row = int(found[0]) if len(found) else None
        if (
            row is None
            or not table.visible(row)
            or ("deleted_at" in table.columns and table.columns["deleted_at"][row] != NULL)
        ):
            return _message(404, "Not found")
        return _json(200, self._rows_json(resource, table, [row], root)[0])

    def _list(self, resource: str, table: _Table, query: str, root: str, path: str) -> _Response:
        pairs = parse_qsl(query, keep_blank_values=True)
        raw_filters = [v for k, v in pairs if k in ("q[]", "q")]
        filters = [parse_filter(raw, table.kinds) for raw in raw_filters]
        params = {k: v for k, v in pairs if k in ("page", "per_page", "sort", "order")}
        page = _positive_int(params.get("page", "1"), "page")
        per_page = _positive_int(params.get("per_page", str(DEFAULT_PER_PAGE)), "per_page")
        if per_page > MAX_PER_PAGE:
            if self.config.per_page_over_max == "reject":
                raise _BadRequest(f"per_page must be between 1 and {MAX_PER_PAGE}.")
            per_page = MAX_PER_PAGE
        sort = _parse_sort(params.get("sort", "created_at"), params.get("order", "asc"), table.kinds)
        rows = table.query(filters, sort)
        total = len(rows)
        chunk = rows[(page - 1) * per_page : page * per_page]
        url = root[: -len("/v1")] + path
        links = {"self": _page_url(url, query, page)}
        if page * per_page < total:
            links["next"] = _page_url(url, query, page + 1)
        if page > 1:
            links["previous"] = _page_url(url, query, page - 1)
        body = b"".join(
            (
                b'{"',
                resource.encode(),
                b'":[',
                b",".join(self._rows_bytes(resource, table, chunk, root)),
                b'],"total_entries":',
                str(total).encode(),
                b',"links":',
                orjson.dumps(links),
                b"}",
            )
        )
        return _Response(200, body, [])


def _basic_username(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def _positive_int(raw: str, name: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise _BadRequest(f"{name} must be a positive integer.")
    return int(raw)


def _parse_sort(raw: str, order: str, kinds: Mapping[str, str]) -> list[tuple[str, bool]]:
    if order not in ("asc", "desc"):
        raise _BadRequest("order must be asc or desc.")
    out = []
    for part in raw.split(","):
        column, _, direction = part.strip().partition(":")
        if column not in kinds:
            raise _BadRequest("This column is not sortable.")
        if direction not in ("", "asc", "desc"):
            raise _BadRequest(f"Invalid sort direction {direction!r}: use asc or desc.")
        out.append((column, (direction or order) == "desc"))
    return out


def _page_url(url: str, query: str, page: int) -> str:
    """The same URL with only `page` changed (added if absent); other params keep their original encoding."""
    segments = [s for s in query.split("&") if s] if query else []
    out, replaced = [], False
    for segment in segments:
        if unquote_plus(segment.partition("=")[0]) == "page":
            if not replaced:
                out.append(f"page={page}")
                replaced = True
            continue
        out.append(segment)
    if not replaced:
        out.append(f"page={page}")
    return f"{url}?{'&'.join(out)}"
