"""The `cliniko-reviews` command. Each subcommand imports its stage lazily so `--help` stays fast."""

from __future__ import annotations

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
    from pipeline.settings import load_settings
    from pipeline.sink import requeue as requeue_rows

    rows = requeue_rows(
        load_settings().warehouse_path,
        business_numbers=mappings or None,
        partition_dates=[d.date() for d in dates] or None,
        statuses=statuses or ("uncertain", "failed"),
        appointment_ids=appointments or None,
        dry_run=not yes,
    )
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
