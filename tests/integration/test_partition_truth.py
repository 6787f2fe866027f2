"""What the Dagster UI shows of one mapping-day is that mapping-day's: an asset run without the data it reads
fails and says what is missing (no green partition with nothing in it), and a check result belongs to its
partition, so one failed partition turns only its own checks red.

Real partitions materialized in process against the Cliniko emulator, on a SQLite instance that a real
`dagster-webserver` then serves: the checks are read back through its GraphQL API, as the UI reads them."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
from ingest_support import INGEST_ASSETS, cliniko_sandbox, event_log_text
from webserver_support import dagster_webserver, graphql

from pipeline.assets.models import appointment_eligibility
from pipeline.automation.partitions import MappingDay
from pipeline.sandbox.generator import generate_account
from pipeline.warehouse.models import CHECKS

DAY = date(2026, 1, 6)
LOCATIONS = "Sydney CBD Physio"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    account = generate_account(11, appointments=300, start=date(2026, 1, 1), end=date(2026, 1, 10))
    with cliniko_sandbox(tmp_path, monkeypatch, account) as sandbox:
        sandbox.map("5001", LOCATIONS)
        yield sandbox


def test_the_models_without_the_partitions_cliniko_data_fail_and_name_what_is_missing(sandbox):
    with dg.instance_for_test() as instance:
        result = sandbox.materialize(
            instance, "5001", DAY, assets=[appointment_eligibility], raise_on_error=False
        )
        assert not result.success
        log = event_log_text(instance, result.run_id)
        assert (
            "Partition 2026-01-06|5001 (mapping 5001, 2026-01-06): cliniko_appointments, cliniko_patients, "
            "cliniko_appointment_types was never materialized for it, so appointment_eligibility has nothing "
            "to work on and was not built."
        ) in log
        assert "cliniko-reviews run --date 2026-01-06 --mapping 5001" in log
        assert instance.get_latest_materialization_event(dg.AssetKey("appointment_eligibility")) is None
        # Once the partition's Cliniko data is loaded (by any run), the models alone build it.
        sandbox.materialize(instance, "5001", DAY)
        assert sandbox.materialize(instance, "5001", DAY, assets=[appointment_eligibility]).success


CHECK_EXECUTIONS = """
query ($check: String!, $partition: String) {
  assetCheckExecutions(
    assetKey: {path: ["appointment_eligibility"]}, checkName: $check, partition: $partition, limit: 5
  ) { status partition runId }
}
"""


def test_a_failed_partition_turns_only_its_own_checks_red(sandbox, tmp_path):
    """As the UI shows it: the webserver's GraphQL API over the instance the runs wrote to."""
    good, bad = MappingDay("5001", DAY), MappingDay("5001", date(2026, 1, 7))
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        whole = [*INGEST_ASSETS, appointment_eligibility]
        done = sandbox.materialize(instance, "5001", DAY, assets=whole)
        [built] = [m for m in done.asset_materializations_for_node("appointment_eligibility")]
        # Which clinic the partition key means, and its own recent days (the plots mix every mapping's).
        assert built.metadata["mapping"].value == LOCATIONS
        eligible, candidates = built.metadata["eligible"].value, built.metadata["candidates"].value
        assert f"| {DAY} | {candidates} | {eligible} | this run |" in built.metadata["last_14_days"].value
        failed = sandbox.materialize(
            instance, "5001", bad.partition_date, assets=[appointment_eligibility], raise_on_error=False
        )
        assert not failed.success
    with dagster_webserver(home, sandbox.data_dir, tmp_path / "webserver.log") as url:
        for check in CHECKS:
            latest = {
                str(day): graphql(url, CHECK_EXECUTIONS, {"check": check, "partition": str(day)})[
                    "assetCheckExecutions"
                ]
                for day in (good, bad)
            }
            assert [(e["status"], e["partition"]) for e in latest[str(good)]] == [("SUCCEEDED", str(good))]
            assert [(e["status"], e["runId"]) for e in latest[str(bad)]] == [
                ("EXECUTION_FAILED", failed.run_id)
            ]
            unpartitioned = graphql(url, CHECK_EXECUTIONS, {"check": check, "partition": ""})
            assert unpartitioned["assetCheckExecutions"] == []  # nothing the whole asset shares
