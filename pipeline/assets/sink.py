"""Review requests -> Birdeye through the at-most-once ledger, then the analysts' database."""

from datetime import UTC, datetime

import dagster as dg

from pipeline.assets.models import appointment_eligibility
from pipeline.assets.runs import record_failed_run
from pipeline.assets.specs import column_schema, partition_check
from pipeline.automation.partitions import mapping_day_partitions
from pipeline.automation.resources import BirdeyeResource, RegistryResource, WarehouseResource
from pipeline.automation.sensors import CALENDAR_ALERTS_CHECK, calendar_alerts_result
from pipeline.calendar import store
from pipeline.calendar.alerts import open_alerts, raise_alerts, resolve_alerts
from pipeline.calendar.store import Alert
from pipeline.sink import BirdeyeKeyRefused
from pipeline.warehouse.slices import ensure_tables

ELIGIBLE_ROWS = """
select business_number, appointment_id, patient_id, channels, sms_phone, email, patient_name, location_name,
    practitioner_email, practitioner_first_name, practitioner_last_name
from marts.appointment_eligibility
where business_number = $business_number and partition_date = $partition_date and is_eligible
order by appointment_id
"""

PENDING_ROWS = """
select count(*) from sink.review_request_ledger
where business_number = $business_number and partition_date = $partition_date and status = 'pending'
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
    hooks={record_failed_run},
    metadata={
        "dagster/column_schema": column_schema("sink.review_request_ledger", "sink/review_request_ledger.sql")
    },
    check_specs=[
        partition_check(
            "no_appointment_sent_twice",
            "review_requests",
            "No Cliniko appointment has two `sent` ledger rows, across every mapping of a group.",
        )
    ],
)
def review_requests(
    context: dg.AssetExecutionContext,
    registry: RegistryResource,
    warehouse: WarehouseResource,
    birdeye: BirdeyeResource,
) -> dg.MaterializeResult:
    """Posts the partition's claimed review requests (`pending` ledger rows) to Birdeye's check-in API.

    A request is committed as `sending` before it is posted, `sent` after a 2xx, `failed` on a rejection,
    `uncertain` when the outcome is unknown (never re-posted automatically; see `cliniko-reviews requeue`).
    Test mappings' claims are `dry_run` rows and nothing is posted. If Birdeye refuses the key, the run fails
    and raises an alert; the requests stay `pending` for the retry. Once posted, the run records the partition
    as done (closed, unless the run started before its close time). Metadata counts ledger rows by status.
    """
    day, mapping = registry.partition(context, needs=("appointment_eligibility",))
    settings = warehouse.settings
    params = {"business_number": day.business_number, "partition_date": day.partition_date}
    with warehouse.connect(mapping.group_id) as con:
        ensure_tables(con)
        rows = con.execute(ELIGIBLE_ROWS, params).df().to_dict("records")
        pending = con.execute(PENDING_ROWS, params).fetchone()[0]
    if pending and mapping.birdeye_api_key is None:
        raise dg.Failure(
            f"Mapping {day.business_number} has {pending} review request(s) to post but no birdeye.api.key. "
            "Set it on the group or the mapping; nothing was posted."
        )
    try:
        counts = birdeye.post(
            warehouse.path(mapping.group_id),
            rows,
            api_key=mapping.birdeye_api_key.reveal() if mapping.birdeye_api_key else None,
        )
    except BirdeyeKeyRefused as refused:
        raise_alerts(
            settings.alerts,
            settings.alert_webhook_url,
            [
                Alert(
                    kind="birdeye_auth",
                    key=f"birdeye_auth|{day.business_number}",
                    message=str(refused),
                    business_number=day.business_number,
                    group_id=mapping.group_id,
                    partition_date=day.partition_date,
                )
            ],
        )
        raise dg.Failure(str(refused)) from None
    with warehouse.connect(mapping.group_id) as con, store.shared_runs(settings.database_url) as shared:
        doubles = con.execute(DOUBLE_SENT).fetchall()
        closed = store.record_success(con, context.run.run_id, datetime.now(UTC), shared=shared)
    resolve_alerts(settings.alerts, kinds=["birdeye_auth"], business_numbers=[day.business_number])
    return dg.MaterializeResult(
        metadata={
            "eligible": len(rows),
            **{f"status_{k}": v for k, v in sorted(counts.items())},
            "partition_closed": bool(closed),
        },
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
    hooks={record_failed_run},
    metadata={  # the analysts' main table; docs/analytics.md describes every one
        "dagster/column_schema": column_schema(
            "analytics.restriction_reasons",
            "seeds/restriction_codes.sql",
            "marts/appointment_eligibility.sql",
            "analytics/restriction_reasons.sql",
        ),
        "tables": "restriction_reasons, review_requests, coverage, partition_runs, partition_states, alerts, "
        "restriction_codes, registry_changes, snapshot_info (docs/analytics.md)",
    },
)
def analytics_database(
    context: dg.AssetExecutionContext, registry: RegistryResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """`$DATA_DIR/analytics.duckdb`: the analysts' views `restriction_reasons`, `review_requests`,
    `coverage` (every mapping-day's state: closed, partial, failed, skipped, pending) and `alerts`.

    Exports only the partitions of the mapping's group whose rows changed since that group's last refresh
    (this one, and any that a failed refresh left), as Parquet under `$DATA_DIR/analytics/`, which the views
    read: it costs what changed, not the history, and reads no other group's warehouse. The small file of
    views is rebuilt and swapped in atomically, so an analyst may keep it open (read-only) while runs go on:
    their session never makes a run fail, and a run never breaks their session. Metadata: the rows exported
    per table.
    """
    _, mapping = registry.partition(context)
    counts = warehouse.refresh_analysts_db(registry.get(), group_id=mapping.group_id)
    return dg.MaterializeResult(metadata={"path": str(warehouse.settings.analytics_path), **(counts or {})})


@dg.asset_check(
    asset=analytics_database,
    name=CALENDAR_ALERTS_CHECK,
    description="Warns while the calendar has open alerts (SPEC §8): partitions failing 3 times in a row, "
    "mappings that closed nothing for two due times or cannot be scheduled, Birdeye refusing a key, a jump "
    "in a restriction code's share. The calendar sensor re-evaluates it whenever an alert opens or closes; "
    "the metadata lists them (all: `cliniko-reviews status`, or `alerts` in the analysts' database).",
)
def calendar_alerts(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    passed, metadata = calendar_alerts_result(open_alerts(warehouse.settings.alerts))
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
