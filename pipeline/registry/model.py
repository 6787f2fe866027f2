"""What the registry knows without a database: the fixed catalogue, property rules, schedule defaults.

Everything here is a pure function or a constant, so the rules of SPEC §2 can be tested without SQLite
or HTTP.
Every rule failure raises `RegistryError` naming the request field that was wrong and what would be right;
messages never quote a secret value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TypeVar

from pipeline.cliniko.errors import InvalidApiKey
from pipeline.cliniko.shards import DEFAULT_SHARD, KNOWN_SHARDS, shard_of

# The seed's catalogue, field for field (manual: "Fetch information for all the triggers available").
CLINIKO_SOURCE_ID = 118
CLINIKO_TRIGGER_ID = 129
SOURCES: tuple[dict, ...] = (
    {
        "id": CLINIKO_SOURCE_ID,
        "integrationSource": "CLINIKO",
        "sourceCategory": "Healthcare",
        "integrationType": "Birdeye API",
        "integrationPlan": "Standard",
        "oauthEnabled": False,
    },
)
TRIGGERS: tuple[dict, ...] = (
    {
        "id": CLINIKO_TRIGGER_ID,
        "triggerService": "clinikoAppointmentTriggerServiceImpl",
        "displayName": "Cliniko Appointment Trigger",
        "description": "This trigger is used to fetch customer data based on the completed appointments",
        "active": True,
        "integrationTriggerType": {"id": 1, "name": "JOB"},
        "actionGroupId": 1,
        "sourceIdsList": [CLINIKO_SOURCE_ID],
        "triggerName": "Cliniko Appointment Trigger",
        "caseTypeId": 1,
    },
)

CLINIKO_API_KEY = "cliniko.api.key"
BIRDEYE_API_KEY = "birdeye.api.key"
FETCH_DELAY = "customer.fetch.delay"
LOCATION_NAME = "cliniko.location.name"
COOLOFF_DAYS = "customer.cooloff.days"
CATCHUP_DAYS = "customer.catchup.days"
EXCLUDED_TYPES = "cliniko.appointment.types.excluded"
DEFAULT_CATCHUP_DAYS = 7
MAX_CATCHUP_DAYS = 90

GROUP_KEYS = (CLINIKO_API_KEY, BIRDEYE_API_KEY, FETCH_DELAY, COOLOFF_DAYS, CATCHUP_DAYS, EXCLUDED_TYPES)
MAPPING_KEYS = (
    CLINIKO_API_KEY,
    BIRDEYE_API_KEY,
    FETCH_DELAY,
    LOCATION_NAME,
    COOLOFF_DAYS,
    CATCHUP_DAYS,
    EXCLUDED_TYPES,
)
KNOWN_KEYS = MAPPING_KEYS
MAPPING_ONLY_KEYS = frozenset({LOCATION_NAME})

FREQUENCY_UNITS = ("days", "hours")
MAX_FREQUENCY = {"days": 365, "hours": 24 * 365}
DEFAULT_FREQUENCY = (1, "days")
# Rule for the default nextRunTime: the first 06:00 UTC strictly after the mapping is created. One fixed hour
# keeps a fresh registry's runs together and lands after midnight in every Cliniko shard's region but
# Asia-Pacific, where it is the afternoon of the same day: yesterday's appointments are complete either way.
DEFAULT_RUN_TIME_UTC = time(6, 0)

MAX_BUSINESS_NUMBER_DIGITS = 19
_DIGITS = re.compile(r"[0-9]+")


class RegistryError(Exception):
    """A request the registry refuses: `field` names the input, `status` is the HTTP status to answer.

    `message` is written for the API's users (curl, scripts) and may name routes. A refusal a person can meet
    in the dashboard also has a stable `code` and the `details` it is about, so the page can say it in its own
    words (`ERROR_WORDS` in static/dashboard.js) without parsing the message.
    """

    def __init__(
        self,
        field: str,
        message: str,
        status: int = 422,
        *,
        code: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}


def is_secret_key(key: str) -> bool:
    """Every `*.api.key` is a secret, whatever the request's `isSecure` says."""
    return key.endswith(".api.key")


def parse_business_number(value: object, field: str) -> str:
    """A business number is a positive integer; JSON may carry it as a number or a digit string.

    Kept as a digit string everywhere (15+ digits outgrow JavaScript numbers, and it is a partition key).
    """
    if isinstance(value, bool):
        raise RegistryError(
            field, "must be a positive integer (a number or a string of digits), not a boolean"
        )
    if isinstance(value, int) and value < 0:
        raise RegistryError(field, "must be a positive integer, not negative")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        text = value.strip()
    else:
        raise RegistryError(field, "must be a positive integer (a number or a string of digits)")
    text = text.lstrip("0")
    if not text:
        raise RegistryError(field, "must be a positive integer, not 0")
    if len(text) > MAX_BUSINESS_NUMBER_DIGITS:
        raise RegistryError(field, f"must have at most {MAX_BUSINESS_NUMBER_DIGITS} digits")
    return text


def _integer(value: str, field: str, low: int, high: int) -> str:
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise RegistryError(field, f"must be an integer from {low} to {high}, got {value!r}")
    number = int(text)
    if not low <= number <= high:
        raise RegistryError(field, f"must be an integer from {low} to {high}, got {number}")
    return str(number)


