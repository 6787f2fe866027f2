"""The one form in which an API key may appear anywhere outside the request that sends it.

Logs, exceptions, reprs, Dagster metadata, the registry's `masked_value` column, the admin API's responses and
the audit trail all show a key as `mask(key)`: `****` and its last 4 characters, or `****` alone when the key
is too short (under 12 characters) to spare 4. A Cliniko key's last 4 characters are its shard suffix
(`****-au3`), so an error names the same mask the admin API and the dashboard show for that key. The
dashboard's `mask()` (static/dashboard.js) writes the same form in the browser.

A leaf: it imports nothing, so every package (the clients, the registry, the sink, the emulators) can use it.
"""

from __future__ import annotations

MASK = "****"
SHOWN_CHARACTERS = 4
MIN_LENGTH_TO_SHOW = 12


def mask(value: str) -> str:
    """`****` plus the last 4 characters of `value`; `****` alone if `value` is shorter than 12 characters."""
    return MASK + value[-SHOWN_CHARACTERS:] if len(value) >= MIN_LENGTH_TO_SHOW else MASK
