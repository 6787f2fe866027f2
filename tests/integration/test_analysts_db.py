"""The analysts' database can stay open in another process while partitions are built and it is refreshed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import ANY

import duckdb
import pytest
from models_fixtures import PARTITION_DATE, Warehouse

from pipeline.calendar import coverage
from pipeline.registry import MappingConfig
from pipeline.warehouse import analysts_db, connect
from pipeline.warehouse.analysts_db import compact, parquet_root, refresh_analytics

# Opens analytics.duckdb read-only, says "ready", then queries in a loop until the stop file appears, and
# reports every count it saw and every error it met.
READER = textwrap.dedent(
    """
    import json, pathlib, sys, duckdb
    path, stop = sys.argv[1], pathlib.Path(sys.argv[2])
    con = duckdb.connect(path, read_only=True)
    seen, errors, queries = set(), [], 0
    print("ready", flush=True)
    while not stop.exists():
        try:
            seen.add(con.execute("select count(*) from restriction_reasons").fetchall()[0][0])
            con.execute("select restriction_code, count(*) from restriction_reasons group by all").fetchall()
            queries += 1
        except Exception as error:
            errors.append(repr(error))
    print(json.dumps({"seen": sorted(seen), "errors": errors, "queries": queries}), flush=True)
    """
)


def build(warehouse_path: Path, business_number: str, appointments: int, day: date = PARTITION_DATE) -> None:
    with connect(warehouse_path) as con:
        wh = Warehouse(con)
        for raw in (
            "cliniko_businesses",
            "cliniko_patients",
            "cliniko_appointments",
        ):  # a rebuild starts over
            con.execute(f"delete from raw.{raw} where business_number = ?", [business_number])
        wh.business(business_number, "b1", "Main Street Clinic")
        for i in range(appointments):
            wh.patient(business_number, f"p{i}", partition_date=day)
            wh.appointment(
                business_number, f"a{i}", patient_id=f"p{i}", ends_at=f"{day} 10:00", partition_date=day
            )
        wh.build(business_number, partition_date=day)


def counts(analytics_path: Path) -> dict[tuple[str, date], int]:
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        rows = con.execute(
            "select business_number, partition_date, count(*) from restriction_reasons group by all"
        ).fetchall()
    return {(bn, day): n for bn, day, n in rows}


def months(root: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (root / "restriction_reasons" / "base").iterdir())


def test_open_reader_neither_blocks_nor_breaks_on_refresh(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 2)
    assert refresh_analytics([warehouse_path], analytics_path)["restriction_reasons"] == 2

    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(analytics_path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "ready"
        build(warehouse_path, "1002", 3)
        first = refresh_analytics([warehouse_path], analytics_path)
        build(warehouse_path, "1003", 1)
        second = refresh_analytics([warehouse_path], analytics_path)
        for _ in range(5):  # exported again and compacted each time, while the reader goes on
            refresh_analytics([warehouse_path], analytics_path, compact_after=1)
        time.sleep(0.2)  # let the reader query the replaced file a few more times
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    report = json.loads(out)
    assert report["errors"] == []
    assert report["queries"] > 0
    assert report["seen"] == [2]  # its connection reads the files its views named, for as long as it is open

    # The refreshes after the first export only the partition they are given.
    assert (first["restriction_reasons"], second["restriction_reasons"]) == (3, 1)
    with duckdb.connect(str(analytics_path), read_only=True) as fresh:
        assert fresh.execute("select count(*) from restriction_reasons").fetchall() == [(6,)]
        assert fresh.execute("select count(*) from restriction_codes").fetchall() == [(9,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "analytics",
        "analytics.duckdb",
        "stop",
        "warehouse.duckdb",
        "warehouse.duckdb.lock",
    ]


def test_a_partition_exported_again_replaces_its_rows_before_and_after_compaction(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    other_month = date(2026, 10, 31)
    build(warehouse_path, "1001", 3)
    build(warehouse_path, "1002", 2, other_month)
    refresh_analytics([warehouse_path], analytics_path)  # the first refresh exports the whole warehouse
    assert counts(analytics_path) == {("1001", PARTITION_DATE): 3, ("1002", other_month): 2}
    root = parquet_root(analytics_path)

    for rebuilt_with in (5, 4):  # rebuilt with more rows, then fewer: the newest export wins
        build(warehouse_path, "1001", rebuilt_with)
        refresh_analytics([warehouse_path], analytics_path)
        assert counts(analytics_path) == {("1001", PARTITION_DATE): rebuilt_with, ("1002", other_month): 2}

    assert compact(root, at_least=1) == 2  # the two deltas: 5 rows, then 4
    # November's file is written anew; the one it supersedes stays for connections opened before.
    assert months(root) == ["2026-10", "2026-11", "2026-11", "_schema"]
    assert counts(analytics_path) == {("1001", PARTITION_DATE): 4, ("1002", other_month): 2}

    # The partition loses every candidate: its marker says so, and the older rows in the base file go.
    build(warehouse_path, "1001", 0)
    # A connection opened now, on the file the refresh below replaces (under another name: DuckDB shares one
    # instance per path within a process).
    os.link(analytics_path, tmp_path / "opened_before.duckdb")
    opened_before = duckdb.connect(str(tmp_path / "opened_before.duckdb"), read_only=True)
    refresh_analytics([warehouse_path], analytics_path)
    assert counts(analytics_path) == {("1002", other_month): 2}
    assert compact(root, at_least=1) == 1
    assert months(root) == ["2026-10", "2026-11", "2026-11", "2026-11", "_schema"]
    assert compact(root, at_least=1) == 0  # nothing new since
    assert counts(analytics_path) == {("1002", other_month): 2}
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        states = con.execute("select business_number, runs from partition_states order by 1").fetchall()
        requests = con.execute("select count(*) from review_requests").fetchone()[0]
    assert states == [("1001", 4), ("1002", 1)]  # its four builds are on record
    assert requests == 2

    # The grace period starts once a new catalog no longer names a superseded file; once it is over, a refresh
    # deletes the file: the deltas and the two older November files. New connections never named them; one
    # opened before they went now fails.
    refresh_analytics([warehouse_path], analytics_path, grace_seconds=0)  # starts the last ones' grace
    assert months(root) == ["2026-10", "2026-11", "2026-11", "_schema"]
    refresh_analytics([warehouse_path], analytics_path, grace_seconds=0)
    assert months(root) == ["2026-10", "2026-11", "_schema"]
    assert list((root / "restriction_reasons" / "delta").iterdir()) == []
    assert counts(analytics_path) == {("1002", other_month): 2}
    with pytest.raises(duckdb.IOException, match="No files found"):
        opened_before.execute("select count(*) from restriction_reasons").fetchall()
    opened_before.close()


def test_analysts_db_has_the_spec_columns_and_no_contact_details(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 1)  # claims a0; the sink then sends it
    with connect(warehouse_path) as con:
        con.execute("update sink.review_request_ledger set status = 'sent'")
    coverage.refresh(
        [warehouse_path], warehouse_path.with_name("alerts.duckdb"), analytics_path, [], PARTITION_DATE
    )
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        columns = {
            table: [c[0] for c in con.execute(f"describe {table}").fetchall()]
            for table in ("restriction_reasons", "review_requests", "restriction_codes", "coverage", "alerts")
        }
        assert con.execute("select status from review_requests").fetchall() == [("sent",)]
    assert columns["restriction_reasons"] == [
        "business_number", "group_id", "partition_date", "target_date", "appointment_id", "appointment_kind",
        "patient_id", "cliniko_business_id", "location_name", "appointment_ends_at", "is_eligible",
        "restriction_code", "restriction_reason", "is_test", "practitioner_id", "practitioner_name",
    ]  # fmt: skip
    assert columns["review_requests"] == [
        "business_number", "group_id", "partition_date", "target_date", "appointment_id", "appointment_kind",
        "patient_id", "channels", "status", "attempts", "error_code", "error_message", "birdeye_customer_id",
        "first_attempt_at", "sent_at", "practitioner_id", "practitioner_name", "employee_sent",
    ]  # fmt: skip
    assert columns["restriction_codes"] == ["restriction_code", "restriction_reason", "precedence"]
    assert columns["coverage"] == [
        "business_number", "group_id", "partition_date", "target_date", "close_at", "state", "runs",
        "last_run_id", "last_run_at", "closed_at", "candidates", "eligible",
    ]  # fmt: skip


def test_refresh_of_an_unbuilt_warehouse_says_what_to_do(tmp_path: Path) -> None:
    with connect(tmp_path / "warehouse.duckdb"):
        pass
    with pytest.raises(analysts_db.NothingToRefresh, match="build at least one partition"):
        refresh_analytics([tmp_path / "warehouse.duckdb"], tmp_path / "analytics.duckdb")
    assert not (tmp_path / "analytics.duckdb").exists()


def mapping(business_number: str, first_run: datetime, fetch_delay_days: int = 1) -> MappingConfig:
    return MappingConfig(
        business_number=business_number,
        group_id=7,
        parent_business_number="1",
        active=True,
        test=False,
        beta=False,
        frequency_value=1,
        frequency_unit="days",
        next_run_time=first_run,
        first_run_time=first_run,
        updated_at=first_run,
        cliniko_api_key=None,
        birdeye_api_key=None,
        fetch_delay_days=fetch_delay_days,
        cooloff_days=0,
        catchup_days=7,
        location_names=("Main Street Clinic",),
        overridden_keys=frozenset(),
    )


def calendar_rows(analytics_path: Path) -> dict[str, tuple[date, date, int]]:
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        rows = con.execute(
            "select business_number, min(partition_date), max(partition_date), count(*) "
            "from partition_calendar group by all"
        ).fetchall()
    return {bn: (first, last, n) for bn, first, last, n in rows}


def test_the_calendar_is_exported_only_for_the_mappings_whose_calendar_changed(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 1)
    deltas = parquet_root(analytics_path) / coverage.CALENDAR_TABLE / "delta"
    start = date(2024, 1, 1)
    today = datetime.now(UTC)
    first_run = datetime(today.year, today.month, today.day, 9, tzinfo=UTC) - timedelta(days=10)
    ahead = today.date() + timedelta(days=coverage.LOOKAHEAD_DAYS)

    def refresh(mappings: list[MappingConfig], at: datetime = today) -> dict[str, int]:
        return coverage.refresh(
            [warehouse_path], warehouse_path.with_name("alerts.duckdb"), analytics_path, mappings, start, at
        )

    both = [mapping("1001", first_run), mapping("1002", first_run)]
    refresh(both)  # the first: every mapping, a month ahead (1001's partition of 2026-11-24 ran: from there)
    assert calendar_rows(analytics_path) == {
        "1001": (min(PARTITION_DATE, first_run.date() - timedelta(days=1)), ahead, ANY),
        "1002": (first_run.date() - timedelta(days=1), ahead, 10 + 1 + coverage.LOOKAHEAD_DAYS + 1),
    }
    with duckdb.connect(str(analytics_path), read_only=True) as con:  # coverage stops at today, as asked
        last = con.execute("select max(partition_date) from coverage where business_number = '1002'")
        assert last.fetchone()[0] == datetime.now(UTC).date()

    assert "partition_calendar" not in refresh(both)  # nothing changed: nothing exported
    assert list(deltas.iterdir()) == []

    moved = [mapping("1001", first_run), mapping("1002", first_run + timedelta(days=5), fetch_delay_days=2)]
    span = 5 + 1 + coverage.LOOKAHEAD_DAYS + 1  # from the day before its new first due time
    assert refresh(moved)["partition_calendar"] == span  # 1002's new span; 1001 untouched
    assert calendar_rows(analytics_path)["1002"] == (first_run.date() + timedelta(days=4), ahead, span)
    assert len(list(deltas.iterdir())) == 1

    refresh(moved[:1])  # 1002 deleted: its dates go
    assert set(calendar_rows(analytics_path)) == {"1001"}

    later = today + timedelta(days=coverage.LOOKAHEAD_DAYS + 1)  # past the exported month: extended
    assert refresh(moved[:1], later)["partition_calendar"] > 0
    assert calendar_rows(analytics_path)["1001"][1] == later.date() + timedelta(days=coverage.LOOKAHEAD_DAYS)

    # A run of an older partition (a backfill) makes the mapping answer for it: its calendar starts there.
    backfilled = first_run.date() - timedelta(days=40)
    build(warehouse_path, "1001", 1, backfilled)
    refresh(moved[:1], later)
    assert calendar_rows(analytics_path)["1001"][0] == backfilled


def test_new_columns_export_everything_once_and_a_killed_whole_export_is_done_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 3)
    build(warehouse_path, "1002", 2)

    # The first refresh is whole; killed before it is complete (its last step), the next one does it again.
    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(analysts_db, "_write_schema", killed)
        with pytest.raises(KeyboardInterrupt):
            refresh_analytics([warehouse_path], analytics_path)
    assert refresh_analytics([warehouse_path], analytics_path)["restriction_reasons"] == 5
    assert refresh_analytics([warehouse_path], analytics_path)["restriction_reasons"] == 0

    # A release adds a column: every partition is exported again, with it, and only once.
    with connect(warehouse_path) as con:
        con.execute(
            "create or replace view analytics.restriction_reasons as "
            "select *, 'new' as added from marts.appointment_eligibility"
        )
    assert refresh_analytics([warehouse_path], analytics_path)["restriction_reasons"] == 5
    for _ in range(3):  # the older files' grace starts, ends, they are deleted: nothing is whole again
        assert (
            refresh_analytics([warehouse_path], analytics_path, grace_seconds=0)["restriction_reasons"] == 0
        )
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        assert con.execute("select added, count(*) from restriction_reasons group by all").fetchall() == [
            ("new", 5)
        ]


def test_a_month_file_written_by_a_killed_compaction_shows_no_partition_twice(tmp_path: Path) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 3)
    build(warehouse_path, "1002", 2)
    refresh_analytics([warehouse_path], analytics_path)
    build(warehouse_path, "1001", 4)
    refresh_analytics([warehouse_path], analytics_path)
    root = parquet_root(analytics_path)
    deltas = {
        t: [p for p in files if p.parent.name == "delta"] for t, files in analysts_db.live_files(root).items()
    }
    analysts_db._merge(
        root, deltas, analysts_db.live_files(root)
    )  # the new November file is written; the process dies before recording more
    refresh_analytics([warehouse_path], analytics_path)
    assert months(root) == ["2026-11", "2026-11", "_schema"]
    assert counts(analytics_path) == {("1001", PARTITION_DATE): 4, ("1002", PARTITION_DATE): 2}


def test_what_changed_is_exported_whoever_changed_it_and_after_a_failed_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 2)
    refresh_analytics([warehouse_path], analytics_path)
    # The sink posts outside any build (a later run, `cliniko-reviews requeue`): the ledger says when.
    with connect(warehouse_path) as con:
        con.execute("update sink.review_request_ledger set status = 'sent', updated_at = current_timestamp")
    assert refresh_analytics([warehouse_path], analytics_path)["review_requests"] == 2

    build(warehouse_path, "1002", 3)
    with monkeypatch.context() as patch:
        patch.setattr(analysts_db, "_write_catalog", lambda *args: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            refresh_analytics([warehouse_path], analytics_path)
    assert counts(analytics_path) == {("1001", PARTITION_DATE): 2}  # the last catalog stands
    assert refresh_analytics([warehouse_path], analytics_path)["restriction_reasons"] == 3  # 1002, still due
    assert counts(analytics_path) == {("1001", PARTITION_DATE): 2, ("1002", PARTITION_DATE): 3}
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        statuses = con.execute("select business_number, status, count(*) from review_requests group by all")
        assert sorted(statuses.fetchall()) == [("1001", "sent", 2), ("1002", "pending", 3)]
        info = json.loads(con.execute("select row_counts from snapshot_info").fetchone()[0])
        assert info["restriction_reasons"] == 3 and info["restriction_codes"] == 9  # exported, copied
    assert refresh_analytics([warehouse_path], analytics_path)["restriction_reasons"] == 0  # nothing new


@pytest.mark.parametrize("store", ["files", "postgres"])
def test_the_analysts_see_the_alerts_where_the_hosts_keep_them(tmp_path: Path, store: str, request) -> None:
    from pipeline.calendar.alerts import raise_alerts
    from pipeline.calendar.store import Alert

    alerts_at = tmp_path / "alerts.duckdb" if store == "files" else request.getfixturevalue("database_url")
    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 1)
    alert = Alert("mapping_stalled", "mapping_stalled|1001", "Mapping 1001 stalled", "1001", 7, None)
    raise_alerts(alerts_at, None, [alert])
    coverage.refresh([warehouse_path], alerts_at, analytics_path, [], PARTITION_DATE)
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        rows = con.execute("select alert_key, kind, business_number, resolved_at from alerts").fetchall()
    assert rows == [("mapping_stalled|1001", "mapping_stalled", "1001", None)]


def test_registry_changes_shows_the_registrys_audit_trail_with_keys_masked(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from pipeline.registry.audit import Actor
    from pipeline.registry.inputs import MappingInput, MappingPatch, PropertyInput, TriggerInput
    from pipeline.registry.secrets import SecretBox
    from pipeline.registry.store import RegistryStore

    key = "MS0xMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo-uk2"
    store = RegistryStore(tmp_path / "registry.sqlite3", SecretBox(Fernet(Fernet.generate_key())))
    sam = Actor("sam", "PATCH", "/admin/mappings/{businessNumber}")
    group, _ = store.create_group("1000", 118, [PropertyInput("cliniko.api.key", key, False, "p")], [
        TriggerInput(129, 1, None, "t")])  # fmt: skip
    store.create_mapping(
        MappingInput("1001", group["groupId"], [PropertyInput("cliniko.location.name", "Main", False, "p")])
    )
    store.update_mapping("1001", MappingPatch(test=True), sam)

    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"

    def refresh(trail: coverage.AuditTrail) -> int:
        """A partition built and the analysts' database refreshed; the rows of `registry_changes`."""
        build(warehouse_path, "1001", 1)
        counts = coverage.refresh(
            [warehouse_path],
            tmp_path / "alerts.duckdb",
            analytics_path,
            [],
            PARTITION_DATE,
            registry_changes=trail,
        )
        return counts["registry_changes"]

    assert refresh(coverage.AuditTrail(store.last_change_id(), store.audit_rows)) == 3
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        columns = [c[0] for c in con.execute("describe registry_changes").fetchall()]
        rows = con.execute(
            "select changed_by, route, entity_kind, action, business_number, group_id, "
            "changes->>'$[0].field', changes->>'$[0].after' from registry_changes order by change_id"
        ).fetchall()
        types = con.execute(
            "select distinct typeof(changed_at), typeof(after_state) from registry_changes"
        ).fetchall()
        everything = repr(con.execute("from registry_changes").fetchall())
    assert columns == [
        "change_id", "changed_at", "changed_by", "method", "route", "action", "entity_kind", "entity_id",
        "business_number", "group_id", "before_state", "after_state", "changes",
    ]  # fmt: skip
    gid = group["groupId"]
    assert rows == [
        ("cli", None, "group", "create", "1000", gid, "parentBusinessNumber", "1000"),
        ("cli", None, "mapping", "create", "1001", gid, "integrationGroupId", str(gid)),
        ("sam", "/admin/mappings/{businessNumber}", "mapping", "update", "1001", gid, "test", "true"),
    ]
    assert types == [("TIMESTAMP WITH TIME ZONE", "JSON")]
    assert "****-uk2" in everything and key[:-4] not in everything
    for path in [analytics_path, *(tmp_path / "analytics" / "registry_audit").iterdir()]:
        assert key[:-4].encode() not in path.read_bytes()

    # A refresh reads the trail again only when the registry has a newer change.
    def unread() -> list[dict]:
        raise AssertionError("the trail was read again although it had not changed")

    audit_dir = tmp_path / "analytics" / "registry_audit"
    [written] = list(audit_dir.iterdir())
    assert refresh(coverage.AuditTrail(store.last_change_id(), unread)) == 3
    assert list(audit_dir.iterdir()) == [written]
    store.update_mapping("1001", MappingPatch(test=False), sam)
    assert refresh(coverage.AuditTrail(store.last_change_id(), store.audit_rows)) == 4
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        assert con.execute("select max(change_id), count(*) from registry_changes").fetchone() == (
            store.last_change_id(),
            4,
        )
    superseded = json.loads((tmp_path / "analytics" / "superseded.json").read_text())
    assert str(written) in superseded  # deleted once no catalog younger than the grace period names it


