"""One warehouse file per integration group: a group's runs never wait on another group's, and a warehouse of
the releases before (one file for every group) is split into them on upgrade without sending anything twice.

Real parts: the Cliniko and Birdeye emulators over HTTP, `cliniko-reviews run` as its own process, a second
process holding a group's warehouse lock, DuckDB files on disk."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.automation.instance import ensure_dagster_home
from pipeline.automation.partitions import MappingDay
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.store import RegistryStore
from pipeline.runner import run_partitions
from pipeline.sandbox.birdeye_emulator import DEFAULT_API_KEY, BirdeyeEmulatorConfig, running_birdeye
from pipeline.sandbox.cliniko_emulator import ClinikoEmulatorConfig
from pipeline.sandbox.generator import generate_accounts
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import load_settings

TODAY = date.today()
HOLD_LOCK = """
import sys
from pipeline.warehouse.connection import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture
def clinics(tmp_path, monkeypatch):
    """Two integration groups (one Cliniko account each), one mapping each: business number -> group id."""
    accounts = generate_accounts(
        11,
        2,
        businesses=1,
        appointments=80,
        start=TODAY - timedelta(days=6),
        end=TODAY,
        now=datetime.now(UTC),
    )
    with (
        running_cliniko(ClinikoEmulatorConfig(accounts=accounts, shard="au4")) as cliniko_url,
        running_birdeye(BirdeyeEmulatorConfig(keys={DEFAULT_API_KEY: None})) as birdeye,
    ):
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        monkeypatch.setenv("CLINIKO_BASE_URL", cliniko_url)
        monkeypatch.setenv("BIRDEYE_BASE_URL", birdeye.base_url)
        settings = load_settings()
        ensure_dagster_home(settings)
        store = RegistryStore.open(settings)
        group_of = {}
        for k, account in enumerate(accounts):
            group, _ = store.create_group(
                str(800 + k),
                118,
                [
                    PropertyInput("cliniko.api.key", account.api_key, True, "p0"),
                    PropertyInput("birdeye.api.key", DEFAULT_API_KEY, True, "p1"),
                ],
                [TriggerInput(129, 1, None, "t0")],
            )
            name = account.businesses[0]["business_name"].strip()
            store.create_mapping(
                MappingInput(
                    str(900 + k), group["groupId"], [PropertyInput("cliniko.location.name", name, False, "p")]
                )
            )
            group_of[str(900 + k)] = group["groupId"]
        yield group_of, birdeye


def run(days: list[MappingDay]) -> None:
    with dg.DagsterInstance.get() as instance:
        outcomes = run_partitions(days, instance, show_progress=False)
    assert [(o.day, o.success, o.error) for o in outcomes] == [(d, True, None) for d in days]


def ledger(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "select business_number, appointment_id, status from sink.review_request_ledger order by all"
        ).fetchall()
    finally:
        con.close()


def test_each_group_writes_its_own_file_and_never_waits_on_another(clinics):
    group_of, birdeye = clinics
    settings = load_settings()
    (a, group_a), (b, group_b) = sorted(group_of.items())
    run([MappingDay(a, TODAY - timedelta(days=3)), MappingDay(b, TODAY - timedelta(days=3))])
    assert settings.warehouse_paths() == {g: settings.warehouse_path(g) for g in (group_a, group_b)}
    for number, group in group_of.items():  # a group's file holds its own mapping's rows only
        assert {row[0] for row in ledger(settings.warehouse_path(group))} == {number}

    # Another process holds group A's warehouse (a long write, say) while group B's next day runs, as its own
    # process, the way the command line runs it: B must finish while A's file is still held.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(settings.warehouse_path(group_a))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        day = (TODAY - timedelta(days=2)).isoformat()
        finished = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", "--date", day, "--mapping", b],
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
        )
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert holder.poll() is None  # A's lock was held the whole time
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    sent_b = {row[1] for row in ledger(settings.warehouse_path(group_b)) if row[2] == "sent"}
    posted = {r.appointment_id for r in birdeye.delivered()}
    assert sent_b and sent_b <= posted

    # The analysts' database shows both groups.
    con = duckdb.connect(str(settings.analytics_path), read_only=True)
    try:
        shown = con.execute("select distinct business_number from restriction_reasons order by 1").fetchall()
    finally:
        con.close()
    assert shown == [(a,), (b,)]


def test_an_old_single_warehouse_is_split_into_group_files_and_nothing_is_sent_twice(clinics, tmp_path):
    group_of, birdeye = clinics
    settings = load_settings()
    days = [MappingDay(number, TODAY - timedelta(days=2)) for number in sorted(group_of)]
    run(days)
    posted = len(birdeye.records())
    assert posted > 0
    before = {group: ledger(settings.warehouse_path(group)) for group in group_of.values()}

    # The layout of the release before: every group's tables in one `warehouse.duckdb`, alerts included.
    legacy = settings.legacy_warehouse_path
    con = duckdb.connect(str(legacy))
    try:
        for group in sorted(group_of.values()):
            con.execute(f"attach '{settings.warehouse_path(group)}' as g (read_only)")
            for schema, table, ddl in con.execute(
                "select schema_name, table_name, sql from duckdb_tables() where database_name = 'g' "
                "and table_name <> 'definitions'"  # each file's record of its DDL came after that layout
            ).fetchall():
                con.execute(f"create schema if not exists {schema}")
                exists = con.execute(
                    "select count(*) from duckdb_tables() where database_name = 'warehouse' "
                    "and schema_name = $s and table_name = $t",
                    {"s": schema, "t": table},
                ).fetchone()[0]
                if not exists:
                    con.execute(ddl)  # with its constraints
                if not (exists and schema == "seeds"):
                    con.execute(f"insert into {schema}.{table} select * from g.{schema}.{table}")
            con.execute("detach g")
    finally:
        con.close()
    for group in group_of.values():
        settings.warehouse_path(group).unlink()

    run(days)  # the same partitions again, on the upgraded release

    assert not legacy.exists() and legacy.with_name("warehouse.duckdb.before-groups").exists()
    assert {group: ledger(settings.warehouse_path(group)) for group in group_of.values()} == before
    assert len(birdeye.records()) == posted  # every request was sent before the upgrade: none again
