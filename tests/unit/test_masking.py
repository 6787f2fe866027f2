"""The one form of an API key outside the request that sends it (`pipeline.masking.mask`), and its users."""

from __future__ import annotations

import pytest

from pipeline.birdeye import BirdeyeClient
from pipeline.cliniko import ClinikoClient, InvalidApiKey, shard_of
from pipeline.cliniko.errors import ClinikoAuthError
from pipeline.masking import mask
from pipeline.registry import Secret
from pipeline.settings import load_settings

CLINIKO_KEY = "MS05ODkwMTU1NzY1Wxyz-au3"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("MS05ODkwMTU1NzY1-au3", "****-au3"),  # a Cliniko key: its last 4 characters are the shard suffix
        ("be-live-7f3c9a2e41d84b6f", "****4b6f"),
        ("abcdefghijkl", "****ijkl"),  # 12 characters: the shortest that shows its last 4
        ("abcdefghijk", "****"),  # 11: too short to spare 4
        ("short-key", "****"),
        ("", "****"),
    ],
)
def test_mask_shows_at_most_the_last_four_characters(value: str, shown: str) -> None:
    assert mask(value) == shown


def test_secrets_show_as_their_mask() -> None:
    secret = Secret(CLINIKO_KEY)
    assert str(secret) == f"{secret}" == "****-au3" and repr(secret) == "Secret('****-au3')"


def test_the_clients_show_keys_as_their_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINIKO_BASE_URL", raising=False)
    cliniko = ClinikoClient(CLINIKO_KEY, settings=load_settings(), rate_limit_per_minute=0)
    birdeye = BirdeyeClient("be-live-7f3c9a2e41d84b6f", base_url="http://127.0.0.1:9/resources")
    try:
        assert "key=****-au3" in repr(cliniko) and "Wxyz" not in repr(cliniko)
        assert "'****4b6f'" in repr(birdeye) and "7f3c" not in repr(birdeye)
    finally:
        cliniko.close()
        birdeye.close()


def test_cliniko_errors_name_the_key_by_its_mask() -> None:
    with pytest.raises(InvalidApiKey) as refused:
        shard_of("MS05ODkwMTU1NzY1Wxyz-zz9")
    assert "****-zz9" in str(refused.value) and "Wxyz" not in str(refused.value)
    assert "****-au3" in str(ClinikoAuthError(mask(CLINIKO_KEY), "au3", "api.au3.cliniko.com"))
