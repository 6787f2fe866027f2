"""Birdeye check-in client: one typed outcome per POST, certain 400s caught before they cost a request.

Follows `reference/birdeye-api.md` §2: `POST {base}/v1/customer/checkin?bid=<businessNumber>` with the key
in the `x-api-key` header (never in the URL, where access logs would keep it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.birdeye.outcomes import Accepted, Outcome, Rejected, Retryable, Unauthorized, Unknown
from pipeline.masking import mask
from pipeline.tls import tls_context

CHECKIN_PATH = "/v1/customer/checkin"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_EMAIL_LENGTH = 40

# Birdeye's own messages (reference §2.4), so a locally caught error reads the same as the server's.
MESSAGES = {
    "1142": "Customer name cannot be blank",
    "1086": "Customer email id cannot be blank.",
    "1087": "Customer email id is invalid.",
    "1088": "Customer email id cannot be more than 40 characters.",
    "1055": "Not a valid US phone number.",
    "1170": "SMS Alert flag is invalid. Valid values are 0 or 1.",
    "1246": "Customer email or phone number is required.",
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_US_NATIONAL = re.compile(r"^\d{10}$")
# The blueprint's own example `{"customerId":”673356544”}` is not valid JSON; read the id from the text then.
_CUSTOMER_ID_TEXT = re.compile(r'"customerId"\s*:\s*["\u201c\u201d]?(\d+)')


def birdeye_phone(e164: str) -> str:
    """The `phone` value Birdeye gets for an E.164 number.

    The check-in documents only US forms (`4081231234`, 1055 "Not a valid US phone number") and has no
    country-code field, so a North American number goes as its 10 national digits, exactly the documented
    form. Any other country keeps its E.164 form: stripping `+61` would turn an Australian mobile into an
    ambiguous or wrong US-looking number, and the `+` prefix is the only way the endpoint learns the country.
    """
    if e164.startswith("+1") and len(e164) == 12:
        return e164[2:]
    return e164


@dataclass(frozen=True)
class Employee:
    """Who saw the patient, for Birdeye's attribution (`employees` on the check-in, reference §2.2): the
    visit's Cliniko practitioner, sent only with an email (Birdeye identifies employees by it)."""

    email: str = field(repr=False)
    first_name: str | None = None
    last_name: str | None = None

    def body(self) -> dict[str, str]:
        entry = {"emailId": self.email, "firstName": self.first_name, "lastName": self.last_name}
        return {key: value for key, value in entry.items() if value is not None}


