"""The practitioners of a partition's visits: which ids, fetched how, stored where.

Fetched in the patients' step (`ingest.cliniko_patients`, a multi-asset that also materializes
`cliniko_practitioners`): both are lookups by id of what the day's appointments reference, and a step of its
own would cost every partition a process start and its event-log writes for what is a request or two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipeline.cliniko import ClinikoClient, ClinikoForbidden
from pipeline.warehouse.raw_store import store_records

REFERENCED_IDS = """
select practitioner_id from raw.cliniko_appointments
where business_number = $bn and partition_date = $d and practitioner_id is not null
union
select practitioner_id from raw.cliniko_group_appointments
where business_number = $bn and partition_date = $d and practitioner_id is not null
order by practitioner_id
"""


def referenced_practitioner_ids(
    con: duckdb.DuckDBPyConnection, business_number: str, partition_date: date
) -> list[str]:
    """The practitioners the partition's stored individual appointments and classes reference (cancelled ones
    too: one request per 100 ids costs the same, and the raw table then mirrors the visits')."""
    rows = con.execute(REFERENCED_IDS, {"bn": business_number, "d": partition_date}).fetchall()
    return [row[0] for row in rows]


@dataclass(frozen=True)
class PractitionerLookup:
    """What Cliniko returned for the referenced ids: practitioner rows with their user's `email`, and the
    ids it returned from neither list (deleted practitioners). `refused`: Cliniko's 403 for practitioners or
    users (the key's user may not read them), after which the lookup went on without them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    refused: str | None = None

    @property
    def with_email(self) -> int:
        return sum(1 for row in self.rows if isinstance(row.get("email"), str) and row["email"].strip())


def practitioner_lookup(client: ClinikoClient, ids: list[str]) -> PractitionerLookup:
    """Fetch `ids` at the least request count: active practitioners, then only the ids still unknown among
    the inactive ones, then the users of those found (for their emails), each 100 ids per request. No ids,
    no request.

    A 403 does not fail the partition: who saw the patient only adds attribution to a request, so a key whose
    Cliniko user may not read practitioners (or users) still gets its patients asked, without names (or
    without employees), and `refused` says why for the step's metadata and log.
    """
    if not ids:
        return PractitionerLookup()
    try:
        rows = client.practitioners(ids)
    except ClinikoForbidden as error:
        return PractitionerLookup(refused=str(error))
    user_ids = sorted({row["user_id"] for row in rows if row["user_id"]})
    refused = None
    try:
        email_of = {user["user_id"]: user["email"] for user in client.users(user_ids)} if user_ids else {}
    except ClinikoForbidden as error:
        email_of, refused = {}, str(error)
    rows = [{**row, "email": email_of.get(row["user_id"])} for row in rows]
    returned = {row["practitioner_id"] for row in rows}
    return PractitionerLookup(rows, [pid for pid in ids if pid not in returned], refused)


def store_practitioners(
    warehouse: Path, business_number: str, partition_date: date, lookup: PractitionerLookup
) -> tuple[int, int]:
    """Replace the partition's slice of raw.cliniko_practitioners (missing ids as `is_missing` rows);
    returns (stored, quarantined)."""
    missing = pd.DataFrame(
        {"practitioner_id": pd.Series(lookup.missing_ids, dtype="str"), "is_missing": True}
    )
    return store_records(
        warehouse,
        business_number,
        partition_date,
        "practitioners",
        "raw.cliniko_practitioners",
        lookup.rows,
        extra_rows=missing,
    )


def requests_since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The client's counters (`ingest._client_metadata`) spent between two readings."""
    return {
        key: round(after[key] - before[key], 3) if isinstance(after[key], float) else after[key] - before[key]
        for key in after
    }
