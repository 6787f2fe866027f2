"""A small, readable builder of raw Cliniko rows and ledger rows for the SQL model tests.

Each method inserts one row with sensible defaults, so a test states only what matters to it:

    wh.business("1001", "b1", "Main Street Clinic", tz="Australia/Sydney")
    wh.patient("1001", "p1", reminder_type="SMS")
    wh.appointment("1001", "a1", patient_id="p1", ends_at="2026-11-24 10:00", tz="Australia/Sydney")
    wh.build("1001", location_names=["main street clinic"])
    assert wh.outcomes("1001") == {"a1": "eligible"}
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from pipeline.calendar.rules import target_day
from pipeline.warehouse.models import build_partition, ensure_models

PARTITION_DATE = date(2026, 11, 24)
RUN_STARTED_AT = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
CLOSE_AT = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)  # Sydney's midnight ending 2026-11-24
LOADED_AT = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
DEFAULT_MOBILE = "0412 345 678"


def local_time(text: str, tz: str) -> datetime:
    """'2026-11-24 23:30' in `tz` as an aware datetime (what Cliniko's ends_at means)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


class Warehouse:
    """Raw tables and the ledger of a DuckDB file, filled row by row for tests."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        ensure_models(con)

    def business(
        self,
        business_number: str,
        cliniko_business_id: str,
        business_name: str,
        *,
        tz: str | None = "Australia/Sydney",
        country_code: str | None = "AU",
        archived: bool = False,
    ) -> None:
        self.con.execute(
            "insert into raw.cliniko_businesses (business_number, cliniko_business_id, business_name, "
            "time_zone_identifier, country_code, archived_at, loaded_at) values (?, ?, ?, ?, ?, ?, ?)",
            [
                business_number,
                cliniko_business_id,
                business_name,
                tz,
                country_code,
                LOADED_AT if archived else None,
                LOADED_AT,
            ],
        )

    def appointment_type(
        self, business_number: str, appointment_type_id: str, name: str | None, *, archived: bool = False
    ) -> None:
        """One of the account's Cliniko appointment types, as fetched for the mapping."""
        self.con.execute(
            "insert into raw.cliniko_appointment_types (business_number, appointment_type_id, "
            "appointment_type_name, archived_at, loaded_at) values (?, ?, ?, ?, ?)",
            [business_number, appointment_type_id, name, LOADED_AT if archived else None, LOADED_AT],
        )

    def patient(
        self,
        business_number: str,
        patient_id: str,
        *,
        partition_date: date = PARTITION_DATE,
        first_name: str | None = "Pat",
        preferred_first_name: str | None = None,
        last_name: str | None = "Smith",
        reminder_type: str | None = "SMS & Email",
        email: str | None = "pat@example.com",
        phones: Sequence[tuple[str, str]] | None = (("Mobile", DEFAULT_MOBILE),),
        archived: bool = False,
        deleted: bool = False,
        merged: bool = False,
        missing: bool = False,
    ) -> None:
        phone_numbers = None if phones is None else [{"phone_type": t, "number": n} for t, n in phones]
        self.con.execute(
            "insert into raw.cliniko_patients (business_number, partition_date, patient_id, is_missing, "
            "first_name, last_name, preferred_first_name, email, reminder_type, phone_numbers, archived_at, "
            "deleted_at, merged_at, loaded_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                business_number,
                partition_date,
                patient_id,
                missing,
                first_name,
                last_name,
                preferred_first_name,
                email,
                reminder_type,
                phone_numbers,
                LOADED_AT if archived else None,
                LOADED_AT if deleted else None,
                LOADED_AT if merged else None,
                LOADED_AT,
            ],
        )

    def appointment(
        self,
        business_number: str,
        appointment_id: str,
        *,
        patient_id: str | None,
        ends_at: str | datetime,
        tz: str = "Australia/Sydney",
        cliniko_business_id: str = "b1",
        partition_date: date = PARTITION_DATE,
        appointment_type_id: str | None = None,
        practitioner_id: str | None = None,
        did_not_arrive: bool = False,
        cancelled: bool = False,
        archived: bool = False,
        deleted: bool = False,
    ) -> None:
        ends = local_time(ends_at, tz) if isinstance(ends_at, str) else ends_at
        self.con.execute(
            "insert into raw.cliniko_appointments (business_number, partition_date, appointment_id, "
            "cliniko_business_id, patient_id, appointment_type_id, starts_at, ends_at, did_not_arrive, "
            "cancelled_at, archived_at, deleted_at, loaded_at, practitioner_id) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                business_number,
                partition_date,
                appointment_id,
                cliniko_business_id,
                patient_id,
                appointment_type_id,
                ends - timedelta(minutes=30),
                ends,
                did_not_arrive,
                LOADED_AT if cancelled else None,
                LOADED_AT if archived else None,
                LOADED_AT if deleted else None,
                LOADED_AT,
                practitioner_id,
            ],
        )

    def practitioner(
        self,
        business_number: str,
        practitioner_id: str,
        *,
        partition_date: date = PARTITION_DATE,
        first_name: str | None = "Hannah",
        last_name: str | None = "Ng",
        email: str | None = "hannah.ng@clinic.example.com",
        active: bool = True,
        missing: bool = False,
    ) -> None:
        """A practitioner the partition's appointments reference, with its Cliniko user's email, as the
        ingestion stores it (`missing`: Cliniko returned it from neither list)."""
        self.con.execute(
            "insert into raw.cliniko_practitioners (business_number, partition_date, practitioner_id, "
            "is_missing, is_active, first_name, last_name, email, loaded_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                business_number,
                partition_date,
                practitioner_id,
                missing,
                None if missing else active,
                None if missing else first_name,
                None if missing else last_name,
                None if missing else email,
                LOADED_AT,
            ],
        )

    def group_appointment(
        self,
        business_number: str,
        group_appointment_id: str,
        *,
        ends_at: str | datetime,
        tz: str = "Australia/Sydney",
        cliniko_business_id: str = "b1",
        partition_date: date = PARTITION_DATE,
        appointment_type_id: str | None = None,
        practitioner_id: str | None = None,
        archived: bool = False,
        deleted: bool = False,
    ) -> None:
        """A class (Cliniko group appointment); its attendees come with `attendee`."""
        ends = local_time(ends_at, tz) if isinstance(ends_at, str) else ends_at
        self.con.execute(
            "insert into raw.cliniko_group_appointments (business_number, partition_date, "
            "group_appointment_id, cliniko_business_id, appointment_type_id, practitioner_id, starts_at, "
            "ends_at, archived_at, deleted_at, loaded_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                business_number,
                partition_date,
                group_appointment_id,
                cliniko_business_id,
                appointment_type_id,
                practitioner_id,
                ends - timedelta(minutes=60),
                ends,
                LOADED_AT if archived else None,
                LOADED_AT if deleted else None,
                LOADED_AT,
            ],
        )

    def attendee(
        self,
        business_number: str,
        attendee_id: str,
        *,
        group_appointment_id: str,
        patient_id: str | None,
        arrived: bool | None = True,
        partition_date: date = PARTITION_DATE,
        cancelled: bool = False,
        archived: bool = False,
    ) -> None:
        """An attendee of the class `group_appointment_id` (its visit is keyed `attendee-<attendee_id>`)."""
        self.con.execute(
            "insert into raw.cliniko_attendees (business_number, partition_date, attendee_id, booking_id, "
            "patient_id, arrived, cancelled_at, archived_at, loaded_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                business_number,
                partition_date,
                attendee_id,
                group_appointment_id,
                patient_id,
                arrived,
                LOADED_AT if cancelled else None,
                LOADED_AT if archived else None,
                LOADED_AT,
            ],
        )

    def quarantine(
        self, business_number: str, resource: str, record_id: str, *, partition_date: date = PARTITION_DATE
    ) -> None:
        """A Cliniko record that failed validation, as the ingestion quarantines it."""
        self.con.execute(
            "insert into raw.cliniko_quarantine (business_number, partition_date, resource, record_id, "
            "reason, record, quarantined_at) values (?, ?, ?, ?, 'email: expected text, got 5', '{}', ?)",
            [business_number, partition_date, resource, record_id, LOADED_AT],
        )

    def ledger(
        self,
        business_number: str,
        appointment_id: str,
        *,
        patient_id: str,
        target_date: date,
        group_id: int,
        status: str = "sent",
        partition_date: date | None = None,
        channels: str = "sms,email",
    ) -> None:
        self.con.execute(
            "insert into sink.review_request_ledger (business_number, appointment_id, partition_date, "
            "target_date, group_id, patient_id, channels, status, attempts, updated_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            [
                business_number,
                appointment_id,
                partition_date or target_date,
                target_date,
                group_id,
                patient_id,
                channels,
                status,
                LOADED_AT,
            ],
        )

    def build(
        self,
        business_number: str,
        *,
        location_names: Sequence[str] = ("Main Street Clinic",),
        excluded_appointment_types: Sequence[str] = (),
        partition_date: date = PARTITION_DATE,
        group_id: int = 7,
        fetch_delay_days: int = 0,
        cooloff_days: int = 0,
        beta: bool = False,
        test: bool = False,
        run_started_at: datetime = RUN_STARTED_AT,
        run_id: str | None = None,
    ) -> dict[str, int]:
        return build_partition(
            self.con,
            business_number=business_number,
            partition_date=partition_date,
            group_id=group_id,
            target_date=target_day(partition_date, fetch_delay_days),
            cooloff_days=cooloff_days,
            location_names=location_names,
            excluded_appointment_types=excluded_appointment_types,
            beta=beta,
            test=test,
            run_id=run_id or uuid.uuid4().hex,
            run_started_at=run_started_at,
            close_at=CLOSE_AT,
        )

    def outcomes(self, business_number: str, partition_date: date = PARTITION_DATE) -> dict[str, str]:
        """appointment_id -> restriction code, or 'eligible'."""
        rows = self.con.execute(
            "select appointment_id, coalesce(restriction_code, 'eligible') "
            "from marts.appointment_eligibility where business_number = ? and partition_date = ? "
            "order by appointment_id",
            [business_number, partition_date],
        ).fetchall()
        return dict(rows)

    def claims(self) -> dict[tuple[str, str], str]:
        """(business number, appointment id) -> status of every ledger row."""
        rows = self.con.execute(
            "select business_number, appointment_id, status from sink.review_request_ledger order by all"
        ).fetchall()
        return {(bn, appointment): status for bn, appointment, status in rows}

    def rows(self, business_number: str, partition_date: date = PARTITION_DATE) -> dict[str, dict]:
        """appointment_id -> the whole mart row as a dict."""
        result = self.con.execute(
            "select * from marts.appointment_eligibility where business_number = ? and partition_date = ?",
            [business_number, partition_date],
        )
        columns = [c[0] for c in result.description]
        return {
            row[columns.index("appointment_id")]: dict(zip(columns, row, strict=True))
            for row in result.fetchall()
        }
