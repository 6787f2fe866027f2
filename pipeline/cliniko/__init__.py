"""Cliniko API client: shard, auth, pagination, a cross-process rate limit, retries.

Knows nothing of Dagster nor of DuckDB: the client hands over raw page bodies, which the ingestion assets type
with `pipeline.warehouse.pages.type_pages` and store with `pipeline.warehouse.raw_store.store_records`.
"""

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
from pipeline.cliniko.shards import KNOWN_SHARDS, base_url_for, shard_of

__all__ = [
    "KNOWN_SHARDS",
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
    "shard_of",
    "validate_user_agent",
]