@dataclass(frozen=True)
class CheckIn:
    """One review request for Birdeye: the SPEC §5 body plus the business it is for."""

    business_number: str
    name: str | None
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    sms_enabled: int = 0
    external_id: str | None = None
    additional_params: dict[str, str] | None = None
    employees: tuple[Employee, ...] = ()

    @classmethod
    def for_appointment(
        cls,
        *,
        business_number: str,
        appointment_id: str,
        patient_id: str,
        patient_name: str | None,
        location_name: str | None,
        channels: str,
        email: str | None,
        sms_phone: str | None,
        employee: Employee | None = None,
    ) -> CheckIn:
        """Build the check-in of one eligible appointment; only the allowed channels' addresses go out, and
        `employee` (the visit's practitioner, when it has a usable email) as the one entry of `employees`."""
        allowed = {c.strip() for c in channels.split(",")}
        phone = birdeye_phone(sms_phone) if "sms" in allowed and sms_phone else None
        params = {"appointmentId": str(appointment_id)}
        if location_name:
            params = {"location": location_name, **params}
        return cls(
            business_number=str(business_number),
            name=patient_name,
            email=email if "email" in allowed else None,
            phone=phone,
            sms_enabled=1 if phone else 0,
            external_id=f"cliniko-patient-{patient_id}",
            additional_params=params,
            employees=(employee,) if employee is not None else (),
        )

    def body(self) -> dict[str, Any]:
        """The JSON body, without the fields that are None."""
        body = {
            "name": self.name,
            "emailId": self.email,
            "phone": self.phone,
            "smsEnabled": self.sms_enabled,
            "externalId": self.external_id,
            "additionalParams": self.additional_params,
            "employees": [employee.body() for employee in self.employees] or None,
        }
        return {key: value for key, value in body.items() if value is not None}

    def local_rejection(self) -> Rejected | None:
        """The 400 Birdeye would certainly answer, or None. Mirrors its checks in the emulator's order."""
        email = (self.email or "").strip()
        phone = (self.phone or "").strip()

        def rejected(code: str) -> Rejected:
            return Rejected(status=400, code=code, message=MESSAGES[code], local=True)

        if not (self.name or "").strip():
            return rejected("1142")
        if not email and not phone:
            return rejected("1246")
        if email and not _EMAIL.match(email):
            return rejected("1087")
        if len(email) > MAX_EMAIL_LENGTH:
            return rejected("1088")
        if phone and not (_E164.match(phone) or _US_NATIONAL.match(re.sub(r"[\s\-().]", "", phone))):
            return rejected("1055")
        if self.sms_enabled not in (0, 1):
            return rejected("1170")
        return None


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from either envelope, `{code, message}` or legacy `{errorCode, errorMessage}`."""
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        code = payload.get("code", payload.get("errorCode"))
        message = payload.get("message", payload.get("errorMessage"))
        if code is not None or message is not None:
            return (str(code) if code is not None else None, str(message or response.reason_phrase))
    text = response.text.strip()[:200]
    return None, text or response.reason_phrase


def _customer_id(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        found = _CUSTOMER_ID_TEXT.search(response.text)
        return found.group(1) if found else None
    if isinstance(payload, dict) and payload.get("customerId") not in (None, ""):
        value = payload["customerId"]
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return None


class BirdeyeClient:
    """Posts check-ins for one Birdeye API key. Thread-safe: the sink shares one client across its workers."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_connections: int = 10,
    ) -> None:
        if not api_key:
            raise ValueError("a Birdeye API key is required (set `birdeye.api.key` on the group or mapping)")
        if not base_url:  # the caller's settings say where Birdeye is; the client never reads the environment
            raise ValueError("a Birdeye base URL is required (pass settings.birdeye_base_url)")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        # Expire idle connections before the server does (uvicorn: 5 s), so a reused socket is never one the
        # server is closing: a request lost that way would be an `Unknown`, not a clean retry.
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=2.0
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=tls_context(),
            timeout=timeout,
            limits=limits,
            headers={"Accept": "application/json", "User-Agent": "cliniko-reviews"},
        )

    def __repr__(self) -> str:
        return f"BirdeyeClient(base_url={self.base_url!r}, api_key={mask(self._api_key)!r})"

    def check_in(self, check_in: CheckIn) -> Outcome:
        """POST one check-in and classify the answer. Never raises for HTTP or network trouble."""
        rejected = check_in.local_rejection()
        if rejected is not None:
            return rejected
        try:
            response = self._http.post(
                CHECKIN_PATH,
                params={"bid": check_in.business_number},
                json=check_in.body(),
                headers={"x-api-key": self._api_key},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Retryable(reason=f"could not connect to {self.base_url}: {type(exc).__name__}: {exc}")
        except httpx.TimeoutException as exc:
            return Unknown(reason=f"no answer after sending ({type(exc).__name__}); Birdeye may have it")
        except httpx.TransportError as exc:
            return Unknown(reason=f"connection lost after sending ({type(exc).__name__}: {exc})")
        return self.classify(response)

    @staticmethod
    def classify(response: httpx.Response) -> Outcome:
        """Map a complete HTTP answer to an outcome."""
        status = response.status_code
        if 200 <= status < 300:
            return Accepted(customer_id=_customer_id(response))
        code, message = _error_fields(response)
        if status == 429 or status >= 500:
            label = f"HTTP {status}" + (f" code {code}" if code else "")
            return Retryable(reason=f"{label}: {message}", status=status, code=code)
        if status in (401, 403):
            return Unauthorized(status=status, code=code, message=message)
        return Rejected(status=status, code=code, message=message)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BirdeyeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
