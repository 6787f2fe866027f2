"""`cliniko-reviews run`: the whole graph for chosen partitions, in process, then a summary per mapping."""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb

from pipeline.automation.partitions import (
    MAPPING_DIMENSION,
    PARTITIONS_START_DATE,
    MappingDay,
    runs_in_flight,
)
from pipeline.leases import release
from pipeline.registry import Registry
from pipeline.settings import Settings
from pipeline.sink import STATUSES
from pipeline.warehouse.connection import WAREHOUSE_ALIAS, attached
from pipeline.warehouse.slices import ensure_tables

# The run's events still go to the instance (the UI shows them); the terminal shows warnings and the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunOutcome:
    day: MappingDay
    success: bool
    error: str | None = None


@dataclass
class MappingSummary:
    business_number: str
    partitions: int = 0
    failed: int = 0
    candidates: int = 0
    eligible: int = 0
    restrictions: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)  # state -> partitions (SPEC §8)
    opens_at: dict[str, str] = field(default_factory=dict)  # a partial partition -> when it closes
    # Eligible visits whose request names their practitioner (Birdeye `employees`), by practitioner name.
    with_employee: dict[str, int] = field(default_factory=dict)
    class_visits: int = 0  # candidates that are class attendees (appointment_kind 'group')
    class_eligible: int = 0
    class_requests: dict[str, int] = field(default_factory=dict)  # ledger status -> class visits


def dates_between(start: date, end: date | None) -> list[date]:
    end = end or start
    if end < start:
        raise ValueError(f"--date-to {end} is before --date {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def select_partitions(
    registry: Registry, dates: Sequence[date], business_numbers: Sequence[str] = ()
) -> list[MappingDay]:
    """The partitions of the active mappings (or of the named ones, which must exist and be active), on days
    the partitions have (from `PARTITIONS_START`)."""
    early = sorted(d for d in dates if d < PARTITIONS_START_DATE)
    if early:
        raise ValueError(
            f"{early[0]} is before the first day of the partitions ({PARTITIONS_START_DATE}). To run "
            f"older days, set PARTITIONS_START={early[0]} (or earlier) where the pipeline runs, and restart "
            "the code location if it is running."
        )
    active = {m.business_number: m for m in registry.mappings(active_only=True)}
    if business_numbers:
        unknown = [bn for bn in business_numbers if bn not in active]
        if unknown:
            raise ValueError(
                f"Mapping(s) {unknown} are not active mappings of the registry. "
                f"Active mappings: {sorted(active) or 'none'}."
            )
        chosen = list(dict.fromkeys(business_numbers))
    else:
        chosen = sorted(active)
    return [MappingDay(bn, d) for d in dates for bn in chosen]


def busy_partitions(
    instance: dg.DagsterInstance, settings: Settings, days: Sequence[MappingDay]
) -> list[str]:
    """The partitions among `days` that a queued or running run holds (the scheduler's, a UI backfill's)."""
    wanted = set(days)
    held = runs_in_flight(instance, settings.run_leases, datetime.now(UTC)).held
    return sorted(f"{day} (run {record.dagster_run.run_id})" for day, record in held if day in wanted)


def run_partitions(
    days: Sequence[MappingDay], instance: dg.DagsterInstance, *, show_progress: bool = True
) -> list[RunOutcome]:
    """Materialize the whole graph for each partition in this process, one run per partition."""
    from rich.progress import Progress

    from pipeline.definitions import defs

    job = defs.resolve_job_def("review_requests_job")
    instance.add_dynamic_partitions(MAPPING_DIMENSION, sorted({d.business_number for d in days}))
    outcomes = []
    with Progress(disable=not show_progress or len(days) <= 1, transient=True) as progress:
        task = progress.add_task("partitions", total=len(days))
        for day in days:
            progress.update(task, description=str(day))
            result = job.execute_in_process(
                instance=instance, partition_key=day.key, raise_on_error=False, run_config=QUIET
            )
            release(result.run_id)  # the run's lease (see RegistryResource.partition): the run is over
            error = None
            if not result.success:
                failures = [e for e in result.all_events if e.is_step_failure]
                error = (
                    "; ".join(
                        f"{e.step_key}: {e.step_failure_data.error.message.strip().splitlines()[0]}"
                        for e in failures
                        if e.step_failure_data and e.step_failure_data.error
                    )
                    or "run failed"
                )
            outcomes.append(RunOutcome(day, result.success, error))
            progress.advance(task)
    return outcomes


