"""Review requests -> Birdeye through the at-most-once ledger. DuckDB and HTTP; the Dagster asset wraps it."""

from pipeline.sink.ledger import REQUEUEABLE, STATUSES
from pipeline.sink.post import ROW_FIELDS, BirdeyeKeyRefused, post_review_requests, reap_dead_runs
from pipeline.sink.requeue import requeue

__all__ = [
    "REQUEUEABLE",
    "ROW_FIELDS",
    "STATUSES",
    "BirdeyeKeyRefused",
    "post_review_requests",
    "reap_dead_runs",
    "requeue",
]
