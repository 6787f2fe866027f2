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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--cliniko-port", default=8301, show_default=True, type=int)
@click.option("--birdeye-port", default=8302, show_default=True, type=int)
@click.option("--seed", default=42, show_default=True, type=int, help="Same seed and day, same data.")
@click.option("--size", default="demo", show_default=True, type=click.Choice(["tiny", "demo", "large"]))
@click.option("--shard", default="au4", show_default=True)
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
def sandbox(
    host: str,
    cliniko_port: int,
    birdeye_port: int,
    seed: int,
    size: str,
    shard: str,
    rate_limit: int,
    rate_window: float,
    error_rate: float,
    slow_rate: float,
    slow_seconds: float,
    drop_rate: float,
    malformed_json_rate: float,
    malformed_record_rate: float,
    request_log: str | None,
) -> None:
    """Serve the local Cliniko and Birdeye emulators with generated data (fake keys, printed below)."""
    from datetime import UTC, datetime
    from pathlib import Path

    from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig, FaultConfig
    from pipeline.sandbox.generator import generate_preset
    from pipeline.sandbox.server import serve_sandbox

    now = datetime.now(UTC)
    accounts = generate_preset(seed, size, today=now.date(), now=now, shard=shard)
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
    # The Birdeye emulator (pipeline/sandbox/birdeye_emulator.py, another helper's) joins this list as
    # (app, birdeye_port) once it lands; serve_sandbox runs every (app, port) in this process.
    apps = [(cliniko, cliniko_port)]
    click.echo(f"Birdeye emulator port (not served yet): {birdeye_port}")
    serve_sandbox(apps, host=host)


if __name__ == "__main__":
    main()
