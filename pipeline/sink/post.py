"""Post a partition's claimed review requests to Birdeye, at most once each, through the ledger.

The models claim a partition's eligible candidates as `pending` ledger rows when they decide them
(`sql/sink/claims.sql`); this module posts them. One run:
1. takes a lease (`pipeline/leases.py`) that tells other runs it is alive;
2. in one transaction: turns the `sending` rows of runs that are gone into `uncertain`, and fails the rows
   Birdeye would certainly answer 400 (no name, no address; `failed`, never posted);
3. repeatedly takes a small batch of due `pending` rows (`sending`, committed, connection closed), posts them
   on `concurrency` threads under the key's rate (shared by every process on the machine), and records the
   batch's outcomes in one transaction. A retryable answer goes back to `pending` with a jittered, capped
   backoff (`next_attempt_at`) until `max_attempts` POSTs were made, then `failed` with the last reason.
   Birdeye refusing the key (401/403) stops the run: the refused rows and those not yet posted stay
   `pending` (Birdeye processed nothing) and `BirdeyeKeyRefused` is raised, so the run fails and is retried.

With `database_url` (`DATABASE_URL`) the ledger, the leases and the key's rate live in PostgreSQL, shared by
every host; the run ends by copying its rows' outcomes into the warehouse's copy of the ledger.

A SIGKILL therefore loses at most the one batch in flight, to `uncertain`. A batch is `batch_size` rows, or by
default about half a second of posting at the pace of the previous batch (see `adaptive_batch_size` and
`benchmarks/bench_sink.py`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import psycopg2

from pipeline.birdeye import (
    Accepted,
    BirdeyeClient,
    CheckIn,
    Employee,
    Outcome,
    Rejected,
    Retryable,
    Unauthorized,
    Unknown,
)
from pipeline.leases import Lease, holder_alive
from pipeline.masking import mask
from pipeline.ratelimit import shared_rate_limiter
from pipeline.sink import ledger
from pipeline.warehouse import connect

TARGET_BATCH_SECONDS = 0.5
MAX_BATCH = 256
ROW_FIELDS = (
    "business_number",
    "appointment_id",
    "patient_id",
    "channels",
    "sms_phone",
    "email",
    "patient_name",
    "location_name",
)
# The visit's practitioner, for the check-in's `employees`: optional, a row without them sends none.
EMPLOYEE_FIELDS = ("practitioner_email", "practitioner_first_name", "practitioner_last_name")


class CheckInPoster(Protocol):
    """What the sink needs from a client: `BirdeyeClient` is one."""

    def check_in(self, check_in: CheckIn) -> Outcome: ...

    def close(self) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential from `base`, capped at `cap`, with equal jitter so parallel retries spread out."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


def _text(value: Any) -> str | None:
    """A present, non-blank text value, else None (a DataFrame row has NaN where the table has null)."""
    return value.strip() or None if isinstance(value, str) else None


def employee_for_row(row: Mapping[str, Any]) -> Employee | None:
    """The visit's practitioner as a Birdeye employee (see `EMPLOYEE_FIELDS`), or None without an email: the
    models keep only an email Birdeye can take (`sql/macros/usable_email.sql`)."""
    email = _text(row.get("practitioner_email"))
    if email is None:
        return None
    return Employee(
        email=email,
        first_name=_text(row.get("practitioner_first_name")),
        last_name=_text(row.get("practitioner_last_name")),
    )


def check_in_for_row(row: Mapping[str, Any]) -> CheckIn:
    """The Birdeye check-in of one eligible row (see `ROW_FIELDS`, and the optional `EMPLOYEE_FIELDS`)."""
    return CheckIn.for_appointment(
        business_number=str(row["business_number"]),
        appointment_id=str(row["appointment_id"]),
        patient_id=str(row["patient_id"]),
        patient_name=row.get("patient_name"),
        location_name=row.get("location_name"),
        channels=row["channels"],
        email=row.get("email"),
        sms_phone=row.get("sms_phone"),
        employee=employee_for_row(row),
    )


def _result(
    key: tuple[str, str], attempts: int, outcome: Outcome, max_attempts: int, backoff: Callable[[int], float]
) -> ledger.Result:
    bn, appointment = key
    now = _now()
    match outcome:
        case Accepted(customer_id=customer_id):
            return ledger.Result(bn, appointment, "sent", customer_id=customer_id, sent_at=now)
        case Unauthorized(status=status, code=code, message=message):
            reason = (
                f"Birdeye refused the API key (HTTP {status}): {message}; not processed, posted again later"
            )
            return ledger.Result(bn, appointment, "pending", code or f"http_{status}", reason, refused=True)
        case Rejected(status=status, code=code, message=message):
            return ledger.Result(bn, appointment, "failed", code or f"http_{status}", message)
        case Retryable(reason=reason, status=status, code=code):
            error_code = code or (f"http_{status}" if status else "connect_error")
            if attempts < max_attempts:
                due = now + timedelta(seconds=backoff(attempts))
                return ledger.Result(bn, appointment, "pending", error_code, reason, next_attempt_at=due)
            message = f"gave up after {attempts} attempts: {reason}"
            return ledger.Result(bn, appointment, "failed", error_code, message)
        case Unknown(reason=reason):
            return ledger.Result(bn, appointment, "uncertain", "no_response", reason)
    raise TypeError(f"not a Birdeye outcome: {outcome!r}")


def reap_dead_runs(warehouse_path: Path | str, database_url: str | None = None) -> int:
    """Turn the `sending` rows of every run that is gone into `uncertain`; returns how many."""
    with ledger_connection(warehouse_path, database_url) as con:
        return _reap(con, leases_of(warehouse_path, database_url))


def leases_of(warehouse_path: Path | str, database_url: str | None) -> Path | str:
    """Where posting runs keep their leases: where the ledger whose rows they hold is (PostgreSQL), or
    beside the warehouse."""
    path = Path(warehouse_path)
    return database_url or path.with_name(path.name + ".sink-runs")


@contextmanager
def ledger_connection(
    warehouse_path: Path | str | None, database_url: str | None
) -> Iterator[ledger.Connection]:
    """A short connection to the ledger: PostgreSQL's with `database_url` (autocommit, one of the process's
    idle ones), else the group's warehouse (its lock held until the block ends)."""
    if database_url is None:
        if warehouse_path is None:
            raise ValueError("a ledger needs a warehouse file, or a database URL for PostgreSQL's")
        with connect(warehouse_path) as con:
            ledger.ensure_ledger(con)
            yield con
        return
    from pipeline.postgres import give_back, take

    con = take(database_url)
    try:
        con.autocommit = True
        yield con
    finally:
        give_back(database_url, con)


