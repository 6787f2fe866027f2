"""`cliniko-reviews run --workers N`: partitions of different groups run in separate processes, side by side,
against real emulators, and end up in the one warehouse exactly as sequential runs would leave them."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from pipeline.automation.instance import ensure_dagster_home
from pipeline.automation.partitions import MappingDay
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.store import RegistryStore
from pipeline.runner import run_partitions_in_workers, summarize
from pipeline.sandbox.birdeye_emulator import DEFAULT_API_KEY, BirdeyeEmulatorConfig, create_birdeye_app
from pipeline.sandbox.cliniko_emulator import ClinikoEmulatorConfig
from pipeline.sandbox.generator import generate_accounts
from pipeline.sandbox.server import running_app, running_cliniko
from pipeline.settings import load_settings


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    today = date.today()
    accounts = generate_accounts(
        5,
        2,
        businesses=2,
        appointments=120,
        start=today - timedelta(days=5),
        end=today,
        now=datetime.now(UTC),
    )
    birdeye = create_birdeye_app(BirdeyeEmulatorConfig(keys={DEFAULT_API_KEY: None}))
    with (
        running_cliniko(ClinikoEmulatorConfig(accounts=accounts, shard="au4")) as cliniko_url,
        running_app(birdeye) as birdeye_url,
    ):
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        monkeypatch.setenv("CLINIKO_BASE_URL", cliniko_url)
        monkeypatch.setenv("BIRDEYE_BASE_URL", f"{birdeye_url}/resources")
        yield accounts


def test_two_groups_run_in_two_workers_and_both_land_in_the_warehouse(sandbox):
    settings = load_settings()
    store = RegistryStore.open(settings)
    group_of = {}
    for k, account in enumerate(sandbox):
        group, _ = store.create_group(
            str(500 + k),
            118,
            [
                PropertyInput("cliniko.api.key", account.api_key, True, "p0"),
                PropertyInput("birdeye.api.key", DEFAULT_API_KEY, True, "p1"),
            ],
            [TriggerInput(129, 1, None, "t0")],
        )
        business_number = str(600 + k)
        name = account.businesses[0]["business_name"].strip()
        store.create_mapping(
            MappingInput(
                business_number, group["groupId"], [PropertyInput("cliniko.location.name", name, False, "p")]
            )
        )
        group_of[business_number] = group["groupId"]
    yesterday = date.today() - timedelta(days=1)
    days = [MappingDay(bn, yesterday) for bn in group_of]
    ensure_dagster_home(settings)
    with dg.DagsterInstance.get() as instance:
        outcomes = run_partitions_in_workers(days, group_of, 2, instance)
        runs = instance.get_run_records()
    assert [(o.day, o.success, o.error) for o in outcomes] == [(d, True, None) for d in days]
    assert len({r.dagster_run.tags.get("dagster/partition") for r in runs}) == 2
    summaries = summarize(settings, outcomes)
    assert [s.business_number for s in summaries] == sorted(group_of)
    assert all(s.candidates > 0 and s.failed == 0 for s in summaries), summaries
