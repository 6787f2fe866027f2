"""Cliniko -> DuckDB, one mapping-day at a time. HTTP first, then one short write transaction."""

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import duckdb

from pipeline.assets.practitioners import (
    practitioner_lookup,
    referenced_practitioner_ids,
    requests_since,
    store_practitioners,
)
from pipeline.assets.runs import record_failed_run
from pipeline.assets.specs import column_schema, partition_check
from pipeline.automation.partitions import MappingDay, mapping_day_partitions
from pipeline.automation.resources import ClinikoResource, RegistryResource, WarehouseResource
from pipeline.calendar.rules import local_day_window, target_day
from pipeline.cliniko import ClinikoClient, ClinikoError
from pipeline.registry import MappingConfig
from pipeline.registry.model import EXCLUDED_TYPES
from pipeline.warehouse.models import match_locations, unknown_appointment_type_names
from pipeline.warehouse.pages import UnreadablePage, type_pages
from pipeline.warehouse.raw_store import store_records
from pipeline.warehouse.slices import ensure_tables

GROUP = "cliniko"


@contextmanager
def _client(cliniko: ClinikoResource, mapping: MappingConfig, day: MappingDay) -> Iterator[ClinikoClient]:
    """A Cliniko client with the mapping's key; what goes wrong with Cliniko fails the step with a message
    that names the mapping and the partition first (the error itself says what happened and what to do)."""
    if mapping.cliniko_api_key is None:
        raise dg.Failure(f"Mapping {mapping.business_number} has no cliniko.api.key (group or mapping).")
    try:
        with cliniko.client(mapping.cliniko_api_key.reveal()) as client:
            yield client
    except (ClinikoError, UnreadablePage) as error:
        names = ", ".join(mapping.location_names)
        raise dg.Failure(f"Mapping {mapping.business_number} ({names}), partition {day}: {error}") from None


def _client_metadata(client: ClinikoClient) -> dict[str, Any]:
    stats = client.stats
    return {
        "requests": stats.requests,
        "rate_limited_429s": stats.rate_limited,
        "retries": stats.retries,
        "rate_limit_wait_seconds": round(stats.rate_limit_wait_seconds, 3),
    }


def _quarantine_check(
    resource: str, quarantined: int, stored: int, asset: str | None = None
) -> dg.AssetCheckResult:
    """`asset` names the asset the check belongs to where a step materializes several."""
    return dg.AssetCheckResult(
        check_name="no_quarantined_rows",
        asset_key=asset,
        passed=quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_rows": quarantined, "stored_rows": stored, "resource": resource},
        description=f"{quarantined} {resource} record(s) failed validation; see raw.cliniko_quarantine.",
    )


def _quarantine_spec(asset: str) -> dg.AssetCheckSpec:
    return partition_check(
        "no_quarantined_rows",
        asset,
        "Warns when Cliniko records of this partition failed validation and went to "
        "raw.cliniko_quarantine (with the reason) instead of the table.",
    )


def matched_locations(con: duckdb.DuckDBPyConnection, mapping: MappingConfig, day: MappingDay) -> list[dict]:
    """The Cliniko businesses the mapping's location names name, by the models' own match
    (`match_locations`). Raises `dg.Failure` listing the names that exist when a location name matches none.
    """
    matched = match_locations(con, day.business_number, mapping.location_names)
    if matched.unknown:
        raise dg.Failure(
            f"Location name(s) {matched.unknown} match no Cliniko business of this account. "
            f"Cliniko business names are: {matched.existing}. Fix cliniko.location.name on the mapping."
        )
    return matched.businesses


