"""A local Birdeye check-in endpoint, built to the contract of `reference/birdeye-api.md` §2.8.

It answers like Birdeye (routes, auth codes, validation order, both error envelopes, 429 code 89 from a token
bucket per key) and misbehaves on purpose, deterministically from a seed: 5xx answers, added latency, and
connections dropped *after* the check-in was processed, the case that forces the sink's `uncertain` status.
Every check-in it receives is recorded, in memory and optionally in a JSONL file flushed per request, so a
test in another process can count what Birdeye "received" (`employees` included: its shape is checked after
the documented validations, see `EMPLOYEES_INVALID`).

The drop relies on uvicorn: an ASGI callable that returns a non-None value makes uvicorn close the connection
without writing a response. Serve the app with uvicorn directly (as `running_birdeye` and `serve_birdeye` do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import Receive, Scope, Send

DEFAULT_API_KEY = "sandbox-birdeye-key"
CHECKIN_ROUTE = "/resources/v1/customer/checkin"
CHECKIN_V2_ROUTE = "/resources/v1/contact/external/preferences/checkin"

# Birdeye documents `employees` (a list of `{emailId}`, with `firstName`/`lastName` in its curl example) but
# no error for a malformed one [U]: the emulator refuses one with a 400 of its own code, so a sink that sent a
# bad entry is caught and the code says it is the emulator's.
EMPLOYEES_INVALID = 99001
ERRORS: dict[int, tuple[int, str]] = {
    1142: (400, "Customer name cannot be blank"),
    1086: (400, "Customer email id cannot be blank."),
    1087: (400, "Customer email id is invalid."),
    1088: (400, "Customer email id cannot be more than 40 characters."),
    1055: (400, "Not a valid US phone number."),
    1170: (400, "SMS Alert flag is invalid. Valid values are 0 or 1."),
    1246: (400, "Customer email or phone number is required."),
    5008: (400, "RequestBody not found"),
    1161: (401, "Invalid API key"),
    1167: (401, "API key is missing"),
    1175: (401, "No business found with the given id"),
    89: (429, "Rate limit exceeded"),
    EMPLOYEES_INVALID: (400, "Employees must be a list of {emailId, firstName, lastName}, emailId valid."),
}

# Injected 5xx answers look like a load balancer's, not Birdeye's: plain text, no business code.
_GATEWAY_503 = "Service Temporarily Unavailable"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_US_PHONE = re.compile(r"^\+?1?\d{10}$")
_INTERNATIONAL_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class BirdeyeEmulatorConfig:
    """How the emulator behaves. Defaults: one key allowed for every business, no limits, no faults.

    `keys` maps an API key to the business numbers (`bid`) it may post for; None means any business.
    Fault fractions are drawn from `seed` and the request itself (business, body, how many times that body was
    seen), so a run with the same inputs gets the same faults whatever the arrival order.
    """

    keys: Mapping[str, frozenset[str] | None] = field(default_factory=lambda: {DEFAULT_API_KEY: None})
    enterprises: Mapping[str, str] = field(default_factory=dict)  # bid -> enterprise id; default: the bid
    sms_disabled_businesses: frozenset[str] = frozenset()  # these require an email (1086) even with a phone
    unknown_business_status: int = 401  # 404 in the 2014/2021 docs
    accept_query_key: bool = False  # the pre-2026 `?api_key=` form
    rate_per_second: float | None = None
    burst: int = 10
    latency_seconds: float = 0.0
    server_error_rate: float = 0.0
    server_error_first: int = 0  # a 5xx burst: the first N authorised requests get 503
    drop_rate: float = 0.0
    legacy_envelope: bool = False  # `{errorCode, errorMessage}` instead of `{code, message}`
    seed: int = 0
    record_path: Path | None = None


@dataclass(frozen=True)
class CheckinRecord:
    """One request to a check-in route and what the emulator did with it.

    `delivered` is True when the check-in was processed (200, or dropped after processing): what a real
    Birdeye would act on. A dropped one has `status` None.
    """

    seq: int
    received_at: str
    route: str
    bid: str | None
    key_suffix: str | None
    body: Any
    status: int | None
    code: int | None
    delivered: bool
    customer_id: int | None

    @property
    def employees(self) -> list[dict[str, Any]] | None:
        """The check-in's `employees` as received, or None when it had none."""
        if isinstance(self.body, dict):
            return self.body.get("employees")
        return None

    @property
    def appointment_id(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("additionalParams"), dict):
            return self.body["additionalParams"].get("appointmentId")
        return None


def read_records(path: Path | str) -> list[CheckinRecord]:
    """The records a (possibly other-process) emulator appended to `record_path`."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [CheckinRecord(**json.loads(line)) for line in lines if line.strip()]


class _TokenBucket:
    """Birdeye's per-key limit. Only the event loop touches it, so it needs no lock."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, float(max(burst, 1))
        self.tokens, self.stamp = self.capacity, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _digits(phone: str) -> str:
    return re.sub(r"[\s\-().]", "", phone)


