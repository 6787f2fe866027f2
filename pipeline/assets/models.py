"""The SQL models of `sql/` for one partition: candidates, channels and one restriction reason each."""

import json
from datetime import UTC, datetime

import dagster as dg

from pipeline.assets.ingest import cliniko_patients
from pipeline.assets.resources import PipelineResource
from pipeline.automation.partitions import mapping_day_partitions
from pipeline.cliniko.windows import target_day
from pipeline.warehouse import connect
from pipeline.warehouse.models import CHECKS, build_partition, run_check
from pipeline.warehouse.slices import ensure_tables
from pipeline.warehouse.sql_files import SQL_DIR


def check_description(name: str) -> str:
    """A data check's description is the comment that opens its SQL file."""
    lines = (SQL_DIR / "checks" / f"{name}.sql").read_text().splitlines()
    comment = [line.removeprefix("--").strip() for line in lines if line.startswith("--")]
    return " ".join(comment) or name


def run_started_at(context: dg.AssetExecutionContext) -> datetime:
    """When the run started: appointments that end after it are not candidates yet."""
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else datetime.now(UTC)


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name="models",
    kinds={"duckdb", "sql"},
    deps=[cliniko_patients],
    check_specs=[
        dg.AssetCheckSpec(name, asset="appointment_eligibility", description=check_description(name))
        for name in CHECKS
    ],
)
def appointment_eligibility(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> dg.MaterializeResult:
    """Every candidate appointment of the partition with exactly one outcome: eligible, or the first
    restriction reason that applies (beta, inactive customer, did not arrive, opted out, no contact,
    duplicate patient, cooled off). Built by the plain SQL files of `sql/`; replaces only this partition.

    Metadata counts candidates, eligible and each restriction code, plotted over partitions in the UI.
    """
    day, mapping = pipeline.partition(context)
    params = {
        "business_number": day.business_number,
        "partition_date": day.partition_date,
        "group_id": mapping.group_id,
        "fetch_delay_days": mapping.fetch_delay_days,
        "cooloff_days": mapping.cooloff_days,
        "location_names": list(mapping.location_names),
        "beta": mapping.beta,
        "test": mapping.test,
        "run_started_at": run_started_at(context),
    }
    with connect(pipeline.settings.warehouse_path) as con:
        ensure_tables(con)
        counts = build_partition(con, **params)
        findings = {name: run_check(con, name, params) for name in CHECKS}
    check_results = [
        dg.AssetCheckResult(
            check_name=name,
            passed=not rows,
            metadata={
                "offending_rows": len(rows),
                "sample": dg.MetadataValue.json(json.loads(json.dumps(rows[:5], default=str))),
            },
        )
        for name, rows in findings.items()
    ]
    return dg.MaterializeResult(
        metadata={
            **counts,
            "target_date": target_day(day.partition_date, mapping.fetch_delay_days).isoformat(),
            "test_mapping": mapping.test,
        },
        check_results=check_results,
    )
