"""Review requests -> Birdeye through the at-most-once ledger, then the analysts' snapshot."""

import dagster as dg

from pipeline.assets.models import appointment_eligibility
from pipeline.assets.resources import PipelineResource
from pipeline.automation.partitions import mapping_day_partitions
from pipeline.sink import post_review_requests
from pipeline.warehouse import connect
from pipeline.warehouse.slices import ensure_tables
from pipeline.warehouse.snapshot import refresh_analytics

ELIGIBLE_ROWS = """
select business_number, appointment_id, partition_date, target_date, group_id, patient_id, channels,
       sms_phone, email, patient_name, location_name
from marts.appointment_eligibility
where business_number = $business_number and partition_date = $partition_date and is_eligible
order by appointment_id
"""

DOUBLE_SENT = """
select group_id, appointment_id, count(*) as sent_rows
from sink.review_request_ledger
where status = 'sent'
group by all
having count(*) > 1
"""


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name="birdeye",
    kinds={"duckdb"},
    deps=[appointment_eligibility],
    check_specs=[
        dg.AssetCheckSpec(
            "no_appointment_sent_twice",
            asset="review_requests",
            description="No Cliniko appointment has two `sent` ledger rows, across every mapping of a group.",
        )
    ],
)
def review_requests(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    """Posts the partition's eligible appointments to Birdeye's check-in API through the ledger.

    A request is committed as `sending` before it is posted, `sent` after a 2xx, `failed` on a rejection,
    `uncertain` when the outcome is unknown (never re-posted automatically; see `cliniko-reviews requeue`).
    Test mappings record `dry_run` rows and post nothing. Metadata counts ledger rows by status.
    """
    day, mapping = pipeline.partition(context)
    settings = pipeline.settings
    params = {"business_number": day.business_number, "partition_date": day.partition_date}
    with connect(settings.warehouse_path) as con:
        ensure_tables(con)
        rows = con.execute(ELIGIBLE_ROWS, params).df().to_dict("records")
    if not mapping.test and rows and mapping.birdeye_api_key is None:
        raise dg.Failure(
            f"Mapping {day.business_number} has {len(rows)} eligible request(s) but no birdeye.api.key. "
            "Set it on the group or the mapping; nothing was posted."
        )
    counts = post_review_requests(
        settings.warehouse_path,
        rows,
        api_key=mapping.birdeye_api_key.reveal() if mapping.birdeye_api_key else "",
        base_url=settings.birdeye_base_url,
        concurrency=settings.birdeye_concurrency,
        rate_per_second=settings.birdeye_rate_limit_per_second,
        dry_run=mapping.test,
    )
    with connect(settings.warehouse_path) as con:
        doubles = con.execute(DOUBLE_SENT).fetchall()
    return dg.MaterializeResult(
        metadata={"eligible": len(rows), **{f"status_{k}": v for k, v in sorted(counts.items())}},
        check_results=[
            dg.AssetCheckResult(
                check_name="no_appointment_sent_twice",
                passed=not doubles,
                metadata={"appointments_sent_twice": len(doubles)},
            )
        ],
    )


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name="analytics",
    kinds={"duckdb"},
    deps=[review_requests],
)
def analytics_database(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    """`$DATA_DIR/analytics.duckdb`: the analysts' views `restriction_reasons` and `review_requests`.

    Rebuilt in a new file and swapped in atomically, so an analyst may keep it open (read-only) while runs
    go on: their session never makes a run fail, and a run never breaks their session.
    """
    settings = pipeline.settings
    counts = refresh_analytics(settings.warehouse_path, settings.analytics_path)
    return dg.MaterializeResult(metadata={"path": str(settings.analytics_path), **(counts or {})})
