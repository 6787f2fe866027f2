"""What the Dagster UI shows of one mapping-day is that mapping-day's: an asset run without the data it reads
fails and says what is missing (no green partition with nothing in it), and a check result belongs to its
partition, so one failed partition turns only its own checks red.

Real partitions materialized in process against the Cliniko emulator, on a SQLite instance (the checks'
per-partition state is what the UI's asset lineage and checks tab read: `get_asset_check_partition_info`)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
from ingest_support import INGEST_ASSETS, cliniko_sandbox, event_log_text

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
            "Partition 2026-01-06|5001 (mapping 5001, 2026-01-06): cliniko_appointments, cliniko_patients "
            "was never materialized for it, so appointment_eligibility has nothing to work on and was not "
            "built."
        ) in log
        assert "cliniko-reviews run --date 2026-01-06 --mapping 5001" in log
        assert instance.get_latest_materialization_event(dg.AssetKey("appointment_eligibility")) is None
        # Once the partition's Cliniko data is loaded (by any run), the models alone build it.
        sandbox.materialize(instance, "5001", DAY)
        assert sandbox.materialize(instance, "5001", DAY, assets=[appointment_eligibility]).success


def test_a_failed_partition_turns_only_its_own_checks_red(sandbox):
    good, bad = MappingDay("5001", DAY), MappingDay("5001", date(2026, 1, 7))
    with dg.instance_for_test() as instance:
        assert sandbox.materialize(
            instance, "5001", DAY, assets=[*INGEST_ASSETS, appointment_eligibility]
        ).success
        failed = sandbox.materialize(instance, "5001", bad.partition_date, assets=[appointment_eligibility],
                                     raise_on_error=False)  # fmt: skip
        assert not failed.success
        keys = [dg.AssetCheckKey(dg.AssetKey("appointment_eligibility"), name) for name in CHECKS]
        infos = instance.event_log_storage.get_asset_check_partition_info(keys)
    # The failed run's checks stay planned in a failed run (the UI shows them failed), for its partition only.
    status = {
        (i.check_key.name, i.partition_key): (i.latest_execution_status.value, i.latest_planned_run_id)
        for i in infos
    }
    assert {key: state for key, (state, _) in status.items() if key[1] == str(good)} == {
        (name, str(good)): "SUCCEEDED" for name in CHECKS
    }
    assert {key: value for key, value in status.items() if key[1] != str(good)} == {
        (name, str(bad)): ("PLANNED", failed.run_id) for name in CHECKS
    }
