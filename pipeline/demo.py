"""`cliniko-reviews demo`: the whole product end to end on this machine, with nothing from the internet.

Starts the sandbox emulators and the admin API as real processes, sets the clinics up with the support
manual's curl payloads over HTTP, runs last week's partitions in this process, prints the summary, and stops
every process it started.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

import click
import httpx

from pipeline.registry.manual import ENTERPRISE_LOCATION_NUMBER, SMB_BUSINESS_NUMBER, STEP
from pipeline.settings import Settings, load_settings

DEMO_SEED = 7
DEMO_BIRDEYE_KEY = "demo-birdeye-key-0001"
ENTERPRISE_ID = "159894396900000"  # the parent (Enterprise ID) of the enterprise locations
TEST_LOCATION_NUMBER = "159894396935988"
BETA_LOCATION_NUMBER = "159894396935989"


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def wait_until(
    ready: Callable[[], object], what: str, process: subprocess.Popen, timeout: float = 60.0
) -> None:
    """Poll `ready()` until it is true; a connection error or bad answer counts as not yet. Raises a
    `click.ClickException` naming `what` if `process` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"{what} exited with status {process.returncode} before it was ready")
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{what} was not ready after {timeout:.0f} s")


@contextmanager
def _process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A child process whose output goes to `log_path`, stopped (then killed) on the way out."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _payload(step: str, **changes) -> dict:
    """The manual's payload for `step`, with the demo's values put in."""
    payload = STEP[step].payload
    properties = changes.pop("properties", None)
    payload.update(changes)
    if properties is not None:
        key = (
            "integrationGroupProperties"
            if "integrationGroupProperties" in payload
            else "integrationProperties"
        )
        payload[key] = [
            {"propertyKey": k, "propertyValue": v, "isSecure": k.endswith(".api.key")}
            for k, v in properties.items()
        ]
    return payload


def set_up_clinics(admin_url: str, accounts: list[dict]) -> list[dict]:
    """The manual's set-up with the sandbox's accounts: an SMB and an enterprise integration.

    Returns the mappings as the admin API lists them (API keys masked).
    """
    smb, enterprise = accounts[0], accounts[-1]
    with httpx.Client(base_url=admin_url, timeout=10) as admin:

        def call(method: str, path: str, body: dict | None = None) -> dict:
            response = admin.request(method, path, json=body)
            if response.status_code >= 400:
                raise click.ClickException(f"{method} {path} -> {response.status_code}: {response.text}")
            return response.json()

        smb_group = call(
            "PUT",
            "/integration/add/businessintegrationgroup",
            _payload(
                "smb_group",
                properties={
                    "cliniko.api.key": smb["api_key"],
                    "birdeye.api.key": DEMO_BIRDEYE_KEY,
                    "customer.fetch.delay": "0",
                },
            ),
        )
        call("GET", "/integration/trigger/integrationtriggers/sourceid/118")
        call(
            "POST",
            "/integration/update/businessintegrationgroup?replaceTriggers=true",
            {**STEP["replace_triggers"].payload, "groupId": smb_group["groupId"]},
        )
        call(
            "PUT",
            "/integration/add/businessintegrationmapping",
            _payload(
                "smb_mapping",
                businessNumber=int(SMB_BUSINESS_NUMBER),
                integrationGroupId=smb_group["groupId"],
                properties={"cliniko.location.name": smb["businesses"][0], "customer.fetch.delay": "0"},
            ),
        )
        enterprise_group = call(
            "PUT",
            "/integration/add/businessintegrationgroup",
            _payload(
                "enterprise_group",
                parentBusinessNumber=int(ENTERPRISE_ID),
                properties={
                    "cliniko.api.key": enterprise["api_key"],
                    "birdeye.api.key": DEMO_BIRDEYE_KEY,
                    "customer.fetch.delay": "1",
                    "customer.cooloff.days": "30",
                },
            ),
        )
        locations = [
            (ENTERPRISE_LOCATION_NUMBER, ", ".join(enterprise["businesses"][1:3]), False, False),
            (TEST_LOCATION_NUMBER, enterprise["businesses"][3], True, False),
            (BETA_LOCATION_NUMBER, enterprise["businesses"][4], False, True),
        ]
        for business_number, names, test, beta in locations:
            call(
                "PUT",
                "/integration/add/businessintegrationmapping",
                _payload(
                    "enterprise_mapping",
                    businessNumber=int(business_number),
                    integrationGroupId=enterprise_group["groupId"],
                    properties={"cliniko.location.name": names},
                    test=test,
                    beta=beta,
                ),
            )
        return call("GET", "/admin/mappings")["mappings"]


