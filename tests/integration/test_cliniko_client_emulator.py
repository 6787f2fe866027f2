"""The Cliniko client against the local emulator over real HTTP on loopback."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cliniko import (
    ClinikoAuthError,
    ClinikoBadRequest,
    ClinikoClient,
    ClinikoForbidden,
    ClinikoUnavailable,
)
from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig, FaultConfig
from pipeline.sandbox.generator import NULL, Account, generate_account
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import Settings, load_settings
from pipeline.warehouse.pages import TypedPages, type_pages

DAY_FROM = datetime(2026, 1, 3, tzinfo=UTC)
DAY_BEFORE = datetime(2026, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account(7, businesses=4, appointments=1500, start=date(2026, 1, 1), end=date(2026, 1, 15))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(load_settings(), data_dir=tmp_path, cliniko_base_url=None)


@contextmanager
def serve(config: ClinikoEmulatorConfig) -> Iterator[tuple[str, ClinikoEmulator]]:
    """The emulator on a free loopback port, and the instance whose request log the test reads."""
    app = ClinikoEmulator(config)
    try:
        with running_cliniko(app) as url:
            yield url, app
    finally:
        app.close()


def client_for(url: str, key: str, settings: Settings, **kwargs: object) -> ClinikoClient:
    options: dict[str, object] = {"rate_limit_per_minute": 0, "backoff_initial": 0.01, "backoff_max": 0.05}
    options.update(kwargs)
    return ClinikoClient(key, settings=settings, base_url=url, **options)  # type: ignore[arg-type]


def appointments(c: ClinikoClient, business_ids: list[str]) -> TypedPages:
    return type_pages("appointments", c.individual_appointment_pages(business_ids, DAY_FROM, DAY_BEFORE))


def rows(typed: TypedPages) -> list[dict]:
    """The rows to store, as dicts (the quarantine must be empty)."""
    frame, quarantine = typed.split()
    assert quarantine == []
    return frame.to_dict("records")


def expected_appointment_ids(account: Account, business_ids: list[str]) -> list[str]:
    t = account.appointments
    lo, hi = DAY_FROM.timestamp(), DAY_BEFORE.timestamp()
    mask = (
        np.isin(t.business_id, [int(b) for b in business_ids])
        & (t.ends_at >= lo)
        & (t.ends_at < hi)
        & (t.deleted_at == NULL)
    )
    rows = np.flatnonzero(mask)
    rows = rows[np.lexsort((t.id[rows], t.ends_at[rows]))]
    return [str(int(i)) for i in t.id[rows]]


def test_appointments_are_filtered_by_business_and_window_over_many_pages(
    account: Account, settings: Settings
) -> None:
    business_ids = [b["id"] for b in account.businesses[:2]]
    expected = expected_appointment_ids(account, business_ids)
    assert len(expected) > 250  # several pages of 100
    with (
        serve(ClinikoEmulatorConfig([account])) as (url, app),
        client_for(url, account.api_key, settings) as c,
    ):
        got = rows(appointments(c, business_ids))
        log = app.request_log
    assert [r["appointment_id"] for r in got] == expected
    assert {r["cliniko_business_id"] for r in got} == set(business_ids)
    assert all(DAY_FROM <= r["ends_at"] < DAY_BEFORE for r in got)
    assert any(pd.notna(r["cancelled_at"]) for r in got) and any(pd.notna(r["archived_at"]) for r in got)
    assert not any(pd.notna(r["deleted_at"]) for r in got)
    assert c.stats.pages == len(log) == -(-len(expected) // 100)
    first = log[0]["query"]
    assert "per_page=100" in first and "archived_at:*" in first and "cancelled_at:*" in first
    assert f"business_id:={','.join(business_ids)}" in first
    assert "ends_at:>=2026-01-03T00:00:00Z" in first and "ends_at:<2026-01-09T00:00:00Z" in first


def test_patients_come_by_id_in_chunks_and_deleted_ones_are_absent(
    account: Account, settings: Settings
) -> None:
    wanted = [p["id"] for p in account.patients[:230]] + [p["id"] for p in account.deleted_patients[:5]]
    assert account.deleted_patients and any(p.get("archived_at") for p in account.patients[:230])
    with (
        serve(ClinikoEmulatorConfig([account])) as (url, app),
        client_for(url, account.api_key, settings) as c,
    ):
        got = rows(type_pages("patients", c.patient_pages(wanted + wanted[:10])))
        log = app.request_log
    assert sorted(r["patient_id"] for r in got) == sorted(p["id"] for p in account.patients[:230])
    assert len(log) == 3  # 235 distinct ids, 100 per request
    assert all(len(f"{e['path']}?{e['query']}") < 8000 for e in log)
    archived = {p["id"] for p in account.patients[:230] if p.get("archived_at")}
    assert archived <= {r["patient_id"] for r in got if pd.notna(r["archived_at"])}
    assert any(r["phone_numbers"] is not None and len(r["phone_numbers"]) for r in got)


def test_businesses_include_archived_ones(account: Account, settings: Settings) -> None:
    with serve(ClinikoEmulatorConfig([account])) as (url, _), client_for(url, account.api_key, settings) as c:
        got = rows(type_pages("businesses", c.business_pages()))
    live = [b for b in account.businesses if not b.get("deleted_at")]
    assert sorted(r["cliniko_business_id"] for r in got) == sorted(b["id"] for b in live)
    assert all(r["time_zone_identifier"] is None or "/" in r["time_zone_identifier"] for r in got)


def test_faults_are_retried_and_give_the_same_result_as_a_clean_run(
    account: Account, settings: Settings
) -> None:
    business_ids = [b["id"] for b in account.businesses]
    patient_ids = [p["id"] for p in account.patients[:300]]

    def run(faults: FaultConfig) -> tuple[list[dict], list[dict], ClinikoClient]:
        config = ClinikoEmulatorConfig([account], faults=faults)
        with serve(config) as (url, _), client_for(url, account.api_key, settings, max_retries=8) as c:
            return (
                rows(appointments(c, business_ids)),
                rows(type_pages("patients", c.patient_pages(patient_ids))),
                c,
            )

    clean_appointments, clean_patients, _ = run(FaultConfig())
    assert clean_appointments and clean_patients
    faults = FaultConfig(seed=3, error_rate=0.2, drop_rate=0.1, malformed_json_rate=0.1, slow_rate=0.05)
    faulty_appointments, patients, faulty = run(dataclasses.replace(faults, slow_seconds=0.05))
    assert str(faulty_appointments) == str(clean_appointments) and str(patients) == str(clean_patients)
    assert faulty.stats.retries > 0 and faulty.stats.requests > faulty.stats.pages


def test_a_server_that_keeps_failing_ends_in_cliniko_unavailable(
    account: Account, settings: Settings
) -> None:
    config = ClinikoEmulatorConfig([account], faults=FaultConfig(error_rate=1.0, error_statuses=(502,)))
    with serve(config) as (url, app), client_for(url, account.api_key, settings, max_retries=2) as c:
        with pytest.raises(ClinikoUnavailable, match="HTTP 502") as info:
            list(c.business_pages())
        assert len(app.request_log) == 3
    assert "after 3 attempts" in str(info.value)


def test_429_waits_until_the_reset_and_completes(account: Account, settings: Settings) -> None:
    config = ClinikoEmulatorConfig([account], rate_limit=2, rate_window_seconds=1.0)
    business_ids = [b["id"] for b in account.businesses]
    with serve(config) as (url, app), client_for(url, account.api_key, settings) as c:
        got = rows(appointments(c, business_ids))
        statuses = Counter(e["status"] for e in app.request_log)
    assert [r["appointment_id"] for r in got] == expected_appointment_ids(account, business_ids)
    assert statuses[429] == c.stats.rate_limited > 0
    assert c.stats.rate_limit_wait_seconds >= 0.9 * c.stats.rate_limited


def test_wrong_shard_key_gets_an_auth_error_naming_the_shard_not_the_key(
    account: Account, settings: Settings
) -> None:
    wrong_shard = account.api_key.rsplit("-", 1)[0] + "-au2"
    revoked = "X" * 40 + "-au4"
    with serve(ClinikoEmulatorConfig([account])) as (url, _):
        for key, shard in ((wrong_shard, "au2"), (revoked, "au4")):
            with client_for(url, key, settings) as c, pytest.raises(ClinikoAuthError) as info:
                list(c.business_pages())
            message = str(info.value)
            assert f"shard {shard}" in message and "127.0.0.1" in message
            assert "wrong shard also gets a plain 401" in message
            assert key not in message and key.rsplit("-", 1)[0] not in message
            assert key not in repr(c)


def test_forbidden_resource_is_named(account: Account, settings: Settings) -> None:
    config = ClinikoEmulatorConfig([account], forbidden={account.api_key: frozenset({"patients"})})
    with serve(config) as (url, _), client_for(url, account.api_key, settings) as c:
        assert list(c.business_pages())
        with pytest.raises(ClinikoForbidden, match="/patients"):
            list(c.patient_pages([account.patients[0]["id"]]))


def test_bad_request_shows_clinikos_message(account: Account, settings: Settings) -> None:
    with (
        serve(ClinikoEmulatorConfig([account])) as (url, _),
        client_for(url, account.api_key, settings) as c,
        pytest.raises(ClinikoBadRequest, match="This column is not searchable"),
    ):
        list(c._raw_pages("/patients", [[("q[]", "phone:=1")]]))


def test_malformed_records_are_quarantined_and_the_rest_validates(
    account: Account, settings: Settings
) -> None:
    faults = FaultConfig(seed=5, malformed_record_rate=0.1, empty_string_null_rate=0.2)
    business_ids = [b["id"] for b in account.businesses]
    config = ClinikoEmulatorConfig([account], faults=faults)
    with serve(config) as (url, _), client_for(url, account.api_key, settings) as c:
        typed = appointments(c, business_ids)
    frame, quarantine = typed.split()
    assert quarantine and len(frame) + len(quarantine) == len(typed.frame)
    assert len(quarantine) < 0.15 * len(typed.frame)
    assert all(q["reason"] for q in quarantine)


_WORKER = """
import dataclasses, sys, time
from pathlib import Path
from pipeline.cliniko.client import ClinikoClient
from pipeline.settings import load_settings

