"""Birdeye check-in client. No Dagster, no DuckDB: the sink (`pipeline.sink`) decides what to post."""

from pipeline.birdeye.client import BirdeyeClient, CheckIn, Employee, birdeye_phone
from pipeline.birdeye.outcomes import Accepted, Outcome, Rejected, Retryable, Unauthorized, Unknown

__all__ = [
    "Accepted",
    "BirdeyeClient",
    "CheckIn",
    "Employee",
    "Outcome",
    "Rejected",
    "Retryable",
    "Unauthorized",
    "Unknown",
    "birdeye_phone",
]
