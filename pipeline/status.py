"""`cliniko-reviews status`: where each mapping stands on the calendar, in words a support engineer reads.

Per mapping: its cadence and next due time (registry), the last closed partition, every partition not closed
with its state, runs and last error, and the open alerts. States and alerts come from the analysts' database
(`coverage`, `alerts`, `partition_runs`), which the pipeline refreshes after every run, failure and alert;
`skipped` is judged at the time of the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb

from pipeline.registry import MappingConfig


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _cadence(mapping: MappingConfig) -> str:
    unit = mapping.frequency_unit[:-1] if mapping.frequency_value == 1 else mapping.frequency_unit
    every = f"every {mapping.frequency_value} {unit}"
    flags = [flag for flag in ("test", "beta") if getattr(mapping, flag)]
    state = "active" if mapping.active else "inactive (not scheduled)"
    return f"{state}{', ' + ', '.join(flags) if flags else ''}, {every}, catch-up {mapping.catchup_days} days"


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[dict]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def render_status(analytics_path: Path, mappings: Sequence[MappingConfig], *, recent_days: int = 14) -> str:
    """The status of `mappings` as plain lines. Open partitions older than `recent_days` are counted, not
    listed (a mapping paused for months would otherwise print a page of `skipped`)."""
    if not analytics_path.exists():
        return f"No partition has run yet ({analytics_path} does not exist): nothing to report."
    con = duckdb.connect(str(analytics_path), read_only=True)
    try:
        refreshed = con.execute("select refreshed_at from snapshot_info").fetchone()[0]
        lines = [f"As of the analysts' database refreshed at {_when(refreshed)}.", ""]
        for mapping in mappings:
            bn = {"bn": mapping.business_number}
            lines.append(f"Mapping {mapping.business_number} (group {mapping.group_id}): {_cadence(mapping)}")
            next_due = _when(mapping.next_run_time) if mapping.active else "none while inactive"
            lines.append(f"  next due: {next_due}")
            closed = con.execute(
                "select partition_date, closed_at from coverage "
                "where business_number = $bn and state = 'closed' order by partition_date desc limit 1",
                bn,
            ).fetchone()
            lines.append(
                f"  last closed partition: {closed[0]} (closed {_when(closed[1])})"
                if closed
                else "  last closed partition: none yet"
            )
            open_rows = _query(
                con,
                """
                select c.partition_date, c.state, c.close_at, c.runs, c.last_run_at, s.last_error,
                       c.partition_date >= current_date - cast($days as integer) as recent
                from coverage c
                left join partition_states s using (business_number, partition_date)
                where c.business_number = $bn and c.state <> 'closed'
                order by c.partition_date
                """,
                {**bn, "days": recent_days},
            )
            recent = [r for r in open_rows if r["recent"]]
            older = len(open_rows) - len(recent)
            lines.append(f"  partitions not closed: {len(open_rows) or 'none'}")
            for r in recent:
                detail = (
                    f"closes {_when(r['close_at'])}" if r["state"] == "pending" else f"{r['runs']} run(s)"
                )
                if r["last_run_at"] and r["state"] != "pending":
                    detail += f", last {_when(r['last_run_at'])}"
                if r["state"] == "failed" and r["last_error"]:
                    detail += f": {r['last_error']}"
                lines.append(f"    {r['partition_date']}  {r['state']:<8} {detail}")
            if older:
                lines.append(f"    ... and {older} older than {recent_days} days (see `coverage`)")
            alerts = _query(
                con,
                "select kind, partition_date, message, raised_at from alerts "
                "where business_number = $bn and resolved_at is null order by raised_at",
                bn,
            )
            lines.append(f"  open alerts: {len(alerts) or 'none'}")
            lines.extend(f"    {_when(a['raised_at'])}  {a['kind']}: {a['message']}" for a in alerts)
            lines.append("")
        return "\n".join(lines).rstrip()
    finally:
        con.close()