url, data_dir, start_at, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
key = sys.stdin.read()
settings = dataclasses.replace(load_settings(), data_dir=Path(data_dir), cliniko_base_url=None)
with ClinikoClient(key, settings=settings, base_url=url, rate_limit_per_minute=20, window_seconds=2.0) as c:
    time.sleep(max(0.0, start_at - time.time()))
    for _ in range(count):
        list(c.business_pages())
    sys.exit(3 if c.stats.rate_limited else 0)
"""


def test_four_processes_sharing_a_key_stay_under_the_limit(account: Account, tmp_path: Path) -> None:
    config = ClinikoEmulatorConfig([account], rate_limit=20, rate_window_seconds=2.0)
    with serve(config) as (url, app):
        start_at = time.time() + 2.5  # let every interpreter import before the race starts
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, url, str(tmp_path), str(start_at), "12"],
                stdin=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for p in procs:
            p.communicate(account.api_key, timeout=90)
        log = app.request_log
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert len(log) == 48 and {e["status"] for e in log} == {200}
    per_window = Counter(int(e["epoch"] // 2.0) for e in log)
    assert max(per_window.values()) <= 20
    stamps = sorted(e["epoch"] for e in log)
    assert max(sum(1 for t in stamps if s <= t < s + 2.0) for s in stamps) <= 20
    # Three windows at most (48 requests, 19 per window): slack for a loaded machine, never a fourth window.
    assert stamps[-1] - stamps[0] < 3 * 2.02