@contextmanager
def _copied_to_warehouse(
    warehouse_path: Path | str, database_url: str | None, keys: Sequence[tuple[str, str]]
) -> Iterator[None]:
    """With PostgreSQL's ledger, `keys`' rows are copied into the warehouse once the block ends, however it
    ends: the copy its models and the analysts read."""
    try:
        yield
    finally:
        if database_url is not None:
            with ledger_connection(warehouse_path, database_url) as shared, connect(warehouse_path) as con:
                ledger.ensure_ledger(con)
                ledger.copy_rows(shared, con, ledger.KEY_ROWS, ledger.key_params(keys))


def _reap(con: ledger.Connection, leases: Path | str) -> int:
    dead = [r for r in ledger.sending_run_ids(con) if r is None or not holder_alive(leases, r)]
    return sum(ledger.mark_run_died(con, run_id, _now()) for run_id in dead)


class BirdeyeKeyRefused(RuntimeError):
    """Birdeye answered 401/403 for a partition's key: posting stopped, the unposted rows stay `pending`."""


def post_review_requests(
    warehouse_path: Path | str,
    rows: Iterable[Mapping[str, Any]],
    *,
    api_key: str | None,
    rate_limit_dir: Path,
    database_url: str | None = None,
    concurrency: int = 8,
    rate_per_second: float = 10.0,
    max_attempts: int = 5,
    batch_size: int | None = None,
    base_url: str | None = None,
    client_factory: Callable[[], CheckInPoster] | None = None,
    burst: int = 1,
    backoff_base_seconds: float = 0.5,
    backoff_cap_seconds: float = 30.0,
) -> dict[str, int]:
    """Post the `pending` ledger rows among `rows` (a partition's eligible rows, with contact details);
    returns the counts by status of `rows`' ledger entries after the run.

    `rows` are dicts with the keys of `ROW_FIELDS`; a row the ledger does not hold (never claimed) is never
    posted. Rows another live run is posting are left to it and counted as `sending`. The key's rate,
    `rate_per_second` with bursts of `burst`, holds across every process that posts with it (a budget file in
    `rate_limit_dir`, or in PostgreSQL across hosts with `database_url`). Raises `BirdeyeKeyRefused` when
    Birdeye refuses the key.
    """
    if concurrency < 1 or max_attempts < 1:
        raise ValueError(f"concurrency and max_attempts must be >= 1, got {concurrency} and {max_attempts}")
    by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        missing = [name for name in ROW_FIELDS if name not in row]
        if missing:
            raise KeyError(f"eligible row lacks {missing}; expected the keys {list(ROW_FIELDS)}")
        by_key.setdefault((str(row["business_number"]), str(row["appointment_id"])), row)
    keys = list(by_key)
    check_ins = {key: check_in_for_row(row) for key, row in by_key.items()}

    leases = leases_of(warehouse_path, database_url)
    with _copied_to_warehouse(warehouse_path, database_url, keys), Lease(leases) as lease:
        with ledger_connection(warehouse_path, database_url) as con:
            _reap(con, leases)
            certain = [(key, check_in.local_rejection()) for key, check_in in check_ins.items()]
            ledger.fail_unposted(
                con, [(*key, r.code, r.message) for key, r in certain if r is not None], _now()
            )
            if not ledger.next_due(con, keys):
                return ledger.counts(con, keys)
        if not api_key and client_factory is None:
            raise ValueError(
                "a Birdeye API key is required to post (set `birdeye.api.key` on the group or mapping)"
            )
        client = (
            client_factory()
            if client_factory
            else BirdeyeClient(api_key, base_url=base_url, max_connections=concurrency)
        )
        limiter = shared_rate_limiter(
            api_key or "", rate_limit_dir=rate_limit_dir, database_url=database_url, limit=max(burst, 1),
            window_seconds=max(burst, 1) / rate_per_second, service="birdeye", window_margin=0.0,
        )  # fmt: skip

        def post(key: tuple[str, str]) -> Outcome:
            limiter.acquire()
            return client.check_in(check_ins[key])

        def backoff(attempt: int) -> float:
            return backoff_seconds(attempt, backoff_base_seconds, backoff_cap_seconds)

        try:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="birdeye-post") as pool:
                counts, refused = _post_loop(
                    warehouse_path,
                    database_url,
                    keys,
                    lease,
                    batch_size,
                    concurrency,
                    pool,
                    post,
                    max_attempts,
                    backoff,
                )
        finally:
            client.close()
    if refused is not None:
        raise BirdeyeKeyRefused(
            f"Birdeye refused the API key {mask(api_key)} for business {keys[0][0]}: "
            f"{refused.error_message}. "
            f"{counts['pending']} request(s) stay pending and are posted once the key works (fix "
            "`birdeye.api.key` on the group or mapping)."
        )
    return counts