def check_excluded_appointment_types(con: duckdb.DuckDBPyConnection, mapping: MappingConfig) -> None:
    """Raises `dg.Failure` listing the account's appointment type names when a name of the mapping's
    `cliniko.appointment.types.excluded` matches none of its stored types (by the models' own rule), and says
    where the property is set: a typo there must fail loudly, not exclude nothing."""
    unknown, existing = unknown_appointment_type_names(
        con, mapping.business_number, mapping.excluded_appointment_types
    )
    if unknown:
        number = mapping.business_number
        where = (
            f"on mapping {number}"
            if EXCLUDED_TYPES in mapping.overridden_keys
            else f"on integration group {mapping.group_id} (or override it on mapping {number})"
        )
        raise dg.Failure(
            f"Appointment type name(s) {unknown} match no Cliniko appointment type of this account. "
            f"Cliniko appointment type names are: {existing}. Fix {EXCLUDED_TYPES} {where}."
        )


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name=GROUP,
    kinds={"duckdb"},
    hooks={record_failed_run},
    check_specs=[_quarantine_spec("cliniko_businesses")],
    metadata={"dagster/column_schema": column_schema("raw.cliniko_businesses", "raw/cliniko_businesses.sql")},
)
def cliniko_businesses(
    context: dg.AssetExecutionContext,
    registry: RegistryResource,
    warehouse: WarehouseResource,
    cliniko: ClinikoResource,
) -> dg.MaterializeResult:
    """All Cliniko businesses of the mapping's account, archived included (full refresh).

    Fails the partition, listing the names that do exist, when a `cliniko.location.name` of the mapping
    matches no Cliniko business. The businesses are stored first either way: the calendar sensor reads their
    time zones, and holds the mapping back while its names match none of the latest fetch.
    """
    day, mapping = registry.partition(context)
    with _client(cliniko, mapping, day) as client:
        records = type_pages("businesses", client.business_pages())
    stored, quarantined = store_records(
        warehouse.path(mapping.group_id),
        day.business_number,
        day.partition_date,
        "businesses",
        "raw.cliniko_businesses",
        records,
        whole_mapping=True,
    )
    with warehouse.connect(mapping.group_id) as con:
        matched = matched_locations(con, mapping, day)
    return dg.MaterializeResult(
        metadata={
            "rows": stored,
            "quarantined": quarantined,
            "matched_businesses": len(matched),
            **_client_metadata(client),
        },
        check_results=[_quarantine_check("businesses", quarantined, stored)],
    )


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name=GROUP,
    kinds={"duckdb"},
    hooks={record_failed_run},
    deps=[cliniko_businesses],
    check_specs=[_quarantine_spec("cliniko_appointment_types")],
    metadata={
        "dagster/column_schema": column_schema(
            "raw.cliniko_appointment_types", "raw/cliniko_appointment_types.sql"
        )
    },
)
def cliniko_appointment_types(
    context: dg.AssetExecutionContext,
    registry: RegistryResource,
    warehouse: WarehouseResource,
    cliniko: ClinikoResource,
) -> dg.MaterializeResult:
    """All appointment types of the mapping's Cliniko account, archived included (full refresh, one page).
    After `cliniko_businesses`, which finds a wrong key or location name first: one failure per cause.

    The models read their names to apply `cliniko.appointment.types.excluded` (restriction `excluded_type`).
    Fails the partition, listing the names that do exist, when a name of that property matches no type
    (trimmed, case-insensitive). The types are stored first either way, so the failure lists the latest.
    """
    day, mapping = registry.partition(context)
    with _client(cliniko, mapping, day) as client:
        records = type_pages("appointment_types", client.appointment_type_pages())
    stored, quarantined = store_records(
        warehouse.path(mapping.group_id),
        day.business_number,
        day.partition_date,
        "appointment_types",
        "raw.cliniko_appointment_types",
        records,
        whole_mapping=True,
    )
    with warehouse.connect(mapping.group_id) as con:
        check_excluded_appointment_types(con, mapping)
    return dg.MaterializeResult(
        metadata={
            "rows": stored,
            "quarantined": quarantined,
            "excluded_names": len(mapping.excluded_appointment_types),
            **_client_metadata(client),
        },
        check_results=[_quarantine_check("appointment_types", quarantined, stored)],
    )


