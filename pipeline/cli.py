"""The `cliniko-reviews` command. Each subcommand imports its stage lazily so `--help` stays fast."""

from __future__ import annotations

import sys
from datetime import date

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
@click.option("--date", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First partition date.")
@click.option("--date-to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last partition date (inclusive).")
@click.option("--mapping", "mappings", multiple=True, help="Business number of a mapping; repeatable.")
def run(start, end, mappings: tuple[str, ...]) -> None:
    """Materialize the whole graph for those partitions of the active mappings, in process."""
    import dagster as dg

    from pipeline.automation.instance import ensure_dagster_home
    from pipeline.automation.runner import dates_between, render_summary, run_partitions, select_partitions
    from pipeline.automation.runner import summarize
    from pipeline.registry import Registry
    from pipeline.settings import load_settings

    settings = load_settings()
    ensure_dagster_home(settings)
    try:
        dates = dates_between(start.date(), end.date() if end else None)
        days = select_partitions(Registry.open(settings), dates, mappings)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not days:
        click.echo("No active mapping in the registry: nothing to run.")
        return
    with dg.DagsterInstance.get() as instance:
        outcomes = run_partitions(days, instance)
    render_summary(summarize(settings, outcomes), outcomes)
    failed = sum(not o.success for o in outcomes)
    click.echo(f"{len(outcomes) - failed} of {len(outcomes)} partition(s) succeeded.")
    sys.exit(1 if failed else 0)


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
    import os

    from pipeline.automation.instance import ensure_dagster_home
    from pipeline.settings import PROJECT_ROOT, load_settings

    ensure_dagster_home(load_settings())
    os.chdir(PROJECT_ROOT)
    os.execvp("dagster", ["dagster", "dev", "-w", "workspace.yaml"])


@main.command()
@click.option("--days", default=7, show_default=True, type=int, help="How many past days to run.")
def demo(days: int) -> None:
    """Everything end to end on this machine: emulators, admin API, the manual's set-up, runs, summary."""
    from pipeline.demo import run_demo

    sys.exit(run_demo(days=days))


if __name__ == "__main__":
    main()
