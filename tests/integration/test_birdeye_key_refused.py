"""Birdeye refusing a mapping's key is never green (SPEC §8): the run fails with an alert, nothing is lost,
and once the key is fixed the next run posts every request once and closes the partition."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import pytest
from webhook_receiver import webhook_receiver

from pipeline.automation.instance import ensure_dagster_home
from pipeline.automation.partitions import MappingDay
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.store import RegistryStore
from pipeline.runner import run_partitions
from pipeline.sandbox.birdeye_emulator import BirdeyeEmulatorConfig, running_birdeye
from pipeline.sandbox.cliniko_emulator import ClinikoEmulatorConfig
from pipeline.sandbox.generator import generate_account
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import load_settings

GOOD_KEY = "birdeye-key-accepted-0001"
WRONG_KEY = "birdeye-key-revoked-9999"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    today = date.today()
    account = generate_account(
        11, businesses=2, appointments=200, start=today - timedelta(days=6), end=today, now=datetime.now(UTC)
    )
    with (
        running_cliniko(ClinikoEmulatorConfig(accounts=[account])) as cliniko_url,
        running_birdeye(BirdeyeEmulatorConfig(keys={GOOD_KEY: None})) as birdeye,
        webhook_receiver() as receiver,
    ):
        for name, value in {
            "DATA_DIR": str(tmp_path),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "CLINIKO_BASE_URL": cliniko_url,
            "BIRDEYE_BASE_URL": birdeye.base_url,
            "ALERT_WEBHOOK_URL": receiver.url,
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("REGISTRY_SECRET_KEY", raising=False)
        yield account, birdeye, receiver


def analytics(sql: str) -> list[tuple]:
    with duckdb.connect(str(load_settings().analytics_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_refused_key_fails_the_run_keeps_the_requests_and_a_fixed_key_sends_them(sandbox):
    account, birdeye, receiver = sandbox
    settings = load_settings()
    store = RegistryStore.open(settings)
    group, _ = store.create_group(
        "800",
        118,
        [
            PropertyInput("cliniko.api.key", account.api_key, True, "p0"),
            PropertyInput("birdeye.api.key", WRONG_KEY, True, "p1"),
        ],
        [TriggerInput(129, 1, None, "t0")],
    )
    name = account.businesses[0]["business_name"].strip()
    store.create_mapping(
        MappingInput("801", group["groupId"], [PropertyInput("cliniko.location.name", name, False, "p")])
    )
    day = MappingDay("801", date.today() - timedelta(days=2))  # its clinics' day is over everywhere
    ensure_dagster_home(settings)

    with dg.DagsterInstance.get() as instance:
        [refused] = run_partitions([day], instance, show_progress=False)
    assert not refused.success
    assert "refused the API key ****9999" in refused.error and WRONG_KEY not in refused.error
    eligible = analytics("select count(*) from restriction_reasons where is_eligible")[0][0]
    assert eligible > 0
    assert analytics("select status, count(*) from review_requests group by all") == [("pending", eligible)]
    assert analytics("select state from coverage where partition_date = current_date - 2") == [("failed",)]
    assert analytics("select kind, resolved_at is null from alerts") == [("birdeye_auth", True)]
    assert [a["json"]["kind"] for a in receiver.received] == ["birdeye_auth"]
    assert len(birdeye.records()) <= settings.birdeye_concurrency * 2  # the first batch, then it stopped

    store.update_group(  # support fixes the key; nobody touches the ledger
        group["groupId"],
        triggers=None,
        replace_triggers=False,
        properties=[PropertyInput("birdeye.api.key", GOOD_KEY, True, "p")],
    )
    with dg.DagsterInstance.get() as instance:
        [sent] = run_partitions([day], instance, show_progress=False)
    assert sent.success, sent.error
    assert analytics("select status, count(*) from review_requests group by all") == [("sent", eligible)]
    delivered = [r for r in birdeye.records() if r.delivered]
    assert len(delivered) == eligible == len({r.appointment_id for r in delivered})
    assert analytics("select state from coverage where partition_date = current_date - 2") == [("closed",)]
    assert analytics("select kind, resolved_at is null from alerts") == [("birdeye_auth", False)]
