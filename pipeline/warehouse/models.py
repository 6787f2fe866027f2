"""Build the SQL models of one partition (business_number x partition_date) and run their data checks.

The rules live in `sql/` (staging -> intermediate -> marts -> analytics); this module only runs the files in
order inside one transaction, with every parameter bound. Dagster assets call `build_partition` and report
the counts it returns as metadata, and run `run_check` for each of `CHECKS`. Neither needs Dagster, so the
tests and the benchmark call them directly on a DuckDB file.

A partition's cost must not grow with history. Every model reads the raw tables, the mart and the ledger
through constant predicates on (business_number, partition_date) or a target_date window, which DuckDB turns
into zonemap pruning: ingestion appends slices day by day and the sink appends requests as it sends them, so a
day's rows sit in a few row groups. The intermediate models are temp tables of that one partition. No extra
ART index: the zonemaps already skip the history (`benchmarks/bench_models.py` measures it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import duckdb

from pipeline.warehouse.phone import register_phone_functions
from pipeline.warehouse.slices import TABLE_DDL, ensure_definitions
from pipeline.warehouse.sql_files import SQL_DIR, read_sql, run_sql_file

# Creates or replaces everything that holds no partition data; idempotent and cheap, run by every build.
DEFINITION_FILES = (
    *TABLE_DDL,
    "seeds/restriction_codes.sql",
    "macros/usable_email.sql",
    "macros/name_key.sql",
    "macros/visit_kind.sql",
    "staging/stg_cliniko__businesses.sql",
    "staging/stg_cliniko__appointment_types.sql",
    "staging/stg_cliniko__appointments.sql",
    "staging/stg_cliniko__group_appointments.sql",
    "staging/stg_cliniko__attendees.sql",
    "staging/stg_cliniko__patients.sql",
    "staging/stg_cliniko__practitioners.sql",
)
# Builds one partition, in dependency order: decisions, their claims in the ledger, the run's record.
PARTITION_FILES = (
    "intermediate/int_excluded_appointment_types.sql",
    "intermediate/int_matched_businesses.sql",
    "intermediate/int_appointment_candidates.sql",
    "intermediate/int_patient_channels.sql",
    "intermediate/int_visit_practitioners.sql",
    "marts/appointment_eligibility.sql",
    "sink/claims.sql",
    "analytics/restriction_reasons.sql",
    "analytics/review_requests.sql",
    "calendar/record_build.sql",
)
# Who built a partition after the given run started (`refuse_if_superseded`), on either store.
NEWER_BUILD = "calendar/newer_build.sql"
NEWER_BUILD_PARAMS = ("business_number", "partition_date", "run_started_at", "run_id")
CHECKS = tuple(sorted(path.stem for path in (SQL_DIR / "checks").glob("*.sql")))


class SharedLedger(Protocol):
    """A ledger shared across hosts (`pipeline.sink.ledger.SharedDecision`): the warehouse's copy of the rows
    a decision reads is refreshed from it first, and the decision's claims are made in it too."""

    def pull(self, con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        """Refresh the warehouse's copy of what the decision reads; raise `BuiltByNewerRun` if a newer run of
        any host built the partition."""
        ...

    def push(self, con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        """Make the claims in the shared ledger and commit them there, before the warehouse commits."""
        ...


class BuiltByNewerRun(RuntimeError):
    """A run that started before the run that last built its partition tried to build it (it would replace
    newer decisions with what it saw earlier, a partial view of the day): nothing of its build lands."""


def refuse_if_superseded(con: Any, params: Mapping[str, Any], run: Callable[..., Any] | None = None) -> None:
    """Raise `BuiltByNewerRun` if a run that started after this one (`params["run_started_at"]`) built the
    partition, by the runs that `con` holds: a group's warehouse, or with `run=pipeline.postgres.run`, a
    PostgreSQL connection holding every host's runs (`sql/calendar/newer_build.sql` runs on both)."""
    bound = {name: params[name] for name in NEWER_BUILD_PARAMS}
    sql = read_sql(NEWER_BUILD)
    newer = (run(con, sql, bound) if run is not None else con.execute(sql, bound)).fetchone()
    if newer is not None:
        run_id, started = newer
        raise BuiltByNewerRun(
            f"partition {params['partition_date']}|{params['business_number']} was already built by run "
            f"{run_id}, which started at {started}, after this run started; this run changes nothing"
        )


def ensure_models(con: duckdb.DuckDBPyConnection) -> None:
    """Create the schemas, seed and views the models need, so a fresh warehouse can be built (about 40 ms
    of catalog writes, a fifth of a partition build, so only when their text changed)."""
    ensure_definitions(con, "models", DEFINITION_FILES)


def build_partition(
    con: duckdb.DuckDBPyConnection,
    *,
    business_number: str,
    partition_date: date | str,
    group_id: int,
    target_date: date,
    cooloff_days: int,
    location_names: Sequence[str],
    beta: bool,
    test: bool,
    run_id: str,
    run_started_at: datetime,
    close_at: datetime,
    excluded_appointment_types: Sequence[str] = (),
    shared_ledger: SharedLedger | None = None,
) -> dict[str, int]:
    """Rebuild `marts.appointment_eligibility` for one partition, claim its eligible requests in the ledger
    and record the build as run `run_id`'s in `calendar.partition_runs`; return the partition's counts.

    One transaction: a failure leaves the previous rows in place, and a concurrent build of the same group
    decides after this one's claims are visible (see `sql/sink/claims.sql`). Only the rows of
    (business_number, partition_date) are replaced. A run that started before the run that last built the
    partition changes nothing and raises `BuiltByNewerRun` (`refuse_if_superseded`). The counts are
    `candidates`, `eligible` and one key per restriction code (0 when none), in precedence order; they are
    what the Dagster UI plots over partitions. With `shared_ledger` (PostgreSQL), the decision reads and
    claims there too.
    `target_date` is the day whose appointments the partition decides (`calendar.rules.target_day`, the one
    owner of that rule; the SQL only reads it).
    `excluded_appointment_types` are the names of `cliniko.appointment.types.excluded` (none: nothing is
    excluded); a name that matches no stored type excludes nothing, so callers check them first
    (`unknown_appointment_type_names`).
    """
    if isinstance(location_names, str):
        raise TypeError(
            "location_names must be a list of Cliniko business names, not one string; "
            "split the mapping's `cliniko.location.name` on commas first"
        )
    if isinstance(excluded_appointment_types, str):
        raise TypeError(
            "excluded_appointment_types must be a list of Cliniko appointment type names, not one string; "
            "split `cliniko.appointment.types.excluded` on commas first"
        )
    if run_started_at.tzinfo is None or close_at.tzinfo is None:
        raise ValueError("run_started_at and close_at must be timezone-aware (UTC), not naive datetimes")
    params = {
        "business_number": business_number,
        "partition_date": date.fromisoformat(partition_date)
        if isinstance(partition_date, str)
        else partition_date,
        "group_id": group_id,
        "target_date": target_date,
        "cooloff_days": cooloff_days,
        "location_names": list(location_names),
        "excluded_appointment_types": list(excluded_appointment_types),
        "beta": beta,
        "test": test,
        "run_id": run_id,
        "run_started_at": run_started_at,
        "close_at": close_at,
    }
    register_phone_functions(con)  # outside the transaction: its probe may fail, which would abort it
    con.begin()
    try:
        ensure_models(con)
        refuse_if_superseded(con, params)
        if shared_ledger is not None:
            shared_ledger.pull(con, params)  # which refuses too if another host's newer run built it
        for path in PARTITION_FILES:
            run_sql_file(con, path, params)
        counts = partition_counts(
            con, business_number=business_number, partition_date=params["partition_date"]
        )
        if shared_ledger is not None:
            # The shared ledger commits first: if the warehouse's commit then fails, PostgreSQL holds
            # claims the next build reads back; the other way round, the warehouse would hold a copy
            # PostgreSQL lacks.
            shared_ledger.push(con, params)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return counts


@dataclass(frozen=True)
class MatchedLocations:
    """A mapping's location names against its account's Cliniko businesses as last fetched, matched by the
    models' own rule (`sql/intermediate/int_matched_businesses.sql`)."""

    businesses: list[dict[str, Any]]  # cliniko_business_id, location_name, time_zone; each business once
    unknown: list[str]  # the names that match no business, in the mapping's order
    existing: list[str]  # the names the account's businesses have, to say what would match


def match_locations(
    con: duckdb.DuckDBPyConnection, business_number: str, location_names: Sequence[str]
) -> MatchedLocations:
    """Run the candidates' own match (`int_matched_businesses`, on a throwaway temp table) for the ingestion:
    what it fetches is exactly what the build reads, and a name the build would match nothing with fails."""
    ensure_models(con)
    run_sql_file(
        con,
        "intermediate/int_matched_businesses.sql",
        {"business_number": business_number, "location_names": list(location_names)},
    )
    rows = con.execute(
        "select requested_name, cliniko_business_id, location_name, time_zone from int_matched_businesses"
    ).fetchall()
    con.execute("drop table int_matched_businesses")
    existing = con.execute(
        "select distinct trim(location_name) from staging.stg_cliniko__businesses "
        "where business_number = $bn and nullif(trim(location_name), '') is not null order by 1",
        {"bn": business_number},
    ).fetchall()
    found = {name for name, business_id, *_ in rows if business_id is not None}
    businesses = {
        business_id: {"cliniko_business_id": business_id, "location_name": location, "time_zone": zone}
        for _, business_id, location, zone in sorted(rows, key=lambda row: str(row[1]))
        if business_id is not None
    }
    return MatchedLocations(
        list(businesses.values()),
        [name for name in dict.fromkeys(location_names) if name not in found],
        [name for (name,) in existing],
    )


def unknown_appointment_type_names(
    con: duckdb.DuckDBPyConnection, business_number: str, names: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(the names of `names` that match none of the mapping's stored Cliniko appointment types, the names
    those types have), matched by the models' own rule (`sql/intermediate/int_excluded_appointment_types.sql`
    on a throwaway temp table), so what passes here is exactly what the build excludes."""
    if not names:
        return [], []
    ensure_models(con)
    run_sql_file(
        con,
        "intermediate/int_excluded_appointment_types.sql",
        {"business_number": business_number, "excluded_appointment_types": list(names)},
    )
    unknown = [
        name
        for (name,) in con.execute(
            "select excluded_name from int_excluded_appointment_types "
            "group by excluded_name having count(appointment_type_id) = 0"
        ).fetchall()
    ]
    con.execute("drop table int_excluded_appointment_types")
    existing = [
        name
        for (name,) in con.execute(
            "select distinct appointment_type_name from staging.stg_cliniko__appointment_types "
            "where business_number = $bn and appointment_type_name is not null order by 1",
            {"bn": business_number},
        ).fetchall()
    ]
    return [name for name in names if name in unknown], existing


def partition_counts(
    con: duckdb.DuckDBPyConnection, *, business_number: str, partition_date: date
) -> dict[str, int]:
    """Counts of one built partition: candidates, eligible, and each restriction code in precedence order."""
    rows = con.execute(
        """
        with partition_rows as (
            select restriction_code
            from marts.appointment_eligibility
            where business_number = $business_number and partition_date = $partition_date
        )
        select 'candidates', count(*), 0 from partition_rows
        union all
        select 'eligible', count(*) filter (where restriction_code is null), 1 from partition_rows
        union all
        select codes.restriction_code, count(partition_rows.restriction_code), 1 + codes.precedence
        from seeds.restriction_codes as codes
        left join partition_rows on partition_rows.restriction_code = codes.restriction_code
        group by codes.restriction_code, codes.precedence
        order by 3
        """,
        {"business_number": business_number, "partition_date": partition_date},
    ).fetchall()
    return {name: count for name, count, _ in rows}


def run_check(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run the data check `sql/checks/<name>.sql` for a partition and return its offending rows (none = pass).

    `params` needs `business_number` and `partition_date`. Each row is a dict of the check's columns, ready to
    be attached to a Dagster asset check as metadata.
    """
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; known checks: {', '.join(CHECKS)}")
    sql = (SQL_DIR / "checks" / f"{name}.sql").read_text()
    statement = con.extract_statements(sql)[0]
    bound = {key: params[key] for key in statement.named_parameters}
    result = con.execute(statement, bound)
    columns = [column[0] for column in result.description]
    return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
