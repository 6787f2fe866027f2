"""Raw Cliniko pages -> typed rows and a quarantine, parsed by DuckDB: the one ingest path.

The client hands over the page bodies untouched (`ClinikoClient.*_pages`); `sql/parse/cliniko_<resource>.sql`
reads the fields the raw table keeps, in one C++ pass per page, with no Python object per record. A value of
the wrong JSON type, or a timestamp that does not parse, is null in its column and named in the row's
`_reason`; so is an id that is missing or not made of digits, and a field the table cannot do without (a
visit's `ends_at`, an attendee's class). `TypedPages.split` gives the rows to store and the quarantine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pandas as pd
import pyarrow as pa

from pipeline.warehouse.sql_files import read_sql

PAGE_RESOURCES = {
    "businesses": "businesses",
    "appointment_types": "appointment_types",
    "practitioners": "practitioners",
    "users": "users",
    "appointments": "individual_appointments",
    "group_appointments": "group_appointments",
    "attendees": "attendees",
    "patients": "patients",
}
ID_COLUMN = {
    "businesses": "cliniko_business_id",
    "appointment_types": "appointment_type_id",
    "practitioners": "practitioner_id",
    "users": "user_id",
    "appointments": "appointment_id",
    "group_appointments": "group_appointment_id",
    "attendees": "attendee_id",
    "patients": "patient_id",
}


class UnreadablePage(ValueError):
    """A page that arrived whole (the client checked its envelope) but is not valid JSON inside."""


@dataclass(frozen=True)
class TypedPages:
    """Rows typed from raw pages: `frame` has the raw table's columns, then `_reason` (typing failures, or
    null) and `_page`, `_index` (where the record is in `bodies`)."""

    resource: str
    frame: pd.DataFrame
    bodies: Sequence[bytes]
    _parsed: dict[int, list] = field(default_factory=dict, repr=False, compare=False)

    def record_json(self, row: int) -> str:
        """The record of frame row `row` exactly as Cliniko sent it (for the quarantine; each page that holds
        one is parsed once)."""
        page, index = int(self.frame["_page"].iat[row]), int(self.frame["_index"].iat[row])
        if page not in self._parsed:
            self._parsed[page] = orjson.loads(self.bodies[page])[PAGE_RESOURCES[self.resource]]
        return orjson.dumps(self._parsed[page][index]).decode()

    def not_returned(self, asked: Sequence[str]) -> list[str]:
        """The ids of `asked` (a lookup by id) that no record here has: Cliniko no longer returns them."""
        returned = set(self.frame[ID_COLUMN[self.resource]].dropna())
        return [record_id for record_id in asked if record_id not in returned]

    def split(self) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        """(rows in the raw table's columns, quarantine): a row with a `_reason` goes to the quarantine as
        `{record_id, reason, record_json}`, the others keep their order."""
        bad = self.frame["_reason"].notna().to_numpy()
        ids = self.frame[ID_COLUMN[self.resource]]
        quarantine = [
            {
                "record_id": ids.iat[i] if isinstance(ids.iat[i], str) else None,
                "reason": self.frame["_reason"].iat[i],
                "record_json": self.record_json(i),
            }
            for i in bad.nonzero()[0]
        ]
        valid = self.frame[~bad].drop(columns=["_reason", "_page", "_index"]).reset_index(drop=True)
        return valid, quarantine


def concat_pages(parts: Sequence[TypedPages]) -> TypedPages:
    """Several typings of one resource as one (e.g. practitioners from the active and the inactive listing):
    the frames one after the other, each part's `_page` shifted past the bodies before it."""
    frames, bodies = [], []
    for part in parts:
        frames.append(part.frame.assign(_page=part.frame["_page"] + len(bodies)))
        bodies += part.bodies
    return TypedPages(parts[0].resource, pd.concat(frames, ignore_index=True), bodies)


def type_pages(resource: str, bodies: Iterable[bytes], batch_pages: int = 32) -> TypedPages:
    """Parse and type the records of `bodies`, pages of `resource` (a key of `PAGE_RESOURCES`).

    Pages are typed `batch_pages` at a time as they come: with the client's page iterator, DuckDB types one
    batch while the client fetches the next.
    """
    if resource not in PAGE_RESOURCES:
        raise ValueError(f"no page parser for {resource!r}; expected one of {', '.join(PAGE_RESOURCES)}")
    kept: list[bytes] = []
    frames: list[pd.DataFrame] = []
    with _parser() as con:
        sql = read_sql(f"parse/cliniko_{resource}.sql")
        batch: list[bytes] = []
        for body in bodies:
            batch.append(body)
            if len(batch) == batch_pages:
                frames.append(_type_batch(con, resource, sql, batch, len(kept)))
                kept += batch
                batch = []
        if batch:
            frames.append(_type_batch(con, resource, sql, batch, len(kept)))
            kept += batch
        elif not frames:
            frames.append(_no_pages(con, resource, sql))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return TypedPages(resource, _dedupe(frame, ID_COLUMN[resource]), kept)


_parser_lock = threading.Lock()
# By process id: a parent's connection, inherited by a forked child, is neither used nor closed there.
_parsers: dict[int, duckdb.DuckDBPyConnection] = {}


def _after_fork_in_child() -> None:
    global _parser_lock
    _parser_lock = threading.Lock()  # a fork while another thread typed would copy the lock held


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def _parser() -> Iterator[duckdb.DuckDBPyConnection]:
    """This process's DuckDB for typing pages, with the parsers' macros: made once per process, as a new
    DuckDB and its macros cost about 20 ms of CPU and a partition types twice. Typing holds it alone: the
    macros and the registered `pages` belong to the connection."""
    with _parser_lock:
        con = _parsers.get(os.getpid())
        if con is None:
            con = _parsers[os.getpid()] = duckdb.connect()
            con.execute("set TimeZone = 'UTC'")
            con.execute(read_sql("parse/macros.sql"))
        yield con


_typed_no_pages: dict[str, pd.DataFrame] = {}


def _no_pages(con: duckdb.DuckDBPyConnection, resource: str, sql: str) -> pd.DataFrame:
    """The typed frame of no page at all (its columns and their types), typed once per process: planning a
    parser costs 5-25 ms of CPU, and a day without classes has no page of group appointments or attendees."""
    if resource not in _typed_no_pages:
        _typed_no_pages[resource] = _type_batch(con, resource, sql, [], 0)
    return _typed_no_pages[resource].copy()


def _type_batch(
    con: duckdb.DuckDBPyConnection, resource: str, sql: str, bodies: list[bytes], first_page: int
) -> pd.DataFrame:
    pages = pa.table(
        {
            "page_no": pa.array(range(first_page, first_page + len(bodies)), pa.int32()),
            "body": pa.array(bodies, pa.binary()),
        }
    )
    con.register("pages", pa.Table.from_batches(pages.to_batches(max_chunksize=8), pages.schema))
    try:
        return con.execute(sql).df()  # DuckDB scans the record batches in parallel
    except duckdb.InvalidInputException as exc:
        raise UnreadablePage(
            f"A page of Cliniko {PAGE_RESOURCES[resource]} is not valid JSON although it arrived whole "
            f"({str(exc).splitlines()[0][:200]}). Nothing was stored; re-run the partition."
        ) from None
    finally:
        con.unregister("pages")


def _dedupe(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """An id that comes again (page-number paging shifts while rows are added) keeps its first position and
    its last version. Rows without an id are all kept (for the quarantine)."""
    ids = frame[id_column]
    repeated = ids.notna() & ids.duplicated(keep=False)
    if not repeated.any():
        return frame
    latest = frame[repeated].drop_duplicates(id_column, keep="last").set_index(id_column)
    first = frame[repeated].drop_duplicates(id_column, keep="first")
    out = frame.copy()
    out.loc[first.index] = latest.loc[first[id_column]].reset_index()[frame.columns].set_axis(first.index)
    return out.drop(index=frame.index[repeated].difference(first.index)).reset_index(drop=True)
