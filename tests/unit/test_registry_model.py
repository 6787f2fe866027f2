"""Registry rules without HTTP: properties, schedule defaults, Secret, migrations, the read API."""

from __future__ import annotations

import pickle
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pipeline.cliniko import InvalidApiKey, shard_of
from pipeline.registry import MappingConfig, Registry, Secret
from pipeline.registry.api import bind_refusal
from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
from pipeline.registry.model import (
    RegistryError,
    default_next_run_time,
    effective_properties,
    normalize_property,
    parse_business_number,
    parse_run_time,
)
from pipeline.registry.schema import SCHEMA_VERSION, migrate
from pipeline.registry.secrets import SecretBox, SecretKeyError, load_fernet
from pipeline.registry.store import RegistryStore
from pipeline.settings import load_settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [(159894373919788, "159894373919788"), ("159894373919788", "159894373919788"), (" 0042 ", "42")],
)
def test_business_numbers_are_kept_as_digit_strings(value: object, expected: str) -> None:
    assert parse_business_number(value, "businessNumber") == expected


@pytest.mark.parametrize("value", [0, -1, "-1", "1e5", 1.0, True, None, "", "1" * 20, [1]])
def test_malformed_business_numbers_are_refused(value: object) -> None:
    with pytest.raises(RegistryError) as error:
        parse_business_number(value, "businessNumber")
    assert error.value.field == "businessNumber"


@pytest.mark.parametrize(
    ("key", "shard"),
    [
        ("abc-def-uk2", "uk2"),  # the suffix after the last '-'
        ("abcdef", "au1"),  # an old key without a suffix lives on au1
        ("abc-notashardatall", "au1"),  # a suffix that does not look like a shard is part of an old key
        ("abc-legacy-k3y", "au1"),
        ("abc-AU2", "au2"),  # shard suffixes are case-insensitive
        ("abc-eu1", "eu1"),
    ],
)
def test_the_registry_takes_the_keys_the_client_can_use(key: str, shard: str) -> None:
    assert shard_of(key) == shard
    assert normalize_property("cliniko.api.key", key, level="group", field="p") == key


@pytest.mark.parametrize("key", ["abc-zz9", "abc-au9", "abc-us1", "abc-def-UK3"])
def test_a_suffix_that_looks_like_a_shard_must_name_one(key: str) -> None:
    suffix = key.rsplit("-", 1)[1]
    with pytest.raises(InvalidApiKey):
        shard_of(key)
    with pytest.raises(RegistryError, match=f"unknown shard suffix '{suffix}'; a suffix after the last '-'"):
        normalize_property("cliniko.api.key", key, level="group", field="p")


def test_a_mappings_own_properties_win_over_its_groups_in_the_known_order() -> None:
    group = {"customer.cooloff.days": "30", "cliniko.api.key": "group-key", "customer.fetch.delay": "1"}
    own = {"cliniko.location.name": "A, B", "customer.fetch.delay": "2"}
    assert list(effective_properties(group, own).items()) == [
        ("cliniko.api.key", ("group", "group-key")),
        ("customer.fetch.delay", ("mapping", "2")),
        ("cliniko.location.name", ("mapping", "A, B")),
        ("customer.cooloff.days", ("group", "30")),
    ]
    assert effective_properties({}, {}) == {}


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("customer.fetch.delay", " 007 ", "7"),
        ("customer.fetch.delay", "365", "365"),
        ("customer.cooloff.days", "3650", "3650"),
        ("cliniko.location.name", " New York ,Brooklyn", "New York, Brooklyn"),
        (
            "cliniko.appointment.types.excluded",
            "  FREE consult ,Pilates Class",
            "FREE consult, Pilates Class",
        ),
        ("cliniko.appointment.types.excluded", "  ", ""),
    ],
)
def test_property_values_are_normalised(key: str, value: str, stored: str) -> None:
    assert normalize_property(key, value, level="mapping", field="p") == stored


@pytest.mark.parametrize(
    ("host", "token", "allowed"),
    [
        ("127.0.0.1", None, True),
        ("localhost", None, True),
        ("::1", None, True),
        ("0.0.0.0", None, False),
        ("192.0.2.10", None, False),
        ("example.com", None, False),
        ("0.0.0.0", "token", True),
    ],
)
def test_only_loopback_binds_go_without_a_token(host: str, token: str | None, allowed: bool) -> None:
    assert (bind_refusal(host, token is not None) is None) is allowed


def test_a_secret_shows_only_its_mask() -> None:
    secret = Secret("be-live-7f3c9a2e41d84b6f")
    assert str(secret) == "****4b6f" and "7f3c9a2e" not in repr(secret) and "7f3c" not in f"{secret}"
    assert secret.reveal() == "be-live-7f3c9a2e41d84b6f"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)


def test_default_next_run_time_is_the_next_six_utc() -> None:
    assert default_next_run_time(datetime(2026, 11, 25, 5, 59, tzinfo=UTC)) == datetime(
        2026, 11, 25, 6, tzinfo=UTC
    )
    assert default_next_run_time(datetime(2026, 11, 25, 6, 0, tzinfo=UTC)) == datetime(
        2026, 11, 26, 6, tzinfo=UTC
    )
    assert parse_run_time("2026-12-01T08:30:00.5+02:00", "t") == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


