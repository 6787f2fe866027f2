"""`DATABASE_URL` puts Dagster's instance (runs, events, schedules) and the per-key request budgets in
PostgreSQL: runs of the command line keep them there and nowhere on the host, and the URL's password appears
in no file, log or table.

Real parts: a PostgreSQL server of Debian's package (tests/postgres_server.py), the Cliniko and Birdeye
emulators over HTTP, `cliniko-reviews run` as its own process."""

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import psycopg2
import pytest

from pipeline.automation.instance import DAGSTER_YAML, ensure_dagster_home
from pipeline.automation.partitions import MappingDay
from pipeline.registry.inputs import MappingInput, PropertyInput, TriggerInput
from pipeline.registry.store import RegistryStore
from pipeline.sandbox.birdeye_emulator import DEFAULT_API_KEY, BirdeyeEmulatorConfig, running_birdeye
from pipeline.sandbox.cliniko_emulator import ClinikoEmulatorConfig
from pipeline.sandbox.generator import generate_accounts
from pipeline.sandbox.server import running_cliniko
from pipeline.settings import load_settings

TODAY = date.today()
PASSWORD = "pg-secret-7f3a"  # PostgreSQL's trust authentication ignores it; nothing may show it


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")


def test_the_command_lines_runs_are_kept_in_postgresql_and_the_password_nowhere(
    database_url, tmp_path, monkeypatch
):
    accounts = generate_accounts(
        5, 1, businesses=1, appointments=60, start=TODAY - timedelta(days=4), end=TODAY, now=datetime.now(UTC)
    )
    with (
        running_cliniko(ClinikoEmulatorConfig(accounts=accounts, shard="au4")) as cliniko_url,
        running_birdeye(BirdeyeEmulatorConfig(keys={DEFAULT_API_KEY: None})) as birdeye,
    ):
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        monkeypatch.setenv("CLINIKO_BASE_URL", cliniko_url)
        monkeypatch.setenv("BIRDEYE_BASE_URL", birdeye.base_url)
        monkeypatch.setenv("DATABASE_URL", with_password(database_url))
        settings = load_settings()
        home = ensure_dagster_home(settings)
        store = RegistryStore.open(settings)
        group, _ = store.create_group(
            "801",
            118,
            [
                PropertyInput("cliniko.api.key", accounts[0].api_key, True, "p0"),
                PropertyInput("birdeye.api.key", DEFAULT_API_KEY, True, "p1"),
            ],
            [TriggerInput(129, 1, None, "t0")],
        )
        name = accounts[0].businesses[0]["business_name"].strip()
        store.create_mapping(
            MappingInput("901", group["groupId"], [PropertyInput("cliniko.location.name", name, False, "p")])
        )
        days = [TODAY - timedelta(days=3), TODAY - timedelta(days=2)]
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", f"--date={days[0]}", f"--date-to={days[1]}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert birdeye.delivered()

    con = psycopg2.connect(database_url)
    try:
        with con.cursor() as cur:
            cur.execute("select status, count(*) from runs group by status")
            assert dict(cur.fetchall()) == {"SUCCESS": 2}
            cur.execute(
                "select partition from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
                "and asset_key = %s order by partition",
                ('["review_requests"]',),
            )
            assert [row[0] for row in cur.fetchall()] == [MappingDay("901", day).key for day in days]
            cur.execute("select count(*) from event_logs where event like %s", (f"%{PASSWORD}%",))
            assert cur.fetchone()[0] == 0
            # The Cliniko and Birdeye keys' budgets are there too, each named by a hash, with its grants.
            cur.execute("select split_part(budget, '-', 1), array_length(stamps, 1) from rate_budgets")
            budgets = dict(cur.fetchall())
            assert set(budgets) == {"cliniko", "birdeye"}
            cur.execute("select count(*) from rate_budgets where budget like %s", (f"%{DEFAULT_API_KEY}%",))
            assert cur.fetchone()[0] == 0
    finally:
        con.close()

    # Nothing of Dagster's storage on the host, and the password in no file of DATA_DIR or in the output.
    assert not list(home.rglob("*.db"))
    assert not list(settings.rate_limit_dir.glob("*"))
    assert "env: DAGSTER_POSTGRES_URL" in (home / "dagster.yaml").read_text()
    assert PASSWORD not in done.stdout + done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_database_url_with_a_dagster_yaml_that_keeps_sqlite_is_refused_in_words(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text(DAGSTER_YAML)  # written by a run before DATABASE_URL
    monkeypatch.setenv("DATABASE_URL", "postgresql://dagster@db.internal:5432/dagster")
    with pytest.raises(ValueError, match="keeps Dagster's runs in SQLite") as refused:
        ensure_dagster_home(load_settings())
    assert "env: DAGSTER_POSTGRES_URL" in str(refused.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
    ],
)
def test_database_url_takes_postgresqls_spellings(monkeypatch, given, expected):
    monkeypatch.setenv("DATABASE_URL", given)
    assert load_settings().database_url == expected


def test_a_database_url_of_another_server_is_refused_without_its_password(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://u:hunter2@h/d")
    with pytest.raises(ValueError, match="must be a PostgreSQL URL") as refused:
        load_settings()
    assert "hunter2" not in str(refused.value)


def test_a_password_with_a_raw_percent_is_refused_without_repeating_it(monkeypatch):
    """psycopg2 would fail later with `invalid percent-encoded token: "s3cr%zzet"`, the password in a run's
    failure; the setting is refused at start instead, in words."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:s3cr%zzet@h/d")
    with pytest.raises(ValueError, match="percent-encode the user name and password") as refused:
        load_settings()
    assert "s3cr" not in str(refused.value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:s3cr%25zzet@h/d")  # encoded: accepted as it is
    assert load_settings().database_url == "postgresql://u:s3cr%25zzet@h/d"


def test_a_registry_file_with_clinics_is_not_silently_left_behind_by_database_url(
    database_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    store = RegistryStore.open(load_settings())  # the registry file this deployment ran on until now
    store.create_group(
        "801",
        118,
        [PropertyInput("cliniko.api.key", "sandbox-key-abcdef-au4", True, "p0")],
        [TriggerInput(129, 1, None, "t0")],
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    with pytest.raises(RuntimeError, match=r"holds 1 integration group\(s\) that would no longer run"):
        RegistryStore.open(load_settings())
    assert [group["groupId"] for group in store.groups()] == [22253]  # the file is as it was
