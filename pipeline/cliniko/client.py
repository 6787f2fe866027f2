"""`ClinikoClient`: the read-only Cliniko calls the ingestion needs, over one keep-alive urllib3 pool.

Each concern lives in its own module: the shard and host in `shards.py`, the shared request budget in
`pipeline/ratelimit.py`, the page envelope in `pagination.py`, the exceptions in `errors.py`. Every call
hands over raw page bodies, typed by DuckDB in `pipeline.warehouse.pages.type_pages`. This module wires
them: every HTTP request first takes a slot from the shared budget, 429s wait until `X-RateLimit-Reset` (and
hold back every other process using the key), and 5xx, timeouts, dropped connections and malformed pages are
retried with capped, jittered exponential backoff (tenacity's `wait_random_exponential`, i.e. "full jitter")
before they become `ClinikoUnavailable`.

Why urllib3 and not httpx (which the Birdeye client and the tests use): a backfill fetches thousands of pages
whose URLs carry long filter queries, and httpx re-validates every character of every URL in Python. With
urllib3 a page costs ~1 ms less CPU, a quarter of the client's time per page (see the ingestion
benchmark, `benchmarks/bench_ingest_throughput.py`).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from pipeline.cliniko.errors import (
    ClinikoAuthError,
    ClinikoBadRequest,
    ClinikoError,
    ClinikoForbidden,
    ClinikoRateLimited,
    ClinikoUnavailable,
    InvalidUserAgent,
)
from pipeline.cliniko.pagination import PER_PAGE, MalformedPage, RawPage, collection_key, page_cap, raw_page
from pipeline.cliniko.shards import base_url_for
from pipeline.masking import mask
from pipeline.ratelimit import shared_rate_limiter
from pipeline.settings import Settings
from pipeline.tls import tls_context

# 100 ids of 19 digits, comma-joined and percent-encoded, make a ~2.3 KB URL: far below common 8 KB limits.
PATIENT_ID_CHUNK = 100
BOOKING_ID_CHUNK = 100  # group appointment ids per `/attendees` query, for the same reason
_USER_AGENT = re.compile(r"^[^()\s][^()]*\s\([^()\s@]+@[^()\s@]+\.[^()\s@]+\)$")
_WAIT_429_BOUNDS = (1.0, 120.0)
_WAIT_429_DEFAULT = 60.0


@dataclass
class ClientStats:
    """What a run cost: reported as materialization metadata."""

    requests: int = 0
    pages: int = 0
    rate_limited: int = 0
    retries: int = 0
    rate_limit_wait_seconds: float = 0.0
    backoff_wait_seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


class _Transient(Exception):
    """A failure worth retrying: 5xx, timeout, dropped connection, malformed page."""


def format_datetime(value: datetime) -> str:
    """Cliniko's filter form `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds; never a `+00:00` offset)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value!r} has no time zone; pass an aware datetime (the filter is UTC)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_user_agent(user_agent: str) -> str:
    """Cliniko asks for `App name (contact@email)` and may block anything else."""
    if not _USER_AGENT.match(user_agent or ""):
        raise InvalidUserAgent(user_agent)
    return user_agent


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class ClinikoClient:
    """Read-only Cliniko client for one API key.

    >>> with ClinikoClient(key, settings=settings) as cliniko:
    ...     businesses = type_pages("businesses", cliniko.business_pages())
    ...     appointments = type_pages("appointments", cliniko.individual_appointment_pages(ids, start, end))
    ...     cliniko.stats.as_dict()

    `settings` are the caller's (the client never reads the environment): base URL, user agent, rate limit.
    `rate_limit_per_minute` is the key's budget per `window_seconds` (the name follows Cliniko's 200/min; a
    test or benchmark shrinks the window). Both default to the settings (`CLINIKO_RATE_LIMIT_PER_MINUTE`,
    `CLINIKO_RATE_LIMIT_WINDOW_SECONDS`). `0` turns the shared limiter off, for raw-speed measurements only.
    """

    def __init__(
        self,
        api_key: str,
        *,
        settings: Settings,
        base_url: str | None = None,
        user_agent: str | None = None,
        rate_limit_per_minute: int | None = None,
        window_seconds: float | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_consecutive_429: int = 10,
    ) -> None:
        self._masked_key = mask(api_key)
        self.shard, default_url = base_url_for(api_key, settings.cliniko_base_url)
        self.base_url = (base_url or default_url).rstrip("/")
        self._base_url_set = bool(base_url or settings.cliniko_base_url)  # else the real shard host
        self._origin = _origin(self.base_url)
        self.user_agent = validate_user_agent(user_agent or settings.cliniko_user_agent)
        limit = (
            settings.cliniko_rate_limit_per_minute if rate_limit_per_minute is None else rate_limit_per_minute
        )
        window = settings.cliniko_rate_limit_window_seconds if window_seconds is None else window_seconds
        self.limiter = (
            shared_rate_limiter(
                api_key,
                rate_limit_dir=settings.rate_limit_dir,
                database_url=settings.database_url,
                limit=limit,
                window_seconds=window,
            )
            if limit > 0
            else None
        )
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_consecutive_429 = max_consecutive_429
        self.stats = ClientStats()
        headers = urllib3.make_headers(basic_auth=f"{api_key}:", user_agent=self.user_agent)
        # retries=False: tenacity retries (with the rate limiter in the loop); redirects are not followed.
        self._http = urllib3.PoolManager(
            num_pools=2,
            headers={**headers, "Accept": "application/json"},
            ssl_context=tls_context() if self._origin[0] == "https" else None,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )

    def __repr__(self) -> str:
        return f"ClinikoClient(key={self._masked_key}, shard={self.shard}, base_url={self.base_url})"

    def __enter__(self) -> ClinikoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.clear()

    # -- the calls the ingestion makes -----------------------------------------------------------------------

    def business_pages(self) -> Iterator[bytes]:
        """Every business of the account, archived ones included (a mapping may name one), as raw page
        bodies for `type_pages`."""
        return self._raw_pages("/businesses", [[("q[]", "archived_at:*")]])

    def appointment_type_pages(self) -> Iterator[bytes]:
        """Every appointment type of the account, archived ones included (an appointment may still reference
        a type archived since; Cliniko hides archived types unless `archived_at:*` is asked for), as raw page
        bodies for `type_pages`."""
        return self._raw_pages("/appointment_types", [[("q[]", "archived_at:*")]])

    def individual_appointment_pages(
        self, business_ids: Sequence[str], ends_from: datetime, ends_before: datetime
    ) -> Iterator[bytes]:
        """Appointments of `business_ids` with `ends_from <= ends_at < ends_before`, cancelled and archived
        included, filtered by Cliniko so that an account's history is never paged through; as raw page bodies
        for `type_pages`. Pages are fetched ahead while the caller types the ones it has (DuckDB releases the
        GIL)."""
        params = _appointment_query(business_ids, ends_from, ends_before)
        return iter(()) if params is None else self._raw_pages("/individual_appointments", [params])

    def group_appointment_pages(
        self, business_ids: Sequence[str], ends_from: datetime, ends_before: datetime
    ) -> Iterator[bytes]:
        """Group appointments (classes) of `business_ids` with `ends_from <= ends_at < ends_before`, archived
        included, as raw page bodies for `type_pages`. Cliniko cannot filter classes on `cancelled_at` (a
        class is archived or deleted, never cancelled; deleted ones are not listed)."""
        query = _appointment_query(business_ids, ends_from, ends_before)
        if query is None:
            return iter(())
        params = [p for p in query if p != ("q[]", "cancelled_at:*")]
        return self._raw_pages("/group_appointments", [params])

    def attendee_pages(self, group_appointment_ids: Sequence[str]) -> Iterator[bytes]:
        """The attendees of these group appointments, cancelled and archived included, as raw page bodies
        for `type_pages`: `/attendees` filtered by `booking_id` (a class's id is its booking id), 100 classes
        per query, so a day's classes cost one page per 100 attendees and never a request per class."""
        return self._raw_pages("/attendees", _attendee_queries(group_appointment_ids))

    def patient_pages(self, ids: Sequence[str]) -> Iterator[bytes]:
        """The patients with these ids, archived (and merged) included, 100 ids per request, as raw page
        bodies for `type_pages`. An id Cliniko does not return (a deleted patient) is simply absent; the
        loader records it as missing."""
        return self._raw_pages("/patients", _patient_queries(ids))

    def practitioner_pages(self, ids: Sequence[str], *, inactive: bool = False) -> Iterator[bytes]:
        """The practitioners with these ids among the active ones (`/practitioners`), or with `inactive`
        among the others (`/practitioners/inactive`: an active flag, which no filter lifts), 100 ids per
        request, as raw page bodies for `type_pages`. Records carry no email (their user has it)."""
        path = "/practitioners/inactive" if inactive else "/practitioners"
        return self._raw_pages(path, _id_queries(ids))

    def user_pages(self, ids: Sequence[str]) -> Iterator[bytes]:
        """The Cliniko users with these ids, 100 ids per request, as raw page bodies for `type_pages`: a
        practitioner's email is its user's."""
        return self._raw_pages("/users", _id_queries(ids))

    # -- paging ------------------------------------------------------------------------------------------

    def _raw_pages(self, path: str, queries: Iterable[list[tuple[str, str]]]) -> Iterator[bytes]:
        """Every non-empty page body of every query, in order.

        A helper thread makes the requests (each through the shared rate limiter, with its retries) while the
        caller types the pages it has; the queue holds at most 128 pages (~18 MB: a raw page is compact, and
        the caller takes them in batches). An error in the thread is raised here; leaving the loop early
        stops the thread before its next request.
        """
        pages: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=128)
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def fetch() -> None:
            try:
                for params in queries:
                    for body in self._walk(path, params, stop):
                        if not put(("page", body)):
                            return
                put(("done", None))
            except BaseException as exc:  # handed to the consuming thread, which raises it
                put(("error", exc))

        thread = threading.Thread(target=fetch, name="cliniko-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                kind, item = pages.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def _walk(self, path: str, params: list[tuple[str, str]], stop: threading.Event) -> Iterator[bytes]:
        """The body of each page of one query, following `links.next` with the guards of `pagination`."""
        key = collection_key(path)
        url = f"{self.base_url}{path}?{urlencode([*params, ('per_page', str(PER_PAGE))])}"
        cap: int | None = None
        pages = 0
        while not stop.is_set():
            page = self._get_page(url, path, key)
            pages += 1
            if pages == 1:
                cap = page_cap(page.total_entries)
            if page.empty:
                return
            yield page.body
            if page.next_url is None:
                return
            if cap is not None and pages >= cap:
                raise ClinikoError(
                    f"Cliniko kept offering a next page of {path} after {pages} pages although it reported "
                    f"{page.total_entries} rows; stopped so as not to loop. Re-run the partition; if it "
                    "repeats, report it with this message."
                )
            url = self._same_origin(page.next_url)

    def _same_origin(self, next_url: str) -> str:
        """Follow `links.next`, but only ever to the host we authenticate against (a proxy or emulator may
        build links with another host name; the key must not travel to it)."""
        if next_url.startswith(self.base_url + "/"):  # the usual case, without parsing a long URL
            return next_url
        if _origin(next_url) == self._origin:
            return next_url
        parsed = urllib3.util.parse_url(next_url)
        scheme, host, port = self._origin
        return parsed._replace(scheme=scheme, host=host, port=port).url

    # -- one page, with rate limit and retries -------------------------------------------------------------

    def _get_page(self, url: str, resource: str, key: str) -> RawPage:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            retry=retry_if_exception_type(_Transient),
            sleep=self._backoff_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    page = self._get_once(url, resource, key)
        except _Transient as exc:
            raise ClinikoUnavailable(
                resource, self.max_retries + 1, str(exc), self.base_url, self._base_url_set
            ) from None
        self.stats.pages += 1
        return page

    def _get_once(self, url: str, resource: str, key: str) -> RawPage:
        consecutive_429 = 0
        while True:
            if self.limiter is not None:
                self.stats.rate_limit_wait_seconds += self.limiter.acquire()
            self.stats.requests += 1
            try:
                response = self._http.request("GET", url)
            except urllib3.exceptions.TimeoutError as exc:
                raise _Transient(f"timeout ({type(exc).__name__})") from None
            except urllib3.exceptions.HTTPError as exc:
                raise _Transient(f"connection problem ({type(exc).__name__}: {exc})") from None
            status = response.status
            if status == 200:
                try:
                    return raw_page(response.data, key)
                except MalformedPage as exc:
                    raise _Transient(f"malformed page: {exc}") from None
            if status == 429:
                self.stats.rate_limited += 1
                consecutive_429 += 1
                if consecutive_429 > self.max_consecutive_429:
                    raise ClinikoRateLimited(resource, consecutive_429)
                self._wait_for_reset(response)
                continue
            if status >= 500:
                raise _Transient(f"HTTP {status}")
            if status == 401:
                raise ClinikoAuthError(self._masked_key, self.shard, self._origin[1])
            if status == 403:
                raise ClinikoForbidden(resource, self._origin[1])
            raise ClinikoBadRequest(status, resource, _cliniko_message(response))

    def _wait_for_reset(self, response: urllib3.BaseHTTPResponse) -> None:
        """Wait until `X-RateLimit-Reset` (epoch s), else `Retry-After` (s), else 60 s, clamped to 1..120 s.

        The wait is written into the shared limiter so that every process using this key pauses too.
        """
        now = time.time()
        wait = _WAIT_429_DEFAULT
        reset, retry_after = response.headers.get("X-RateLimit-Reset"), response.headers.get("Retry-After")
        try:
            if reset is not None:
                wait = float(reset) - now
            elif retry_after is not None:
                wait = float(retry_after)
        except ValueError:
            wait = _WAIT_429_DEFAULT
        wait = min(max(wait, _WAIT_429_BOUNDS[0]), _WAIT_429_BOUNDS[1])
        if self.limiter is not None:
            self.limiter.block_until(now + wait)
        else:
            time.sleep(wait)
            self.stats.rate_limit_wait_seconds += wait

    def _backoff_sleep(self, seconds: float) -> None:
        self.stats.backoff_wait_seconds += seconds
        time.sleep(seconds)


def _cliniko_message(response: urllib3.BaseHTTPResponse) -> str:
    """Cliniko's `{"message": ...}` if the body has one, else the start of the body."""
    try:
        body = orjson.loads(response.data)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except orjson.JSONDecodeError:
        pass
    return response.data[:300].decode(errors="replace") or response.reason or f"HTTP {response.status}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in when the URL leaves it to the scheme."""
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or _DEFAULT_PORTS.get(scheme, 0)


def _appointment_query(
    business_ids: Sequence[str], ends_from: datetime, ends_before: datetime
) -> list[tuple[str, str]] | None:
    """The filters of one appointments query (None when there is no business to ask for)."""
    ids = [str(i) for i in dict.fromkeys(business_ids) if i]
    if not ids:
        return None
    return [
        ("q[]", f"business_id:={','.join(ids)}"),
        ("q[]", f"ends_at:>={format_datetime(ends_from)}"),
        ("q[]", f"ends_at:<{format_datetime(ends_before)}"),
        ("q[]", "archived_at:*"),
        ("q[]", "cancelled_at:*"),
        ("sort", "ends_at,id"),
    ]


def _patient_queries(ids: Sequence[str]) -> Iterator[list[tuple[str, str]]]:
    """One query per 100 distinct ids."""
    wanted = [str(i) for i in dict.fromkeys(ids) if i]
    for chunk in _chunks(wanted, PATIENT_ID_CHUNK):
        yield [("q[]", f"id:={','.join(chunk)}"), ("q[]", "archived_at:*"), ("sort", "id")]


def _id_queries(ids: Sequence[str]) -> Iterator[list[tuple[str, str]]]:
    """One query per 100 distinct ids, for resources that hide nothing by archiving (practitioners, users)."""
    wanted = [str(i) for i in dict.fromkeys(ids) if i]
    for chunk in _chunks(wanted, PATIENT_ID_CHUNK):
        yield [("q[]", f"id:={','.join(chunk)}"), ("sort", "id")]


def _attendee_queries(booking_ids: Sequence[str]) -> Iterator[list[tuple[str, str]]]:
    """One query per 100 distinct booking (group appointment) ids."""
    wanted = [str(i) for i in dict.fromkeys(booking_ids) if i]
    for chunk in _chunks(wanted, BOOKING_ID_CHUNK):
        yield [
            ("q[]", f"booking_id:={','.join(chunk)}"),
            ("q[]", "archived_at:*"),
            ("q[]", "cancelled_at:*"),
            ("sort", "id"),
        ]