def _post_loop(
    warehouse_path: Path | str,
    database_url: str | None,
    keys: Sequence[tuple[str, str]],
    lease: Lease,
    batch_size: int | None,
    concurrency: int,
    pool: ThreadPoolExecutor,
    post: Callable[[tuple[str, str]], Outcome],
    max_attempts: int,
    backoff: Callable[[int], float],
) -> tuple[dict[str, int], ledger.Result | None]:
    """Take, post, record; the record of one batch and the take of the next share one short connection.

    Returns the counts by status, read in the connection that found nothing left to take, and the first
    refusal of the key (which ends the loop) or None.
    """
    size = batch_size or 2 * concurrency
    results: list[ledger.Result] = []
    while True:
        refused = next((r for r in results if r.refused), None)
        for attempt in (1, 2):
            try:
                with ledger_connection(warehouse_path, database_url) as con:
                    ledger.record(con, results, lease.name, _now())
                    lease.check()  # take no more rows once another run may have judged this one dead
                    claimed = [] if refused else ledger.claim(con, keys, lease.name, size, _now())
                    due = None if claimed or refused else ledger.next_due(con, keys)
                    counts = ledger.counts(con, keys) if not claimed and due is None else None
                break
            except psycopg2.OperationalError:
                # An idle connection the server dropped: recording again is harmless (only rows still
                # `sending` by this run change), so once more on a new connection rather than losing the
                # batch's outcomes to `uncertain`.
                if attempt == 2:
                    raise
        if counts is not None:
            return counts, refused
        results = []
        if not claimed:
            time.sleep(min(max((due - _now()).total_seconds(), 0.01), 5.0))
            continue
        started = time.monotonic()
        outcomes = list(pool.map(post, [(bn, appointment) for bn, appointment, _ in claimed]))
        if batch_size is None:
            size = adaptive_batch_size(len(claimed) / max(time.monotonic() - started, 1e-3), concurrency)
        results = [
            _result((bn, appointment), attempts, outcome, max_attempts, backoff)
            for (bn, appointment, attempts), outcome in zip(claimed, outcomes, strict=True)
        ]


def adaptive_batch_size(posts_per_second: float, concurrency: int) -> int:
    """As many rows as the last batch's pace posts in `TARGET_BATCH_SECONDS`, within [concurrency, MAX_BATCH].

    Each batch costs a DuckDB connection (tens of ms on a busy machine), so a batch must last long
    enough to hide them; and a SIGKILL loses the batch in flight to `uncertain`, so it must stay short. Half
    a second of posting does both: under a 10/s Birdeye limit that is a handful of rows, against a fast
    endpoint at most `MAX_BATCH`.
    """
    return max(concurrency, min(MAX_BATCH, round(posts_per_second * TARGET_BATCH_SECONDS)))
