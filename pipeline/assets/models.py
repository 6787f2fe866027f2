"""The SQL models of `sql/` for one partition: candidates, channels, one restriction reason each, and the
claims of the eligible ones in the ledger."""

import json
from datetime import date

import dagster as dg
import duckdb

from pipeline.assets.ingest import (
    check_excluded_appointment_types,
    cliniko_appointment_types,
    cliniko_patients,
)
from pipeline.assets.runs import record_failed_run, started_at
from pipeline.assets.specs import column_schema, partition_check
from pipeline.automation.partitions import mapping_day_partitions
from pipeline.automation.resources import RegistryResource, WarehouseResource
from pipeline.calendar import rules, store
from pipeline.calendar.alerts import raise_alerts, resolve_alerts
from pipeline.calendar.store import Alert
from pipeline.registry import MappingConfig
from pipeline.sink.ledger import shared_decision
from pipeline.warehouse.models import CHECKS, BuiltByNewerRun, build_partition, ensure_models, run_check
from pipeline.warehouse.slices import ensure_tables
from pipeline.warehouse.sql_files import SQL_DIR

# A data check whose findings are a warning for people (an alert), not a broken partition.
SHARE_CHECK = "restriction_shares_stable"


def check_description(name: str) -> str:
    """A data check's description is the comment that opens its SQL file."""
    lines = (SQL_DIR / "checks" / f"{name}.sql").read_text().splitlines()
    comment = [line.removeprefix("--").strip() for line in lines if line.startswith("--")]
    return " ".join(comment) or name


# How the last build of a partition ended, in words (calendar.partition_runs.status).
RUN_WORDS = {"built": "decided, not posted yet", "succeeded": "posted", "failed": "failed"}


def mapping_label(mapping: MappingConfig) -> str:
    """How a data engineer knows the mapping behind a partition key (a business number): its Cliniko
    locations and flags, e.g. `Sydney CBD Physio (test, beta)`."""
    flags = [flag for flag, on in (("test", mapping.test), ("beta", mapping.beta)) if on]
    names = ", ".join(mapping.location_names) or "(no location name)"
    return f"{names} ({', '.join(flags)})" if flags else names


