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


if __name__ == "__main__":
    main()
