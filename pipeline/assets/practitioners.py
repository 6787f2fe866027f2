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

from pipeline.cliniko import ClinikoClient, ClinikoForbidden
from pipeline.warehouse.pages import TypedPages, concat_pages, type_pages
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
    """What Cliniko returned for the referenced ids: practitioners typed from their pages, with `is_active`
    from the listing that returned them and their user's `email`, and the ids it returned from neither list
    (deleted practitioners). `refused`: Cliniko's 403 for practitioners or users (the key's user may not read
    them), after which the lookup went on without them."""

    pages: TypedPages | None = None
    missing_ids: list[str] = field(default_factory=list)
    refused: str | None = None

    @property
    def with_email(self) -> int:
        if self.pages is None:
            return 0
        emails = self.pages.frame["email"]
        return int((emails.notna() & (emails.astype("str").str.strip() != "")).sum())


def practitioner_lookup(client: ClinikoClient, ids: list[str]) -> PractitionerLookup:
    """Fetch `ids` at the least request count: active practitioners, then only the ids still unknown among
    the inactive ones, then the users of those found (for their emails), each 100 ids per request. No ids,
    no request.

    A 403 does not fail the partition: who saw the patient only adds attribution to a request, so a key whose
    Cliniko user may not read practitioners (or users) still gets its patients asked, without names (or
    without employees), and `refused` says why for the step's metadata and log.
    """
    wanted = list(dict.fromkeys(i for i in ids if i))
    if not wanted:
        return PractitionerLookup()
    parts: list[TypedPages] = []
    try:
        for inactive in (False, True):
            found = {pid for part in parts for pid in part.frame["practitioner_id"].dropna()}
            rest = [pid for pid in wanted if pid not in found]
            if not rest:
                break
            typed = type_pages("practitioners", client.practitioner_pages(rest, inactive=inactive))
            parts.append(TypedPages(typed.resource, typed.frame.assign(is_active=not inactive), typed.bodies))
    except ClinikoForbidden as error:
        return PractitionerLookup(refused=str(error))
    pages = concat_pages(parts)
    user_ids = sorted(set(pages.frame["user_id"].dropna()))
    refused = None
    try:
        users = type_pages("users", client.user_pages(user_ids)).frame if user_ids else None
    except ClinikoForbidden as error:
        users, refused = None, str(error)
    email_of = {} if users is None else dict(zip(users["user_id"], users["email"], strict=True))
    emails = pages.frame["user_id"].map(email_of).astype(object)
    frame = pages.frame.assign(email=emails.where(emails.notna(), None))
    found = TypedPages(pages.resource, frame, pages.bodies)
    return PractitionerLookup(found, found.not_returned(wanted), refused)


def store_practitioners(
    warehouse: Path, business_number: str, partition_date: date, lookup: PractitionerLookup
) -> tuple[int, int]:
    """Replace the partition's slice of raw.cliniko_practitioners (missing ids as `is_missing` rows);
    returns (stored, quarantined)."""
    return store_records(
        warehouse,
        business_number,
        partition_date,
        "practitioners",
        "raw.cliniko_practitioners",
        lookup.pages,
        missing_ids=lookup.missing_ids,
    )


def requests_since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The client's counters (`ingest._client_metadata`) spent between two readings."""
    return {
        key: round(after[key] - before[key], 3) if isinstance(after[key], float) else after[key] - before[key]
        for key in after
    }