def _api_key(key: str, value: str, field: str) -> str:
    if not value or value != value.strip() or any(ch.isspace() for ch in value):
        raise RegistryError(field, f"{key} must be a non-empty value without spaces")
    if key == CLINIKO_API_KEY:
        try:
            shard_of(value)  # the client's own rule, so a key the registry takes is one the client can use
        except InvalidApiKey as error:
            raise RegistryError(
                field,
                f"{key} ends in an unknown shard suffix {error.suffix!r}; a suffix after the last '-' that "
                "looks like a shard (two letters, one or two digits) must be one of "
                f"{', '.join(KNOWN_SHARDS)}; a key without one lives on {DEFAULT_SHARD}",
            ) from None
    return value


def location_names(value: str) -> tuple[str, ...]:
    """The comma-separated Cliniko business names of a mapping, trimmed, in the order given."""
    return tuple(name.strip() for name in value.split(","))


def excluded_type_names(value: str) -> tuple[str, ...]:
    """The comma-separated Cliniko appointment type names of `cliniko.appointment.types.excluded`, trimmed,
    in the order given. A blank value is no name: a mapping sets it to exclude nothing where its group
    excludes some. Matching them against Cliniko is the SQL models' (`int_excluded_appointment_types`)."""
    return location_names(value) if value.strip() else ()


GROUP_LEVEL, MAPPING_LEVEL = "group", "mapping"
V = TypeVar("V")


def effective_properties(group: Mapping[str, V], own: Mapping[str, V]) -> dict[str, tuple[str, V]]:
    """The properties in force for a mapping: its own over its group's (SPEC §2), as key -> (level, value),
    level `group` or `mapping`, in the order of `KNOWN_KEYS`. The one rule of inheritance: the pipeline's
    `MappingConfig` and the admin API's `effectiveProperties` both read it."""
    merged = {key: (GROUP_LEVEL, value) for key, value in group.items() if key not in own}
    merged.update((key, (MAPPING_LEVEL, value)) for key, value in own.items())
    return {key: merged[key] for key in sorted(merged, key=KNOWN_KEYS.index)}


def check_known(key: str, field: str) -> None:
    """Refuse a property key that is not one of `KNOWN_KEYS`; `field` names the input."""
    if key not in KNOWN_KEYS:
        raise RegistryError(field, f"unknown property key {key!r}; known keys: {', '.join(KNOWN_KEYS)}")


def normalize_property(key: str, value: str, *, level: str, field: str) -> str:
    """Check one property against the SPEC §2 rules and return the value to store.

    `level` is "group" or "mapping"; `field` is the request path of the property, used in errors.
    """
    allowed = GROUP_KEYS if level == "group" else MAPPING_KEYS
    check_known(key, f"{field}.propertyKey")
    if key not in allowed:
        raise RegistryError(
            f"{field}.propertyKey",
            f"{key} is a mapping property, not a group property; group keys: {', '.join(GROUP_KEYS)}",
        )
    value_field = f"{field}.propertyValue"
    if is_secret_key(key):
        return _api_key(key, value, value_field)
    if key == FETCH_DELAY:
        return _integer(value, value_field, 0, 365)
    if key == COOLOFF_DAYS:
        return _integer(value, value_field, 0, 3650)
    if key == CATCHUP_DAYS:
        return _integer(value, value_field, 0, MAX_CATCHUP_DAYS)
    if key == EXCLUDED_TYPES:
        if value.strip() and any(not name for name in location_names(value)):
            raise RegistryError(
                value_field,
                f"{key} must be comma-separated Cliniko appointment type names, none blank (or blank to "
                f"exclude none); got {value!r}",
            )
        return ", ".join(excluded_type_names(value))
    names = location_names(value)
    if any(not name for name in names):
        raise RegistryError(
            value_field,
            f"{key} must be one or more comma-separated Cliniko business names, none blank; got {value!r}",
        )
    return ", ".join(names)


@dataclass(frozen=True)
class Frequency:
    value: int
    unit: str

    def as_timedelta(self) -> timedelta:
        return timedelta(days=self.value) if self.unit == "days" else timedelta(hours=self.value)


def parse_frequency(value: object, unit: object, field: str) -> Frequency:
    """A positive whole number of `days` or `hours`, at most a year."""
    if unit not in FREQUENCY_UNITS:
        raise RegistryError(f"{field}.unit", f"must be one of {', '.join(FREQUENCY_UNITS)}")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FREQUENCY[unit]:
        raise RegistryError(f"{field}.value", f"must be an integer from 1 to {MAX_FREQUENCY[unit]} ({unit})")
    return Frequency(value, unit)


def parse_run_time(value: str, field: str) -> datetime:
    """An ISO 8601 timestamp with an offset (or Z), as aware UTC truncated to the second."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RegistryError(field, "must be an ISO 8601 timestamp such as 2026-11-26T06:00:00Z") from None
    if parsed.tzinfo is None:
        raise RegistryError(field, "must carry a time zone offset or Z, e.g. 2026-11-26T06:00:00Z")
    if not 2000 <= parsed.year <= 2999:
        raise RegistryError(field, "must be a time between the years 2000 and 2999")
    return parsed.astimezone(UTC).replace(microsecond=0)


def format_run_time(moment: datetime) -> str:
    """The one text form of a run time, in the database and in responses; sorts like time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_next_run_time(now: datetime) -> datetime:
    """The first `DEFAULT_RUN_TIME_UTC` strictly after `now`."""
    now = now.astimezone(UTC)
    candidate = datetime.combine(now.date(), DEFAULT_RUN_TIME_UTC, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)
