"""Which Cliniko shard (and so which host) an API key belongs to.

Cliniko's accounts live on separate shards that know nothing of each other; the key's suffix after the last
'-' names the shard, and a key without one is an old `au1` key. A key sent to the wrong shard gets a bare 401,
so getting this right is the difference between working and a confusing auth error.
"""

from __future__ import annotations

import re

from pipeline.cliniko.errors import InvalidApiKey
from pipeline.masking import mask

KNOWN_SHARDS: tuple[str, ...] = ("au1", "au2", "au3", "au4", "ca1", "uk1", "uk2", "eu1")
DEFAULT_SHARD = "au1"
# Cliniko's own advice for recognising a shard suffix; anything else after a '-' is part of a legacy key.
SHARD_PATTERN = re.compile(r"^[a-z]{2}\d{1,2}$", re.IGNORECASE)


def shard_of(api_key: str) -> str:
    """The shard named by the key's suffix; `au1` for keys without one. The one parser of a key's shard:
    the registry checks keys with it (`registry.model.normalize_property`) and the dashboard with its pattern.

    A suffix that does not look like a shard (`abc-legacy`) is part of an old key, which lives on `au1`; a
    suffix that does is compared case-insensitively (`-AU2` is `au2`).

    A suffix that looks like a shard (two letters, one or two digits) but is not a known shard is refused
    rather than guessed, so a typo fails here with a clear message instead of as a 401 or a DNS error later.
    """
    key = api_key.strip()
    if "-" not in key:
        return DEFAULT_SHARD
    suffix = key.rsplit("-", 1)[1]
    if not SHARD_PATTERN.match(suffix):
        return DEFAULT_SHARD
    shard = suffix.lower()
    if shard not in KNOWN_SHARDS:
        raise InvalidApiKey(mask(key), suffix, KNOWN_SHARDS)
    return shard


def base_url_for(api_key: str, override: str | None = None) -> tuple[str, str]:
    """`(shard, base_url)` for a key; `override` (CLINIKO_BASE_URL) wins for every key when set.

    The shard is still parsed (and an unknown one refused) under an override, so a bad key fails the same way
    against the emulator as against Cliniko.
    """
    shard = shard_of(api_key)
    if override:
        return shard, override.rstrip("/")
    return shard, f"https://api.{shard}.cliniko.com/v1"