def test_an_outcome_recorded_in_postgresql_before_the_last_refresh_still_reaches_the_analysts(
    tmp_path: Path, database_url: str
) -> None:
    """With DATABASE_URL a posting run records outcomes in PostgreSQL and copies them into its warehouse when
    it ends. Another partition's refresh may come in between, past the outcomes' time there: the copy must
    still count as a change of the warehouse, or the analysts would keep seeing `pending`."""
    from pipeline.postgres import run
    from pipeline.sink import ledger
    from pipeline.sink.post import ledger_connection

    warehouse_path, analytics_path = tmp_path / "warehouse.duckdb", tmp_path / "analytics.duckdb"
    build(warehouse_path, "1001", 2)
    with connect(warehouse_path) as con, ledger_connection(None, database_url) as shared:
        ledger.copy_rows(con, shared, "true", {})  # the claims, as the decision pushed them
        a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)  # when the posting run recorded them
        sent = "update sink.review_request_ledger set status = 'sent', updated_at = $at"
        run(shared, sent, {"at": a_minute_ago})
    build(warehouse_path, "1002", 1)  # meanwhile: a build, and a refresh past the outcomes' time
    refresh_analytics([warehouse_path], analytics_path)
    keys = {"business_numbers": ["1001", "1001"], "appointment_ids": ["a0", "a1"]}
    with connect(warehouse_path) as con, ledger_connection(None, database_url) as shared:
        assert ledger.copy_rows(shared, con, ledger.KEY_ROWS, keys) == 2  # the posting run ends
    refresh_analytics([warehouse_path], analytics_path)
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        statuses = con.execute("select business_number, status, count(*) from review_requests group by all")
        assert sorted(statuses.fetchall()) == [("1001", "sent", 2), ("1002", "pending", 1)]
