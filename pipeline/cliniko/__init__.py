"""Cliniko API client: shard, auth, pagination, a cross-process rate limit, retries, row shapes, validation.

Knows nothing of Dagster; the ingestion assets call `ClinikoClient` and `validate` and store the result.
`validate` (pandas, pandera) is imported on first use: processes that only fetch start in a fraction of the
time, which matters when several runs start at once on a small machine.
"""

from typing import Any

from pipeline.cliniko.client import ClientStats, ClinikoClient, format_datetime, validate_user_agent
from pipeline.cliniko.errors import (
    ClinikoAuthError,
    ClinikoBadRequest,
    ClinikoError,
    ClinikoForbidden,
    ClinikoRateLimited,
    ClinikoUnavailable,
    InvalidApiKey,
    InvalidUserAgent,
)
from pipeline.cliniko.records import (
    APPOINTMENT_COLUMNS,
    APPOINTMENT_TYPE_COLUMNS,
    ATTENDEE_COLUMNS,
    BUSINESS_COLUMNS,
    GROUP_APPOINTMENT_COLUMNS,
    PATIENT_COLUMNS,
    link_id,
)
from pipeline.cliniko.shards import KNOWN_SHARDS, base_url_for, shard_of

__all__ = [
    "APPOINTMENT_COLUMNS",
    "APPOINTMENT_TYPE_COLUMNS",
    "ATTENDEE_COLUMNS",
    "BUSINESS_COLUMNS",
    "GROUP_APPOINTMENT_COLUMNS",
    "KNOWN_SHARDS",
    "PATIENT_COLUMNS",
    "RESOURCES",
    "SCHEMAS",
    "ClientStats",
    "ClinikoAuthError",
    "ClinikoBadRequest",
    "ClinikoClient",
    "ClinikoError",
    "ClinikoForbidden",
    "ClinikoRateLimited",
    "ClinikoUnavailable",
    "InvalidApiKey",
    "InvalidUserAgent",
    "base_url_for",
    "format_datetime",
    "link_id",
    "shard_of",
    "validate",
    "validate_user_agent",
]


def __getattr__(name: str) -> Any:
    if name in ("RESOURCES", "SCHEMAS", "validate"):
        from pipeline.cliniko import validation

        return getattr(validation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