@dg.asset(
    partitions_def=mapping_day_partitions,
    group_name=GROUP,
    kinds={"duckdb"},
    hooks={record_failed_run},
    deps=[cliniko_businesses],
    check_specs=[_quarantine_spec("cliniko_appointments")],
    metadata={
        "dagster/column_schema": column_schema("raw.cliniko_appointments", "raw/cliniko_appointments.sql")
    },
)
def cliniko_appointments(
    context: dg.AssetExecutionContext,
    registry: RegistryResource,
    warehouse: WarehouseResource,
    cliniko: ClinikoResource,
) -> dg.MaterializeResult:
    """The visits of the mapped Cliniko businesses that end on the target day (local time): individual
    appointments, and classes with their attendees.

    Target day = partition date minus the mapping's fetch delay, in each business's time zone. Individual
    appointments (`raw.cliniko_appointments`) and group appointments (`raw.cliniko_group_appointments`) are
    filtered server-side by business and `ends_at` window, cancelled and archived included so they can be
    classified; the classes' attendees (`raw.cliniko_attendees`, cancelled and archived included) are asked
    for by the classes' ids, 100 classes a query. So a mapping-day costs one page per 100 rows of each
    resource and no request per class. One step for the three: each step costs a process's start-up per
    partition, and the attendees need the classes' ids anyway. The quarantine check covers all three.
    """
    day, mapping = registry.partition(context)
    with warehouse.connect(mapping.group_id) as con:
        ensure_tables(con)
        matched = matched_locations(con, mapping, day)
    target = target_day(day.partition_date, mapping.fetch_delay_days)
    ids_by_zone: dict[str | None, list[str]] = defaultdict(list)
    for business in matched:
        ids_by_zone[business["time_zone"]].append(business["cliniko_business_id"])
    windows = [
        (sorted(set(business_ids)), *local_day_window(target, time_zone))
        for time_zone, business_ids in ids_by_zone.items()
    ]

    with _client(cliniko, mapping, day) as client:
        records = {
            "appointments": type_pages(
                "appointments", (page for w in windows for page in client.individual_appointment_pages(*w))
            ),
            "group_appointments": type_pages(
                "group_appointments", (page for w in windows for page in client.group_appointment_pages(*w))
            ),
        }
        class_ids = records["group_appointments"].frame["group_appointment_id"].dropna().tolist()
        records["attendees"] = type_pages("attendees", client.attendee_pages(class_ids))
    counts = {
        resource: store_records(
            warehouse.path(mapping.group_id),
            day.business_number,
            day.partition_date,
            resource,
            f"raw.cliniko_{resource}",
            typed,
        )
        for resource, typed in records.items()
    }
    stored = {resource: count for resource, (count, _) in counts.items()}
    quarantined = {resource: count for resource, (_, count) in counts.items()}
    context.log.info(
        f"{stored['appointments']} appointments and {stored['group_appointments']} classes "
        f"({stored['attendees']} attendees) ending on {target} for mapping {day.business_number}"
    )
    return dg.MaterializeResult(
        metadata={
            "rows": stored["appointments"],
            "quarantined": sum(quarantined.values()),
            "group_appointments": stored["group_appointments"],
            "attendees": stored["attendees"],
            "target_date": target.isoformat(),
            **_client_metadata(client),
        },
        check_results=[
            _quarantine_check(
                "appointments, group_appointments and attendees",
                sum(quarantined.values()),
                sum(stored.values()),
            )
        ],
    )