def shard_by_group(
    days: Sequence[MappingDay], group_of: Mapping[str, int], workers: int
) -> list[list[MappingDay]]:
    """Split partitions into at most `workers` lists for parallel runs, keeping every integration group's
    partitions in one list, in their order: the cool-off rule reads the ledger that earlier partitions of the
    same group wrote, so two partitions of one group must never run side by side."""
    by_group: dict[int, list[MappingDay]] = {}
    for day in days:
        by_group.setdefault(group_of[day.business_number], []).append(day)
    shards: list[list[MappingDay]] = [[] for _ in range(max(1, min(workers, len(by_group))))]
    for group_days in sorted(by_group.values(), key=len, reverse=True):
        min(shards, key=len).extend(group_days)
    return [shard for shard in shards if shard]


def _run_shard(days: list[MappingDay]) -> list[RunOutcome]:
    with dg.DagsterInstance.get() as instance:
        return run_partitions(days, instance, show_progress=False)


def run_partitions_in_workers(
    days: Sequence[MappingDay], group_of: Mapping[str, int], workers: int, instance: dg.DagsterInstance
) -> list[RunOutcome]:
    """`run_partitions` in `workers` processes, one integration group per process at a time.

    Each worker pays the imports once and then runs its partitions one run each, as `run_partitions` does;
    the warehouse flock queues their short writes and the shared limiter keeps each Cliniko key under its
    rate. Outcomes come back in the order of `days`.
    """
    shards = shard_by_group(days, group_of, workers)
    if len(shards) <= 1:
        return run_partitions(days, instance)
    instance.add_dynamic_partitions(MAPPING_DIMENSION, sorted({d.business_number for d in days}))
    with ProcessPoolExecutor(len(shards), mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = {o.day: o for shard in pool.map(_run_shard, shards) for o in shard}
    return [outcomes[day] for day in days]


# Eligible visits sent with their practitioner as Birdeye's employee, per mapping and practitioner.
EMPLOYEES_SENT = """
select e.business_number, coalesce(e.practitioner_name, e.practitioner_id), count(*)
from marts.appointment_eligibility e
join chosen using (business_number, partition_date)
where e.is_eligible and e.practitioner_email is not null
group by all
"""


def summarize(settings: Settings, outcomes: Sequence[RunOutcome]) -> list[MappingSummary]:
    """Counts per mapping over the partitions that ran: candidates, eligible, restrictions, requests."""
    summaries: dict[str, MappingSummary] = {}
    for outcome in outcomes:
        s = summaries.setdefault(outcome.day.business_number, MappingSummary(outcome.day.business_number))
        s.partitions += 1
        s.failed += not outcome.success
    if not summaries:
        return []
    keys = [(o.day.business_number, o.day.partition_date) for o in outcomes]
    eligibility, requests, employees, classes, class_requests = [], [], [], [], []
    con = duckdb.connect()
    try:
        con.execute("create temp table chosen (business_number varchar, partition_date date)")
        con.executemany("insert into chosen values (?, ?)", keys)
        numbers = {o.day.business_number for o in outcomes}
        mappings = Registry.open(settings).mappings(active_only=False)
        groups = {m.group_id for m in mappings if m.business_number in numbers}
        for group_id in sorted(groups):  # these groups' files only: another group's may be busy
            path = settings.warehouse_path(group_id)
            if not path.exists():
                continue
            with attached(con, path):
                ensure_tables(con)
                has_marts = con.execute(
                    "select count(*) from duckdb_tables() where database_name = $db "
                    "and schema_name = 'marts' and table_name = 'appointment_eligibility'",
                    {"db": WAREHOUSE_ALIAS},
                ).fetchone()[0]
                if has_marts:
                    eligibility += con.execute(
                        "select e.business_number, coalesce(e.restriction_code, '') as code, count(*) "
                        "from marts.appointment_eligibility e "
                        "join chosen using (business_number, partition_date) "
                        "left join seeds.restriction_codes c using (restriction_code) "
                        "group by e.business_number, e.restriction_code, c.precedence "
                        "order by c.precedence nulls first"
                    ).fetchall()
                    built = con.execute(  # a mart no build of this release has touched lacks its columns
                        "select count(*) from duckdb_columns() where database_name = $db "
                        "and schema_name = 'marts' and table_name = 'appointment_eligibility' "
                        "and column_name in ('practitioner_email', 'appointment_kind')",
                        {"db": WAREHOUSE_ALIAS},
                    ).fetchone()[0]
                    if built == 2:
                        employees += con.execute(EMPLOYEES_SENT).fetchall()
                        classes += con.execute(
                            "select business_number, count(*), count(*) filter (where is_eligible) "
                            "from marts.appointment_eligibility "
                            "join chosen using (business_number, partition_date) "
                            "where appointment_kind = 'group' group by all"
                        ).fetchall()
                        class_requests += con.execute(
                            "select l.business_number, l.status, count(*) "
                            "from sink.review_request_ledger l "
                            "join chosen using (business_number, partition_date) "
                            "join marts.appointment_eligibility e "
                            "using (business_number, partition_date, appointment_id) "
                            "where e.appointment_kind = 'group' group by all"
                        ).fetchall()
                requests += con.execute(
                    "select l.business_number, l.status, count(*) "
                    "from sink.review_request_ledger l join chosen using (business_number, partition_date) "
                    "group by all"
                ).fetchall()
    finally:
        con.close()
    for business_number, code, count in eligibility:
        s = summaries[business_number]
        s.candidates += count
        if code:
            s.restrictions[code] = s.restrictions.get(code, 0) + count
        else:
            s.eligible += count
    for business_number, status, count in requests:
        summaries[business_number].requests[status] = count
    for business_number, name, count in employees:
        summaries[business_number].with_employee[name] = count
    for business_number, visits, eligible in classes:
        summaries[business_number].class_visits += visits
        summaries[business_number].class_eligible += eligible
    for business_number, status, count in class_requests:
        summaries[business_number].class_requests[status] = count
    if settings.analytics_path.exists():
        analytics = duckdb.connect(str(settings.analytics_path), read_only=True)
        try:
            analytics.execute("create temp table chosen (business_number varchar, partition_date date)")
            analytics.executemany("insert into chosen values (?, ?)", keys)
            states = analytics.execute(
                "select business_number, partition_date, state, close_at from coverage "
                "join chosen using (business_number, partition_date) order by partition_date"
            ).fetchall()
        finally:
            analytics.close()
        for business_number, partition_date, state, close_at in states:
            s = summaries[business_number]
            s.coverage[state] = s.coverage.get(state, 0) + 1
            if state == "partial":
                s.opens_at[str(partition_date)] = close_at.strftime("%Y-%m-%d %H:%M UTC")
    return [summaries[k] for k in sorted(summaries)]


def render_summary(summaries: Sequence[MappingSummary], outcomes: Sequence[RunOutcome]) -> str:
    """The summary as plain lines (readable in any terminal width and in CI logs)."""
    lines = ["", "Summary by mapping (the partitions of this run):"]
    for s in summaries:
        failed = f" ({s.failed} failed)" if s.failed else ""
        lines.append(
            f"  {s.business_number}  {s.partitions} partitions{failed} | {s.candidates} candidates | "
            f"{s.eligible} eligible"
        )
        restricted = [f"{code} {count}" for code, count in s.restrictions.items()]  # in precedence order
        requests = [f"{k} {s.requests[k]}" for k in STATUSES if s.requests.get(k)]
        lines.append(f"      restricted: {', '.join(restricted) or 'none'}")
        lines.append(f"      requests:   {', '.join(requests) or 'none'}")
        if s.eligible:
            named = sum(s.with_employee.values())
            most = sorted(s.with_employee.items(), key=lambda item: (-item[1], item[0]))[:3]
            who = f" ({', '.join(f'{name} {count}' for name, count in most)}, ...)" if most else ""
            lines.append(f"      employees:  {named} of {s.eligible} eligible name their practitioner{who}")
        asked = [f"{k} {s.class_requests[k]}" for k in STATUSES if s.class_requests.get(k)]
        lines.append(
            f"      classes:    {s.class_visits} attendee visits, {s.class_eligible} eligible; "
            f"requests: {', '.join(asked) or 'none'}"
        )
        states = [f"{count} {state}" for state, count in sorted(s.coverage.items())]
        partial = "".join(f"; {day} closes {at}, a later run completes it" for day, at in s.opens_at.items())
        lines.append(f"      coverage:   {', '.join(states) or 'none'}{partial}")
    lines.extend(f"  FAILED {o.day}: {o.error}" for o in outcomes if not o.success)
    return "\n".join(lines)
