"""The `cliniko-reviews` command. Each subcommand imports its stage lazily so `--help` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Cliniko -> Birdeye review requests: admin API, emulators, runs and the demo."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8300, show_default=True, type=int)
def admin(host: str, port: int) -> None:
    """Serve the admin API (the support manual's curl commands work against it)."""
    from pipeline.registry.api import serve

    serve(host=host, port=port)


@main.command()
@click.option(
    "--date", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First partition date."
)
@click.option("--date-to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last partition date (inclusive).")
@click.option("--mapping", "mappings", multiple=True, help="Business number of a mapping; repeatable.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Processes running partitions side by side (one integration group per process at a time).",
)
def run(start, end, mappings: tuple[str, ...], workers: int) -> None:
    """Materialize the whole graph for those partitions of the active mappings, in process."""
    import dagster as dg

    from pipeline.automation.instance import ensure_dagster_home
    from pipeline.registry import Registry
    from pipeline.runner import (
        busy_partitions,
        dates_between,
        render_summary,
        run_partitions_in_workers,
        select_partitions,
        summarize,
    )
    from pipeline.settings import load_settings

    settings = load_settings()
    ensure_dagster_home(settings)
    try:
        dates = dates_between(start.date(), end.date() if end else None)
        registry = Registry.open(settings)
        days = select_partitions(registry, dates, mappings)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not days:
        click.echo("No active mapping in the registry: nothing to run.")
        return
    group_of = {m.business_number: m.group_id for m in registry.mappings(active_only=True)}
    with dg.DagsterInstance.get() as instance:
        busy = busy_partitions(instance, settings, days)
        if busy:
            raise click.UsageError(
                f"Partition(s) {', '.join(busy)} are being run already; wait for those runs (or cancel them "
                "in the Dagster UI) and run again."
            )
        outcomes = run_partitions_in_workers(days, group_of, workers, instance)
    click.echo(render_summary(summarize(settings, outcomes), outcomes))
    failed = sum(not o.success for o in outcomes)
    click.echo(f"{len(outcomes) - failed} of {len(outcomes)} partition(s) succeeded.")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--mapping", "mappings", multiple=True, help="Business number of a mapping; repeatable.")
def status(mappings: tuple[str, ...]) -> None:
    """Where each mapping stands: last closed partition, partitions not closed, next due time, open alerts."""
    from pipeline.registry import Registry
    from pipeline.settings import load_settings
    from pipeline.status import render_status

    settings = load_settings()
    known = Registry.open(settings).mappings(active_only=False)
    unknown = sorted(set(mappings) - {m.business_number for m in known})
    if unknown:
        raise click.UsageError(
            f"Mapping(s) {unknown} are not in the registry. Mappings: {[m.business_number for m in known]}."
        )
    chosen = [m for m in known if not mappings or m.business_number in mappings]
    click.echo(render_status(settings.analytics_path, chosen) if chosen else "No mapping in the registry.")


@main.command()
@click.argument("query", default="select * from restriction_reasons limit 20")
def sql(query: str) -> None:
    """Run QUERY on the analysts' database (read-only), e.g. `cliniko-reviews sql "from review_requests"`."""
    import duckdb

    from pipeline.settings import load_settings

    path = load_settings().analytics_path
    if not path.exists():
        raise click.ClickException(f"{path} does not exist yet: run `cliniko-reviews run` or the demo first.")
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.sql(query).show(max_width=200)
    except duckdb.Error as error:
        raise click.ClickException(str(error)) from None
    finally:
        con.close()


@main.command()
def ui() -> None:
    """Start the Dagster UI (`dagster dev`) on this project's instance and data."""
    _exec_on_instance(["dagster", "dev", "-w", "workspace.yaml"])


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def dagster(command: tuple[str, ...]) -> None:
    """Run one of Dagster's processes on this project's instance, e.g. `cliniko-reviews dagster
    dagster-daemon run -w deploy/workspace.yaml`.

    Writes `DAGSTER_HOME/dagster.yaml` if it is missing and exports the PostgreSQL URL it names when
    `DATABASE_URL` is set, as `run` and `ui` do, then replaces itself with COMMAND (`dagster-webserver`,
    `dagster-daemon`, `dagster api grpc`): the way the deployment files start each process (deploy/).
    """
    if command[0] not in ("dagster", "dagster-webserver", "dagster-daemon"):
        raise click.UsageError(
            f"{command[0]} is not a Dagster command (dagster, dagster-webserver, dagster-daemon)"
        )
    _exec_on_instance(list(command))


def _exec_on_instance(command: list[str]) -> None:
    """`command` on this project's instance, found beside this Python first (a venv not on PATH)."""
    import os
    import shutil

    from pipeline.automation.instance import ensure_dagster_home
    from pipeline.settings import PROJECT_ROOT, load_settings

    try:
        ensure_dagster_home(load_settings())
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    os.chdir(PROJECT_ROOT)
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    executable = shutil.which(command[0], path=search)
    if executable is None:
        raise click.UsageError(f"{command[0]} is not installed; run `make install` (or `uv sync`) first")
    os.execv(executable, command)


@main.command()
@click.option("--days", default=7, show_default=True, type=int, help="How many past days to run.")
def demo(days: int) -> None:
    """Everything end to end on this machine: emulators, admin API, the manual's set-up, runs, summary."""
    from pipeline.demo import run_demo

    sys.exit(run_demo(days=days))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--cliniko-port", default=8301, show_default=True, type=int)
@click.option("--birdeye-port", default=8302, show_default=True, type=int)
@click.option("--seed", default=42, show_default=True, type=int, help="Same seed and day, same data.")
@click.option("--size", default="demo", show_default=True, type=click.Choice(["tiny", "demo", "large"]))
@click.option("--shard", default="au4", show_default=True)
@click.option("--accounts", type=int, help="Cliniko accounts (API keys); overrides the size's number.")
@click.option("--businesses", type=int, help="Businesses per account; overrides the size's number.")
@click.option("--appointments", type=int, help="Appointments per account; overrides the size's number.")
@click.option("--rate-limit", default=200, show_default=True, type=int, help="Requests per window per key.")
@click.option("--rate-window", default=60.0, show_default=True, type=float, help="Window length in seconds.")
@click.option("--error-rate", default=0.0, show_default=True, type=float, help="Fraction of 5xx answers.")
@click.option("--slow-rate", default=0.0, show_default=True, type=float, help="Fraction of delayed answers.")
@click.option("--slow-seconds", default=0.5, show_default=True, type=float)
@click.option(
    "--drop-rate", default=0.0, show_default=True, type=float, help="Fraction of dropped connections."
)
@click.option("--malformed-json-rate", default=0.0, show_default=True, type=float)
@click.option("--malformed-record-rate", default=0.0, show_default=True, type=float)
@click.option("--request-log", type=click.Path(dir_okay=False), help="Append one JSON line per request here.")
@click.option(
    "--birdeye-key",
    "birdeye_keys",
    multiple=True,
    help="A Birdeye API key the emulator accepts for every business; repeatable.",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    help="Write the fake keys, business names and base URLs here as JSON once the emulators listen.",
)
@click.option(
    "--birdeye-record", type=click.Path(dir_okay=False), help="Append every check-in received here."
)
def sandbox(
    host: str,
    cliniko_port: int,
    birdeye_port: int,
    seed: int,
    size: str,
    shard: str,
    accounts: int | None,
    businesses: int | None,
    appointments: int | None,
    rate_limit: int,
    rate_window: float,
    error_rate: float,
    slow_rate: float,
    slow_seconds: float,
    drop_rate: float,
    malformed_json_rate: float,
    malformed_record_rate: float,
    request_log: str | None,
    birdeye_keys: tuple[str, ...],
    manifest: str | None,
    birdeye_record: str | None,
) -> None:
    """Serve the local Cliniko and Birdeye emulators with generated data (fake keys, printed below)."""
    from datetime import UTC, datetime
    from pathlib import Path

    from pipeline.masking import mask
    from pipeline.sandbox.birdeye_emulator import DEFAULT_API_KEY, BirdeyeEmulatorConfig, create_birdeye_app
    from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig, FaultConfig
    from pipeline.sandbox.generator import generate_preset
    from pipeline.sandbox.server import serve_sandbox, write_sandbox_manifest

    now = datetime.now(UTC)
    overrides = {"accounts": accounts, "businesses": businesses, "appointments": appointments}
    accounts = generate_preset(
        seed,
        size,
        today=now.date(),
        now=now,
        shard=shard,
        **{name: value for name, value in overrides.items() if value is not None},
    )
    faults = FaultConfig(
        seed=seed,
        error_rate=error_rate,
        slow_rate=slow_rate,
        slow_seconds=slow_seconds,
        drop_rate=drop_rate,
        malformed_json_rate=malformed_json_rate,
        malformed_record_rate=malformed_record_rate,
    )
    cliniko = ClinikoEmulator(
        ClinikoEmulatorConfig(
            accounts=accounts,
            shard=shard,
            rate_limit=rate_limit,
            rate_window_seconds=rate_window,
            faults=faults,
            request_log_path=Path(request_log) if request_log else None,
        )
    )
    cliniko_url = f"http://{host}:{cliniko_port}/v1"
    click.echo(f"Cliniko emulator: {cliniko_url}  (export CLINIKO_BASE_URL={cliniko_url})")
    for account in accounts:
        names = ", ".join(repr(b["business_name"].strip()) for b in account.businesses)
        click.echo(f"  {account.name}: API key {account.api_key}")
        counts = f"{len(account.appointments)} appointments, {len(account.patients)} patients"
        click.echo(f"    {counts}; businesses: {names}")
    if accounts:
        user_agent = "User-Agent: me (me@example.com)"
        click.echo(f"  try: curl -u {accounts[0].api_key}: -H '{user_agent}' {cliniko_url}/businesses")
    birdeye_url = f"http://{host}:{birdeye_port}/resources"
    birdeye = create_birdeye_app(
        BirdeyeEmulatorConfig(
            keys={key: None for key in birdeye_keys} or {DEFAULT_API_KEY: None},
            record_path=Path(birdeye_record) if birdeye_record else None,
            seed=seed,
        )
    )
    accepted = ", ".join(mask(key) for key in (birdeye_keys or (DEFAULT_API_KEY,)))
    click.echo(f"Birdeye emulator: {birdeye_url}  (export BIRDEYE_BASE_URL={birdeye_url}); keys {accepted}")
    apps = [(cliniko, cliniko_port), (birdeye, birdeye_port)]

    def write_manifest() -> None:
        if manifest:
            write_sandbox_manifest(Path(manifest), accounts, cliniko_url, birdeye_url)

    serve_sandbox(apps, host=host, on_bound=write_manifest)


@main.command()
@click.option("--mapping", "mappings", multiple=True, help="Birdeye business number (repeatable).")
@click.option(
    "--date", "dates", multiple=True, type=click.DateTime(["%Y-%m-%d"]), help="Partition date (repeatable)."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["uncertain", "failed"]),
    help="Ledger status to requeue (repeatable; default: both).",
)
@click.option("--appointment", "appointments", multiple=True, help="Cliniko appointment id (repeatable).")
@click.option(
    "--yes", is_flag=True, help="Move the listed rows to pending; without it the command only lists."
)
def requeue(
    mappings: tuple[str, ...],
    dates: tuple,
    statuses: tuple[str, ...],
    appointments: tuple[str, ...],
    yes: bool,
) -> None:
    """Put chosen `uncertain` or `failed` review requests back to pending (lists them first).

    An `uncertain` request may already have reached Birdeye: requeueing it can ask the patient twice.
    The next run of each listed partition posts the requeued rows.
    """
    from pipeline.automation.resources import split_legacy_warehouse
    from pipeline.registry import Registry
    from pipeline.settings import load_settings
    from pipeline.sink import requeue as requeue_rows

    settings = load_settings()
    split_legacy_warehouse(settings, Registry.open(settings))
    # Every group's ledger: one in PostgreSQL, or one in each group's warehouse.
    warehouses = [None] if settings.database_url else list(settings.warehouse_paths().values())
    rows = [
        row
        for path in warehouses
        for row in requeue_rows(
            path,
            database_url=settings.database_url,
            business_numbers=mappings or None,
            partition_dates=[d.date() for d in dates] or None,
            statuses=statuses or ("uncertain", "failed"),
            appointment_ids=appointments or None,
            dry_run=not yes,
        )
    ]
    for row in rows:
        click.echo(
            f"{row['business_number']}  {row['partition_date']}  appointment {row['appointment_id']}  "
            f"{row['status']}  attempts={row['attempts']}  "
            f"{row['error_code'] or '-'}: {row['error_message'] or ''}"
        )
    if not rows:
        click.echo("No ledger row matches.")
    elif yes:
        partitions = sorted({(str(r["partition_date"]), r["business_number"]) for r in rows})
        click.echo(f"{len(rows)} rows are pending again. Re-run their partitions to post them:")
        for day, mapping in partitions:
            click.echo(f"  cliniko-reviews run --date {day} --mapping {mapping}")
    else:
        click.echo(f"{len(rows)} rows would go back to pending. Run again with --yes to requeue them.")


if __name__ == "__main__":
    main()