@dg.multi_asset(
    name="cliniko_patients",
    partitions_def=mapping_day_partitions,
    hooks={record_failed_run},
    specs=[
        dg.AssetSpec(
            "cliniko_patients",
            group_name=GROUP,
            kinds={"duckdb"},
            deps=[cliniko_appointments],
            description="Exactly the patients the partition's visits (individual appointments and class "
            "attendees) reference, fetched by id in one walk, archived included; a referenced patient "
            "Cliniko no longer returns is stored with is_missing = true.",
            metadata={
                "dagster/column_schema": column_schema("raw.cliniko_patients", "raw/cliniko_patients.sql")
            },
        ),
        dg.AssetSpec(
            "cliniko_practitioners",
            group_name=GROUP,
            kinds={"duckdb"},
            deps=[cliniko_appointments],
            description="Exactly the practitioners the partition's appointments reference, fetched by id, "
            "active and inactive, with their Cliniko user's email (sent to Birdeye as the check-in's "
            "employee); one Cliniko lookup step with the patients.",
            metadata={
                "dagster/column_schema": column_schema(
                    "raw.cliniko_practitioners", "raw/cliniko_practitioners.sql"
                )
            },
        ),
    ],
    check_specs=[_quarantine_spec("cliniko_patients"), _quarantine_spec("cliniko_practitioners")],
)
def cliniko_patients(
    context: dg.AssetExecutionContext,
    registry: RegistryResource,
    warehouse: WarehouseResource,
    cliniko: ClinikoResource,
) -> Iterator[dg.MaterializeResult]:
    """The records the partition's visits (individual appointments and class attendees) reference, fetched
    by id: one step for both lookups.

    Patients, archived included: a referenced patient that Cliniko no longer returns is stored with
    `is_missing = true` (a deleted patient); the models restrict its appointments as `customer_inactive`.
    Practitioners (`practitioner_lookup`): active and inactive, with their user's email; one that Cliniko no
    longer returns is stored with `is_missing = true`, and its visits are simply not attributed.
    """
    day, mapping = registry.partition(context, needs=("cliniko_appointments",))
    with warehouse.connect(mapping.group_id) as con:
        ensure_tables(con)
        patient_ids = [
            row[0]
            for row in con.execute(
                "select patient_id from raw.cliniko_appointments "
                "where business_number = $bn and partition_date = $d and patient_id is not null "
                "union "
                "select patient_id from raw.cliniko_attendees "
                "where business_number = $bn and partition_date = $d and patient_id is not null "
                "order by patient_id",
                {"bn": day.business_number, "d": day.partition_date},
            ).fetchall()
        ]
        practitioner_ids = referenced_practitioner_ids(con, day.business_number, day.partition_date)
    with _client(cliniko, mapping, day) as client:
        records = type_pages("patients", client.patient_pages(patient_ids))
        patient_requests = _client_metadata(client)
        practitioners = practitioner_lookup(client, practitioner_ids)
    missing_ids = records.not_returned(patient_ids)
    stored, quarantined = store_records(
        warehouse.path(mapping.group_id),
        day.business_number,
        day.partition_date,
        "patients",
        "raw.cliniko_patients",
        records,
        missing_ids=missing_ids,
    )
    yield dg.MaterializeResult(
        asset_key="cliniko_patients",
        metadata={
            "rows": stored,
            "missing_patients": len(missing_ids),
            "quarantined": quarantined,
            **patient_requests,
        },
        check_results=[_quarantine_check("patients", quarantined, stored, "cliniko_patients")],
    )
    if practitioners.refused:
        context.log.warning(
            f"Requests of this partition go without what Cliniko refused: {practitioners.refused}"
        )
    stored, quarantined = store_practitioners(
        warehouse.path(mapping.group_id), day.business_number, day.partition_date, practitioners
    )
    yield dg.MaterializeResult(
        asset_key="cliniko_practitioners",
        metadata={
            "rows": stored,
            "missing_practitioners": len(practitioners.missing_ids),
            "with_email": practitioners.with_email,
            "refused_by_cliniko": practitioners.refused or "",
            "quarantined": quarantined,
            **requests_since(patient_requests, _client_metadata(client)),
        },
        check_results=[_quarantine_check("practitioners", quarantined, stored, "cliniko_practitioners")],
    )