def validation_error(body: Mapping[str, Any], *, sms_business: bool = True) -> int | None:
    """Birdeye's 400 code for a check-in body, in the contract's order, or None when it is valid."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return 1142
    email = body.get("emailId")
    phone = body.get("phone")
    email = email.strip() if isinstance(email, str) else ""
    phone = phone.strip() if isinstance(phone, str) else ""
    if not sms_business and not email:
        return 1086
    if not email and not phone:
        return 1246
    if email and not _EMAIL.match(email):
        return 1087
    if len(email) > 40:
        return 1088
    if phone and not (_US_PHONE.match(_digits(phone)) or _INTERNATIONAL_PHONE.match(_digits(phone))):
        return 1055
    sms = body.get("smsEnabled", 1)
    if isinstance(sms, bool) or sms not in (0, 1):
        return 1170
    if "employees" in body and not _valid_employees(body["employees"]):
        return EMPLOYEES_INVALID
    return None


def _valid_employees(employees: Any) -> bool:
    """A list of objects, each with a well-formed `emailId` and, if given, text `firstName`/`lastName`."""
    if not isinstance(employees, list):
        return False
    for employee in employees:
        if not isinstance(employee, dict) or set(employee) - {"emailId", "firstName", "lastName"}:
            return False
        email = employee.get("emailId")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            return False
        if any(k in employee and not isinstance(employee[k], str) for k in ("firstName", "lastName")):
            return False
    return True


class BirdeyeEmulator:
    """The ASGI app. Build it with `create_birdeye_app`; read what it received with `records()`."""

    def __init__(self, config: BirdeyeEmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._records: list[CheckinRecord] = []
        self._buckets: dict[str, _TokenBucket] = {}
        self._seen: dict[str, int] = {}
        self._contacts: dict[tuple[str, str], int] = {}
        self._authorised = 0
        self._file = None
        if config.record_path is not None:
            Path(config.record_path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(config.record_path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the app)

    def records(self) -> list[CheckinRecord]:
        with self._lock:
            return list(self._records)

    def delivered(self) -> list[CheckinRecord]:
        return [r for r in self.records() if r.delivered]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            return None
        request = Request(scope, receive)
        if request.method != "POST" or scope["path"] not in (CHECKIN_ROUTE, CHECKIN_V2_ROUTE):
            response = PlainTextResponse("Not Found", status_code=404)  # like a gateway: not JSON
            await response(scope, receive, send)
            return None
        raw = await request.body()
        if self.config.latency_seconds:
            await asyncio.sleep(self.config.latency_seconds)
        status, payload, delivered, customer_id = self._handle(request, raw)
        if delivered and status is None:
            return "dropped after processing"  # uvicorn closes the connection without a response
        if payload is _GATEWAY_503:
            response = PlainTextResponse(payload, status_code=status)
        else:
            response = JSONResponse(payload, status_code=status)
        await response(scope, receive, send)
        return None

    def _handle(self, request: Request, raw: bytes) -> tuple[int | None, Any, bool, int | None]:
        route = request.url.path
        v2 = route == CHECKIN_V2_ROUTE
        bid = request.headers.get("x-business-number") if v2 else request.query_params.get("bid")
        key = request.headers.get("x-api-key")
        if key is None and self.config.accept_query_key:
            key = request.query_params.get("api_key")
        try:
            body: Any = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = raw.decode("utf-8", "replace")

        def finish(status: int | None, code: int | None, *, delivered: bool = False, customer_id=None):
            self._record(route, bid, key, body, status, code, delivered, customer_id)
            if code is not None:
                return status, self._error(code), delivered, customer_id
            return status, {"customerId": customer_id}, delivered, customer_id

        if not key:
            return finish(401, 1167)
        if key not in self.config.keys:
            return finish(401, 1161)
        allowed = self.config.keys[key]
        if not bid or (allowed is not None and bid not in allowed):
            status = self.config.unknown_business_status
            self._record(route, bid, key, body, status, 1175, False, None)
            return status, self._error(1175), False, None
        if self.config.rate_per_second is not None:
            bucket = self._buckets.setdefault(
                key, _TokenBucket(self.config.rate_per_second, self.config.burst)
            )
            if not bucket.take():
                return finish(429, 89)
        fingerprint = f"{bid}|{json.dumps(body, sort_keys=True)}"
        with self._lock:
            nth = self._seen.get(fingerprint, 0)
            self._seen[fingerprint] = nth + 1
            self._authorised += 1
            in_burst = self._authorised <= self.config.server_error_first
        if in_burst or self._draw("5xx", fingerprint, nth) < self.config.server_error_rate:
            self._record(route, bid, key, body, 503, None, False, None)
            return 503, _GATEWAY_503, False, None
        if not isinstance(body, dict):
            return finish(400, 5008)
        code = validation_error(body, sms_business=bid not in self.config.sms_disabled_businesses)
        if code is not None:
            return finish(400, code)
        customer_id = self._customer_id(bid, body)
        if self._draw("drop", fingerprint, nth) < self.config.drop_rate:
            return finish(None, None, delivered=True, customer_id=customer_id)
        return finish(200, None, delivered=True, customer_id=customer_id)

    def _draw(self, kind: str, fingerprint: str, nth: int) -> float:
        digest = hashlib.sha256(f"{self.config.seed}|{kind}|{fingerprint}|{nth}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _customer_id(self, bid: str, body: Mapping[str, Any]) -> int:
        """The same contact (by email, phone or external id within an enterprise) keeps one id: an upsert."""
        enterprise = self.config.enterprises.get(bid, bid)
        identities = []
        if isinstance(body.get("emailId"), str) and body["emailId"].strip():
            identities.append("email:" + body["emailId"].strip().lower())
        if isinstance(body.get("phone"), str) and body["phone"].strip():
            identities.append("phone:" + _digits(body["phone"]).lstrip("+"))
        if body.get("externalId"):
            identities.append(f"external:{body['externalId']}")
        with self._lock:
            known = [self._contacts[(enterprise, i)] for i in identities if (enterprise, i) in self._contacts]
            if known:
                customer_id = known[0]
            else:
                digest = hashlib.sha256(f"{enterprise}|{identities[0]}".encode()).digest()
                customer_id = 100_000_000 + int.from_bytes(digest[:6], "big") % 900_000_000
            for identity in identities:
                self._contacts.setdefault((enterprise, identity), customer_id)
        return customer_id

    def _error(self, code: int) -> dict[str, Any]:
        message = ERRORS[code][1]
        if self.config.legacy_envelope:
            return {"errorCode": code, "errorMessage": message}
        return {"code": code, "message": message}

    def _record(self, route, bid, key, body, status, code, delivered, customer_id) -> None:
        with self._lock:
            record = CheckinRecord(
                seq=len(self._records) + 1,
                received_at=datetime.now(UTC).isoformat(),
                route=route,
                bid=bid,
                key_suffix=key[-4:] if key else None,
                body=body,
                status=status,
                code=code,
                delivered=delivered,
                customer_id=customer_id,
            )
            self._records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(asdict(record)) + "\n")
                self._file.flush()


def create_birdeye_app(config: BirdeyeEmulatorConfig | None = None) -> BirdeyeEmulator:
    """The emulator as an ASGI app (serve it with uvicorn directly, see the module docstring)."""
    return BirdeyeEmulator(config or BirdeyeEmulatorConfig())


@dataclass
class RunningBirdeye:
    """A live emulator: `base_url` goes where `BIRDEYE_BASE_URL` would (it ends in `/resources`)."""

    base_url: str
    app: BirdeyeEmulator

    def records(self) -> list[CheckinRecord]:
        return self.app.records()

    def delivered(self) -> list[CheckinRecord]:
        return self.app.delivered()


def _uvicorn_config(app: BirdeyeEmulator) -> uvicorn.Config:
    return uvicorn.Config(
        app, log_level="critical", access_log=False, lifespan="off", proxy_headers=False, timeout_keep_alive=5
    )


@contextlib.contextmanager
def running_birdeye(
    config: BirdeyeEmulatorConfig | None = None, host: str = "127.0.0.1"
) -> Iterator[RunningBirdeye]:
    """Serve the emulator on a free loopback port in a background thread for the `with` block."""
    app = create_birdeye_app(config)
    server = uvicorn.Server(_uvicorn_config(app))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="birdeye-emulator"
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Birdeye emulator did not start")
        time.sleep(0.01)
    try:
        yield RunningBirdeye(base_url=f"http://{host}:{port}/resources", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.close()


def serve_birdeye(
    config: BirdeyeEmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8302
) -> None:
    """Serve the emulator in the foreground (port 0 picks a free one); prints the base URL once listening."""
    app = create_birdeye_app(config)
    server = uvicorn.Server(_uvicorn_config(app))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections made from now on wait in the backlog until uvicorn accepts them
    print(f"http://{host}:{sock.getsockname()[1]}/resources", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        app.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m pipeline.sandbox.birdeye_emulator`: a stand-alone emulator, e.g. for a benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=None, help="requests per second per key")
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=Path, default=None, help="JSONL file of every check-in received")
    args = parser.parse_args(argv)
    config = BirdeyeEmulatorConfig(
        rate_per_second=args.rate,
        burst=args.burst,
        latency_seconds=args.latency_ms / 1000,
        seed=args.seed,
        record_path=args.record,
    )
    serve_birdeye(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