def recent_days(con: duckdb.DuckDBPyConnection, business_number: str, until: date, run_id: str) -> str:
    """The mapping's own last 14 partitions up to `until`, as the newest build of each counted them (a
    Markdown table; run `run_id` is "this run"): the per-mapping view the UI's plots, which mix every
    mapping's partitions, do not give. A day whose candidates got no request stands out."""
    rows = con.execute(
        """
        select partition_date, arg_max(candidates, run_started_at), arg_max(eligible, run_started_at),
               arg_max(status, run_started_at), arg_max(is_partial, run_started_at),
               arg_max(run_id, run_started_at)
        from calendar.partition_runs
        where business_number = $business_number and candidates is not null
          and partition_date between $until - 13 and $until
        group by partition_date
        order by partition_date desc
        """,
        {"business_number": business_number, "until": until},
    ).fetchall()
    lines = ["| partition | candidates | eligible | run |", "|---|---:|---:|---|"]
    for partition_date, candidates, eligible, status, is_partial, newest in rows:
        flag = " **none eligible**" if candidates and not eligible else ""
        state = ("this run" if newest == run_id else RUN_WORDS[status]) + (
            " (partial day)" if is_partial else ""
        )
        lines.append(f"| {partition_date} | {candidates} | {eligible}{flag} | {state} |")
    return "\n".join(lines)


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name="models",
    kinds={"duckdb", "sql"},
    deps=[cliniko_patients, cliniko_appointment_types],
    hooks={record_failed_run},
    metadata={
        "dagster/column_schema": column_schema(
            "marts.appointment_eligibility",
            "seeds/restriction_codes.sql",
            "marts/appointment_eligibility.sql",
        )
    },
    check_specs=[
        partition_check(name, "appointment_eligibility", check_description(name)) for name in CHECKS
    ],
)
def appointment_eligibility(
    context: dg.AssetExecutionContext, registry: RegistryResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every candidate appointment of the partition with exactly one outcome: eligible, or the first
    restriction reason that applies (beta, inactive customer, invalid record, did not arrive, excluded
    appointment type, opted out, no contact, duplicate patient, cooled off). Built by the plain SQL files of
    `sql/`; replaces only this partition. The eligible ones are claimed in the ledger (`pending`) in the same
    transaction, so a run of the same integration group never decides on a stale ledger.

    A run that starts before the partition's close time (the latest local midnight ending the target day over
    the mapping's Cliniko businesses) is partial: appointments still running get their outcome from a later
    run. Metadata counts candidates, eligible and each restriction code, plotted over partitions in the UI.
    """
    day, mapping = registry.partition(
        context, needs=("cliniko_appointments", "cliniko_patients", "cliniko_appointment_types")
    )
    run_started_at = started_at(context.instance, context.run.run_id)
    target = rules.target_day(day.partition_date, mapping.fetch_delay_days)
    params = {
        "business_number": day.business_number,
        "partition_date": day.partition_date,
        "group_id": mapping.group_id,
        "target_date": target,
        "cooloff_days": mapping.cooloff_days,
        "location_names": list(mapping.location_names),
        "excluded_appointment_types": list(mapping.excluded_appointment_types),
        "beta": mapping.beta,
        "test": mapping.test,
        "run_id": context.run.run_id,
        "run_started_at": run_started_at,
    }
    with warehouse.connect(mapping.group_id) as con:
        ensure_tables(con)
        ensure_models(con)
        # The registry is read again by this step: a name changed since the types were fetched is checked too.
        check_excluded_appointment_types(con, mapping)
        fetched = store.stored_businesses(con, {day.business_number: mapping.location_names})
        zones = fetched[day.business_number].time_zones if day.business_number in fetched else None
        params["close_at"] = rules.close_time(target, zones)
        try:
            with shared_decision(warehouse.settings.database_url, mapping.group_id) as shared_ledger:
                counts = build_partition(con, **params, shared_ledger=shared_ledger)
        except BuiltByNewerRun as error:  # a newer run, of this host or another, built the partition
            raise dg.Failure(str(error)) from None
        findings = {name: run_check(con, name, params) for name in CHECKS}
        recent = recent_days(con, day.business_number, day.partition_date, context.run.run_id)
        partial = run_started_at < params["close_at"]
        shares = findings[SHARE_CHECK]
    if not shares and not partial:  # a whole day with ordinary shares: a jump alert is over
        resolve_alerts(
            warehouse.settings.alerts,
            kinds=["restriction_share_jump"],
            business_numbers=[day.business_number],
        )
    if shares:
        codes = ", ".join(
            f"{r['restriction_code']} {r['share_before']:.0%} -> {r['share_now']:.0%}" for r in shares
        )
        raise_alerts(
            warehouse.settings.alerts,
            warehouse.settings.alert_webhook_url,
            [
                Alert(
                    kind="restriction_share_jump",
                    key=f"restriction_share_jump|{day.business_number}",
                    message=f"Mapping {day.business_number}, {day.partition_date}: the share of restriction "
                    f"codes jumped ({codes}); did a Cliniko field change?",
                    business_number=day.business_number,
                    group_id=mapping.group_id,
                    partition_date=day.partition_date,
                )
            ],
        )
    check_results = [
        dg.AssetCheckResult(
            check_name=name,
            passed=not rows,
            severity=dg.AssetCheckSeverity.WARN if name == SHARE_CHECK else dg.AssetCheckSeverity.ERROR,
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
            "target_date": target.isoformat(),
            "close_at": params["close_at"].isoformat(),
            "partial_run": partial,
            "test_mapping": mapping.test,
            "mapping": mapping_label(mapping),
            "last_14_days": dg.MetadataValue.md(recent),
        },
        check_results=check_results,
    )