@contextmanager
def local_services(
    data_dir: Path, *, seed: int = DEMO_SEED, size: str = "demo", birdeye_record: Path | None = None
) -> Iterator[tuple[dict[str, str], str, list[dict]]]:
    """The sandbox emulators and the admin API as real processes on free ports, stopped on the way out.

    Yields the environment a run needs (DATA_DIR and the emulators' base URLs), the admin API's URL and the
    sandbox's Cliniko accounts (fake keys and business names).
    """
    logs = data_dir / "demo_logs"
    logs.mkdir(parents=True, exist_ok=True)
    cliniko_port, birdeye_port, admin_port = _free_port(8301), _free_port(8302), _free_port(8300)
    manifest = data_dir / "sandbox.json"
    manifest.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "CLINIKO_BASE_URL": f"http://127.0.0.1:{cliniko_port}/v1",
        "BIRDEYE_BASE_URL": f"http://127.0.0.1:{birdeye_port}/resources",
    }
    cli = [sys.executable, "-m", "pipeline.cli"]
    sandbox_args = [
        *cli,
        "sandbox",
        f"--cliniko-port={cliniko_port}",
        f"--birdeye-port={birdeye_port}",
        f"--seed={seed}",
        f"--size={size}",
        f"--birdeye-key={DEMO_BIRDEYE_KEY}",
        f"--manifest={manifest}",
    ]
    if birdeye_record is not None:
        sandbox_args.append(f"--birdeye-record={birdeye_record}")
    with ExitStack() as stack:
        sandbox = stack.enter_context(_process(sandbox_args, env, logs / "sandbox.log"))
        wait_until(manifest.exists, "the sandbox emulators", sandbox)
        accounts = json.loads(manifest.read_text())["cliniko_accounts"]
        admin = stack.enter_context(
            _process([*cli, "admin", f"--port={admin_port}"], env, logs / "admin.log")
        )
        admin_url = f"http://127.0.0.1:{admin_port}"
        wait_until(lambda: httpx.get(f"{admin_url}/admin/health").is_success, "the admin API", admin)
        yield env, admin_url, accounts


def run_demo(settings: Settings | None = None, *, days: int = 7) -> int:
    """Everything end to end; returns the exit status (non-zero if any partition failed)."""
    from pipeline.automation.instance import ensure_dagster_home

    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"Data directory: {settings.data_dir}")
    with local_services(settings.data_dir) as (env, admin_url, accounts):
        click.echo(f"Sandbox: Cliniko on {env['CLINIKO_BASE_URL']}, Birdeye on {env['BIRDEYE_BASE_URL']}")
        click.echo(f"Admin API on {admin_url}; setting the clinics up with the manual's curl payloads")
        for mapping in set_up_clinics(admin_url, accounts):
            flags = [f for f in ("test", "beta") if mapping.get(f)]
            click.echo(
                f"  mapping {mapping['businessNumber']} (group {mapping['integrationGroupId']})"
                f"{' [' + ', '.join(flags) + ']' if flags else ''}"
            )
        os.environ.update({k: env[k] for k in ("DATA_DIR", "CLINIKO_BASE_URL", "BIRDEYE_BASE_URL")})
        ensure_dagster_home(settings)
        status = _run_last_days(days)

    click.echo(
        "\nThe same state, four ways:\n"
        "  Dagster UI:   make ui   (then open http://127.0.0.1:3000: assets, partitions, checks, plots)\n"
        '  SQL:          uv run cliniko-reviews sql "from restriction_reasons limit 20"\n'
        f"  Notebook:     duckdb.connect('{settings.analytics_path}', read_only=True)\n"
        "  Calendar:     uv run cliniko-reviews status   (each mapping's open days, next due time, alerts)\n"
        "To materialize from the UI, start the emulators first: "
        f"`uv run cliniko-reviews sandbox --seed {DEMO_SEED} --birdeye-key {DEMO_BIRDEYE_KEY}` "
        "and export CLINIKO_BASE_URL / BIRDEYE_BASE_URL as it prints."
    )
    return status


def _run_last_days(days: int) -> int:
    import dagster as dg

    from pipeline.registry import Registry
    from pipeline.runner import render_summary, run_partitions, select_partitions, summarize

    settings = load_settings()
    today = date.today()
    dates = [today - timedelta(days=i) for i in range(days, 0, -1)]
    partitions = select_partitions(Registry.open(settings), dates)
    click.echo(
        f"Running {len(partitions)} partitions ({dates[0]} .. {dates[-1]} x "
        f"{len(partitions) // len(dates)} active mappings)"
    )
    with dg.DagsterInstance.get() as instance:
        outcomes = run_partitions(partitions, instance)
    click.echo(render_summary(summarize(settings, outcomes), outcomes))
    failed = sum(not o.success for o in outcomes)
    click.echo(f"{len(outcomes) - failed} of {len(outcomes)} partition(s) succeeded.")
    return 1 if failed else 0