def test_migrations_version_the_file_and_refuse_a_newer_one(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "r.sqlite3", isolation_level=None)
    assert migrate(con) == SCHEMA_VERSION == con.execute("PRAGMA user_version").fetchone()[0]
    assert migrate(con) == SCHEMA_VERSION  # idempotent
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this code"):
        migrate(con)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_SECRET_KEY", Fernet.generate_key().decode())
    registry = Registry.open(load_settings())
    group, _ = registry.store.create_group(
        "100",
        118,
        [
            PropertyInput("cliniko.api.key", "GROUPKEY-au3", False, "g0"),
            PropertyInput("customer.fetch.delay", "2", False, "g1"),
            PropertyInput("customer.cooloff.days", "30", False, "g2"),
        ],
        [TriggerInput(129, 1, None, "t0")],
    )
    for number, props, active in (
        ("101", [PropertyInput("cliniko.location.name", "A, B", False, "m0")], True),
        (
            "102",
            [
                PropertyInput("cliniko.location.name", "C", False, "m0"),
                PropertyInput("cliniko.api.key", "OWNKEY-uk1", False, "m1"),
                PropertyInput("birdeye.api.key", "birdeye-0123456789", True, "m2"),
                PropertyInput("customer.fetch.delay", "0", False, "m3"),
            ],
            True,
        ),
        ("103", [PropertyInput("cliniko.location.name", "D", False, "m0")], False),
    ):
        registry.store.create_mapping(MappingInput(number, group["groupId"], props, active=active))
    return registry


@pytest.mark.parametrize("value", ["Free Consult,,Pilates", " , ", "Free Consult,"])
def test_excluded_type_names_must_not_be_blank_in_a_list(value: str) -> None:
    for level in ("group", "mapping"):
        with pytest.raises(RegistryError, match="none blank") as error:
            normalize_property("cliniko.appointment.types.excluded", value, level=level, field="p")
        assert error.value.field == "p.propertyValue"


def test_excluded_types_resolve_from_the_group_and_a_mapping_override(registry: Registry) -> None:
    store = registry.store
    group_id = registry.mapping("101").group_id
    assert registry.mapping("101").excluded_appointment_types == ()  # not set: nothing excluded
    key = "cliniko.appointment.types.excluded"
    store.update_group(
        group_id,
        triggers=None,
        replace_triggers=False,
        properties=[PropertyInput(key, "Free Consult, Pilates Class", False, "g")],
    )
    store.update_mapping("102", MappingPatch(properties=[PropertyInput(key, "Short Review", False, "m")]))
    store.update_mapping("103", MappingPatch(properties=[PropertyInput(key, "", False, "m")]))
    assert registry.mapping("101").excluded_appointment_types == ("Free Consult", "Pilates Class")
    assert registry.mapping("102").excluded_appointment_types == ("Short Review",)
    assert (
        key in registry.mapping("102").overridden_keys and key not in registry.mapping("101").overridden_keys
    )
    assert registry.mapping("103").excluded_appointment_types == ()


def test_read_api_resolves_group_then_mapping_properties(registry: Registry) -> None:
    assert [m.business_number for m in registry.mappings()] == ["101", "102"]
    assert [m.business_number for m in registry.mappings(active_only=False)] == ["101", "102", "103"]
    inherited, own = registry.mappings()
    assert isinstance(inherited, MappingConfig)
    assert inherited.cliniko_api_key.reveal() == "GROUPKEY-au3" and inherited.birdeye_api_key is None
    assert (inherited.fetch_delay_days, inherited.cooloff_days) == (2, 30)
    assert inherited.location_names == ("A", "B") and inherited.overridden_keys == frozenset()
    assert (
        own.cliniko_api_key.reveal() == "OWNKEY-uk1" and own.birdeye_api_key.reveal() == "birdeye-0123456789"
    )
    assert (own.fetch_delay_days, own.cooloff_days) == (0, 30)
    assert own.overridden_keys == {"cliniko.api.key", "birdeye.api.key", "customer.fetch.delay"}
    assert (own.frequency_value, own.frequency_unit, own.next_run_time.tzinfo) == (1, "days", UTC)
    assert registry.mapping("103").active is False and registry.mapping("999") is None
    with pytest.raises(AttributeError):
        own.active = False  # type: ignore[misc]


def test_next_run_time_is_compare_and_set(registry: Registry) -> None:
    current = registry.mapping("101").next_run_time
    later = current + timedelta(days=1)
    assert registry.advance_next_run_time("101", current, later) is True
    assert registry.advance_next_run_time("101", current, later + timedelta(days=1)) is False  # lost the race
    assert registry.mapping("101").next_run_time == later
    registry.store.update_mapping("101", MappingPatch(next_run_time=current))
    assert registry.mapping("101").next_run_time == current


def test_a_different_secret_key_cannot_read_the_keys(registry: Registry) -> None:
    stranger = RegistryStore(registry.store.path, SecretBox(Fernet(Fernet.generate_key())))
    with pytest.raises(SecretKeyError, match="not the key it was written with") as error:
        Registry(stranger).mappings()
    assert "GROUPKEY" not in str(error.value)


def test_key_file_is_created_once_with_owner_only_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REGISTRY_SECRET_KEY", raising=False)
    caplog.set_level("INFO")
    first, second = load_fernet(load_settings()), load_fernet(load_settings())
    assert first.decrypt(second.encrypt(b"x")) == b"x"
    key_file = tmp_path / ".registry_secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert caplog.text.count("REGISTRY_SECRET_KEY is not set") == 1
    assert key_file.read_text().strip() not in caplog.text
    monkeypatch.setenv("REGISTRY_SECRET_KEY", "not-a-key")
    with pytest.raises(SecretKeyError, match="REGISTRY_SECRET_KEY is not a Fernet key"):
        load_fernet(load_settings())
