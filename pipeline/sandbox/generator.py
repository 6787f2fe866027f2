"""Deterministic fake Cliniko accounts for the emulator, the demo, tests and benchmarks.

Everything is derived from a seed, so a failing test or a benchmark can be reproduced exactly. Appointments
are generated column-wise with numpy because benchmarks need millions of them; businesses and patients are
few enough to be plain dicts. Records use Cliniko's field names and wire formats (string ids, `...Z`
timestamps); related records are held as `<name>_id` fields that the emulator renders as `{"links": {"self":
url}}`.

The data deliberately contains what breaks naive pipelines: non-ASCII names, every `reminder_type` (and
null), phone numbers in many national formats and garbage, missing/malformed/over-long emails, archived,
merged and deleted patients, cancelled/archived/deleted appointments, did-not-arrive, repeat patients on one
day and across days, appointments spanning local midnight and appointments after `now`, and classes (group
appointments) whose attendees arrived, did not, were never marked, cancelled or were archived, some of them
patients with an individual appointment the same day.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

NULL = np.iinfo(np.int64).max
"""Null marker in int64 columns (ids, epoch seconds). The maximum sorts last ascending, as Postgres does."""

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

CANCELLATION_REASONS: dict[int, str] = {
    10: "Feeling Better",
    20: "Condition Worse",
    30: "Sick",
    31: "COVID-19 related",
    40: "Away",
    50: "Other",
    60: "Work",
}
REMINDER_TYPES: tuple[str | None, ...] = ("SMS & Email", "SMS", "Email", "None", None)

_ID_BASE = {
    "businesses": 1_100_000_000_000_000_000,
    "practitioners": 1_200_000_000_000_000_000,
    "appointment_types": 1_300_000_000_000_000_000,
    "patients": 1_400_000_000_000_000_000,
    "individual_appointments": 1_500_000_000_000_000_000,
    "users": 1_800_000_000_000_000_000,
    "group_appointments": 1_600_000_000_000_000_000,
    "attendees": 1_700_000_000_000_000_000,
}
_ACCOUNT_ID_STRIDE = 10**16

# (business_name, time_zone_identifier, time_zone label, country_code, country, city)
_BUSINESS_POOL: tuple[tuple[str, str | None, str | None, str, str, str], ...] = (
    ("Sydney CBD Physio", "Australia/Sydney", "Sydney", "AU", "Australia", "Sydney"),
    ("Auckland Central Clinic", "Pacific/Auckland", "Auckland", "NZ", "New Zealand", "Auckland"),
    ("London Bridge Physiotherapy", "Europe/London", "London", "GB", "United Kingdom", "London"),
    (
        "Santa Monica Wellness",
        "America/Los_Angeles",
        "Pacific Time (US & Canada)",
        "US",
        "United States",
        "Santa Monica",
    ),
    (" Honolulu Sports Medicine ", "Pacific/Honolulu", "Hawaii", "US", "United States", "Honolulu"),
    ("Mobile Visits", None, None, "AU", "Australia", "Sydney"),
    ("Parramatta Physio", "Australia/Sydney", "Sydney", "AU", "Australia", "Parramatta"),
    ("Melbourne Sports Clinic", "Australia/Melbourne", "Melbourne", "AU", "Australia", "Melbourne"),
    ("Wellington Wellness", "Pacific/Auckland", "Wellington", "NZ", "New Zealand", "Wellington"),
    ("Manchester Movement", "Europe/London", "London", "GB", "United Kingdom", "Manchester"),
    (
        "Seattle Spine Center",
        "America/Los_Angeles",
        "Pacific Time (US & Canada)",
        "US",
        "United States",
        "Seattle",
    ),
    ("Maui Massage & Rehab", "Pacific/Honolulu", "Hawaii", "US", "United States", "Kahului"),
    ("Home Care Team", None, None, "NZ", "New Zealand", "Christchurch"),
    ("Brisbane Podiatry", "Australia/Brisbane", "Brisbane", "AU", "Australia", "Brisbane"),
)
_ARCHIVED_BUSINESS_SLOT = 6
"""The seventh business of every account is archived (closed location with history)."""

_FIRST_NAMES = (
    "Zoë",
    "José",
    "Łukasz",
    "Søren",
    "Chloé",
    "Māui",
    "Aroha",
    "Siân",
    "Björn",
    "Renée",
    "Nguyễn",
    "Иван",
    "Jürgen",
    "Ngaio",
    "Olivia",
    "Jack",
    "Charlotte",
    "Noah",
    "Amelia",
    "Liam",
    "Mia",
    "William",
    "Isla",
    "Oliver",
    "Ava",
    "Lucas",
    "Grace",
    "Ethan",
    "Sophie",
    "Mason",
    "Kalani",
    "Leilani",
    "Priya",
    "Wei",
    "Mohammed",
    "Fatima",
    "Seán",
    "Niamh",
    "Dvořák",
    "Ana-María",
)
_LAST_NAMES = (
    "O'Brien",
    "Müller",
    "D'Arcy",
    "Ólafsdóttir",
    "Tāne",
    "Nguyễn",
    "García",
    "Smith",
    "Jones",
    "Williams",
    "Brown",
    "Wilson",
    "Taylor",
    "Ngata",
    "Kahananui",
    "Patel",
    "Zhang",
    "Kowalczyk",
    "Nørgaard",
    "van der Berg",
    "MacDonald",
    "Te Whare",
    "Smith-Jones",
    "Lee",
    "Chen",
    "Martin",
    "Thompson",
    "White",
    "Walker",
    "Hall",
)
_CANCELLATION_NOTES = (None, "", "Rang to cancel", "Patient unwell", "Booked elsewhere", "Läuft nicht 🙁")
_PRACTITIONER_NAMES = (
    ("Hannah", "Ng"),
    ("Tomás", "Ruiz"),
    ("Aisha", "Khan"),
    ("Ben", "Carter"),
    ("Mere", "Parata"),
    ("Sam", "Oduya"),
    ("Lena", "Fischer"),
    ("Kai", "Akana"),
)
# Practitioners' Cliniko users (where their email lives: a practitioner record has none), decided by the
# practitioner's position k, with no random draw, so adding them changed no other generated value:
# k % 4 == 1 has no email on file, k % 4 == 2 is inactive (left the clinic; past appointments still name
# them), k % 4 == 3 has an address longer than Birdeye's 40 characters. The account also has a receptionist,
# a user who is no practitioner.
_PRACTITIONER_EMAIL_DOMAIN = "clinic.example.com"
_RECEPTIONIST = ("Priya", "Desai")
_APPOINTMENT_TYPES = (
    ("Initial Consultation", 60),
    ("Standard Consultation", 30),
    ("Short Review", 15),
    ("Extended Treatment", 90),
    ("Telehealth Follow-up", 45),
)
# Types listed after the bookable ones above, so adding them changed no other generated value: a free consult
# takes the slot of a short review (same 15 minutes, a separate random stream picks which); a class type
# (max_attendees > 1) that no individual appointment uses; an archived type, which `/appointment_types` hides
# unless asked for `archived_at:*`. (name, minutes, max_attendees, archived)
_FREE_CONSULT = "Free Consult"
_MORE_APPOINTMENT_TYPES = (
    (_FREE_CONSULT, 15, 1, False),
    ("Pilates Class", 60, 12, False),
    ("Initial Assessment (old)", 45, 1, True),
)
_FREE_CONSULT_SHARE = 0.3  # of the short reviews
# Class types, listed last for the same reason; classes use them and Pilates Class (max_attendees 12) above.
_CLASS_TYPES = (("Hydrotherapy Group", 45, 20, False),)
_EXTRA_CLASSES_PER_APPOINTMENTS = 60  # besides two classes a day: one per this many individual appointments


def format_timestamp(epoch_seconds: int) -> str:
    """Cliniko's wire format: UTC, second precision, `Z`."""
    return datetime.fromtimestamp(int(epoch_seconds), UTC).strftime(TIMESTAMP_FORMAT)


def _format_column(values: np.ndarray) -> list[str | None]:
    """Epoch seconds -> `...Z` strings (None for NULL), vectorised."""
    present = values != NULL
    text = np.datetime_as_string(np.where(present, values, 0).astype("datetime64[s]"), unit="s")
    return [f"{t}Z" if p else None for t, p in zip(text.tolist(), present.tolist(), strict=True)]


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class AppointmentTable:
    """Individual appointments, one numpy column per field (int64 ids and epoch seconds; NULL marks null).

    Kept column-wise so a million rows build in seconds and the emulator can filter and sort with numpy.
    `record(i)` gives the i-th appointment as plain Cliniko fields.
    """

    id: np.ndarray
    business_id: np.ndarray
    patient_id: np.ndarray
    practitioner_id: np.ndarray
    appointment_type_id: np.ndarray
    repeated_from_id: np.ndarray
    starts_at: np.ndarray
    ends_at: np.ndarray
    created_at: np.ndarray
    updated_at: np.ndarray
    cancelled_at: np.ndarray
    archived_at: np.ndarray
    deleted_at: np.ndarray
    cancellation_reason: np.ndarray
    cancellation_note: np.ndarray
    did_not_arrive: np.ndarray
    patient_arrived: np.ndarray
    email_reminder_sent: np.ndarray
    sms_reminder_sent: np.ndarray
    patient_names: dict[int, str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.id)

    def record(self, i: int) -> dict:
        """The i-th appointment with Cliniko field names; related records as `<name>_id` strings."""
        return self.records_at(np.array([i]))[0]

    def records_at(self, rows: np.ndarray) -> list[dict]:
        """Several appointments at once, formatted column-wise: this is the emulator's per-page hot path."""
        rows = np.asarray(rows, dtype=np.int64)
        stamps = {
            name: _format_column(getattr(self, name)[rows])
            for name in (
                "starts_at",
                "ends_at",
                "cancelled_at",
                "archived_at",
                "deleted_at",
                "created_at",
                "updated_at",
            )
        }
        ids = {
            name: getattr(self, name)[rows].tolist()
            for name in (
                "id",
                "business_id",
                "patient_id",
                "practitioner_id",
                "appointment_type_id",
                "repeated_from_id",
            )
        }
        reasons = self.cancellation_reason[rows].tolist()
        notes = self.cancellation_note[rows].tolist()
        dna, arrived = self.did_not_arrive[rows].tolist(), self.patient_arrived[rows].tolist()
        emailed, texted = self.email_reminder_sent[rows].tolist(), self.sms_reminder_sent[rows].tolist()
        out = []
        for k in range(len(rows)):
            cancelled = stamps["cancelled_at"][k] is not None
            repeated_from = ids["repeated_from_id"][k]
            out.append(
                {
                    "id": str(ids["id"][k]),
                    "starts_at": stamps["starts_at"][k],
                    "ends_at": stamps["ends_at"][k],
                    "patient_name": self.patient_names[ids["patient_id"][k]],
                    "did_not_arrive": dna[k],
                    "patient_arrived": arrived[k],
                    "cancelled_at": stamps["cancelled_at"][k],
                    "cancellation_reason": reasons[k] if cancelled else None,
                    "cancellation_reason_description": CANCELLATION_REASONS.get(reasons[k], "")
                    if cancelled
                    else "",
                    "cancellation_note": notes[k] if cancelled else None,
                    "archived_at": stamps["archived_at"][k],
                    "deleted_at": stamps["deleted_at"][k],
                    "email_reminder_sent": emailed[k],
                    "sms_reminder_sent": texted[k],
                    "created_at": stamps["created_at"][k],
                    "updated_at": stamps["updated_at"][k],
                    "business_id": str(ids["business_id"][k]),
                    "patient_id": str(ids["patient_id"][k]),
                    "practitioner_id": str(ids["practitioner_id"][k]),
                    "appointment_type_id": str(ids["appointment_type_id"][k]),
                    "repeated_from_id": None if repeated_from == NULL else str(repeated_from),
                }
            )
        return out

    def records(self) -> Iterator[dict]:
        for first in range(0, len(self), 10_000):
            yield from self.records_at(np.arange(first, min(first + 10_000, len(self))))


@dataclass(frozen=True)
class Account:
    """One Cliniko account as seen through one API key: its businesses, people and appointments.

    `patients` holds what `/patients` can return (archived and merged included); `deleted_patients` holds
    patients that appointments still reference but Cliniko no longer returns at all. `users` are the
    account's Cliniko users: every practitioner's (`user_id`), where its email is, and staff who are none.
    """

    name: str
    api_key: str = field(repr=False)
    shard: str
    businesses: list[dict]
    practitioners: list[dict]
    appointment_types: list[dict]
    patients: list[dict]
    deleted_patients: list[dict]
    appointments: AppointmentTable
    now: datetime
    users: list[dict] = field(default_factory=list)
    group_appointments: list[dict] = field(default_factory=list)
    attendees: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class SizePreset:
    businesses: int
    appointments: int
    days_back: int
    days_forward: int
    accounts: int


SIZES: dict[str, SizePreset] = {
    "tiny": SizePreset(businesses=3, appointments=300, days_back=14, days_forward=7, accounts=1),
    "demo": SizePreset(businesses=7, appointments=12_000, days_back=90, days_forward=14, accounts=2),
    "large": SizePreset(businesses=7, appointments=1_000_000, days_back=730, days_forward=30, accounts=1),
}


def _api_key(rng: random.Random, shard: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(40)) + f"-{shard}"


def _ids(rng: np.random.Generator, base: int, order_key: np.ndarray) -> np.ndarray:
    """Ascending ids in creation order, like Cliniko's: the earliest-created record has the smallest id."""
    n = len(order_key)
    ids = np.empty(n, dtype=np.int64)
    ids[np.argsort(order_key, kind="stable")] = base + np.cumsum(rng.integers(1, 5_000, n, dtype=np.int64))
    return ids


def _phone(rng: random.Random, country: str) -> tuple[str, str]:
    """A (mobile, home) pair in one of the formats clinics really type, for the patient's country."""
    d = lambda k: f"{rng.randrange(10**k):0{k}d}"  # noqa: E731
    if country == "AU":
        mobile = rng.choice(
            [f"04{d(2)} {d(3)} {d(3)}", f"04{d(8)}", f"+61 4{d(2)} {d(3)} {d(3)}", f"614{d(8)}"]
        )
        home = rng.choice([f"(02) {d(4)} {d(4)}", f"03 {d(4)} {d(4)}", f"612{d(8)}"])
    elif country == "NZ":
        mobile = rng.choice([f"021 {d(3)} {d(4)}", f"+64 21 {d(3)} {d(4)}", f"6422{d(7)}", f"027{d(7)}"])
        home = rng.choice([f"(09) {d(3)} {d(4)}", f"644{d(7)}"])
    elif country == "GB":
        mobile = rng.choice([f"07{d(3)} {d(6)}", f"+44 7{d(3)} {d(6)}", f"447{d(9)}"])
        home = rng.choice([f"020 {d(4)} {d(4)}", f"0161 {d(3)} {d(4)}"])
    else:
        area = rng.choice(["415", "310", "808", "206"])
        mobile = rng.choice([f"({area}) {d(3)}-{d(4)}", f"+1 {area} {d(3)} {d(4)}", f"1{area}{d(7)}"])
        home = rng.choice([f"({area}) {d(3)}-{d(4)}", f"{area}.{d(3)}.{d(4)}"])
    return mobile, home


_GARBAGE_PHONES = ("call reception", "12", "0000", "+61 4", "n/a", "04xx xxx xxx", "")


def _email(rng: random.Random, first: str, last: str, n: int) -> str | None:
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    roll = rng.random()
    if roll < 0.12:
        return None
    if roll < 0.15:
        return rng.choice(
            [f"{local}@", f"{local}.example.com", f"{local}@@example.com", "n/a", f" {local}@example"]
        )
    if roll < 0.18:
        return f"{local}.with.a.rather.long.mailbox.name{n}@long-example-domain.com.au"
    if roll < 0.20:
        return f"{local.upper()}{n}@EXAMPLE.COM"
    return f"{local}{n}@example.com"


def _patient_phones(rng: random.Random, country: str) -> list[dict]:
    roll = rng.random()
    mobile, home = _phone(rng, country)
    if roll < 0.10:
        return []
    if roll < 0.17:
        return [{"phone_type": "Home", "number": home}]
    if roll < 0.21:
        return [{"phone_type": "Mobile", "number": rng.choice(_GARBAGE_PHONES)}]
    if roll < 0.25:
        other = rng.choice([c for c in ("AU", "NZ", "GB", "US") if c != country])
        return [{"phone_type": "Mobile", "number": _phone(rng, other)[0]}]
    if roll < 0.55:
        return [{"phone_type": "Mobile", "number": mobile}, {"phone_type": "Home", "number": home}]
    if roll < 0.57:
        return [{"phone_type": "Work", "number": home}, {"phone_type": "Mobile", "number": mobile}]
    return [{"phone_type": "Mobile", "number": mobile}]


def _utc_offsets(businesses: list[dict], start: date, days: int) -> np.ndarray:
    """Seconds east of UTC at local noon per business and day; exact for 03:00-24:00 (DST moves at night)."""
    offsets = np.zeros((len(businesses), days), dtype=np.int64)
    for b, business in enumerate(businesses):
        name = business["time_zone_identifier"]
        if name is None:
            continue
        zone = ZoneInfo(name)
        for k in range(days):
            noon = datetime.combine(start + timedelta(days=k), time(12), tzinfo=zone)
            offsets[b, k] = int(noon.utcoffset().total_seconds())
    return offsets


def _businesses(rng: random.Random, account_index: int, count: int, start: date, now: datetime) -> list[dict]:
    out = []
    first = account_index * 7
    for slot in range(count):
        name, tz, tz_label, cc, country, city = _BUSINESS_POOL[(first + slot) % len(_BUSINESS_POOL)]
        if slot >= 7:
            name = f"{name} {slot // 7 + 1}"
        created = _epoch(datetime.combine(start, time(), tzinfo=UTC)) - rng.randint(400, 2000) * 86400
        archived = _epoch(now) - rng.randint(1, 20) * 86400 if slot == _ARCHIVED_BUSINESS_SLOT else None
        out.append(
            {
                "id": str(_ID_BASE["businesses"] + account_index * _ACCOUNT_ID_STRIDE + (slot + 1) * 7919),
                "business_name": name,
                "display_name": name.strip(),
                "label": name.strip(),
                "address_1": f"{rng.randint(1, 400)} Main Street",
                "address_2": None,
                "city": city,
                "state": None,
                "post_code": str(rng.randint(1000, 9999)),
                "country": country,
                "country_code": cc,
                "contact_information": None,
                "email_reply_to": "reception@example.com",
                "website_address": None,
                "business_registration_name": "ABN" if cc == "AU" else None,
                "business_registration_value": None,
                "show_in_online_bookings": True,
                "additional_information": None,
                "additional_invoice_information": None,
                "appointment_reminders_enabled": True,
                "time_zone": tz_label,
                "time_zone_identifier": tz,
                "archived_at": None if archived is None else format_timestamp(archived),
                "deleted_at": None,
                "created_at": format_timestamp(created),
                "updated_at": format_timestamp(archived if archived is not None else created + 86400),
            }
        )
    return out


def generate_account(
    seed: int,
    *,
    businesses: int = 7,
    patients: int | None = None,
    appointments: int = 1_000,
    start: date = date(2026, 1, 1),
    end: date = date(2026, 3, 1),
    now: datetime | None = None,
    account_index: int = 0,
    shard: str = "au4",
    name: str | None = None,
    hot_day: date | None = None,
    hot_day_appointments: int = 0,
    hot_day_classes: int = 0,
) -> Account:
    """Build one account deterministically: the same arguments always give identical data.

    Appointments start on local days in `[start, end)`; `now` (default: 00:00 UTC seven days before `end`,
    but not before `start`) separates the past (arrived, did-not-arrive) from the future. `patients` defaults
    to one per four appointments (at least 5), so most patients come back. Every 7th business is archived.
    `hot_day_appointments` of the `appointments` start on local day `hot_day` at the first business, for
    benchmarks that need one heavy mapping-day inside a long history; the rest is unchanged.
    `hot_day_classes` more classes take place that day at the first business (their attendees fill more
    than a page); the other classes keep their values but for their ids.
    """
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    if businesses < 1 or appointments < 1:
        raise ValueError("an account needs at least one business and one appointment")
    if (hot_day_appointments or hot_day_classes) and (hot_day is None or not start <= hot_day < end):
        raise ValueError(
            f"hot_day ({hot_day}) must be a day in [{start}, {end}) when hot_day_appointments or "
            "hot_day_classes is set"
        )
    if not 0 <= hot_day_appointments <= appointments:
        raise ValueError(f"hot_day_appointments must be between 0 and appointments ({appointments})")
    days = (end - start).days
    if now is None:
        now = datetime.combine(max(start, end - timedelta(days=7)), time(), tzinfo=UTC)
    now_s = _epoch(now)
    prng = random.Random(f"{seed}/{account_index}/people")
    rng = np.random.default_rng([seed, account_index, 7])
    stride = account_index * _ACCOUNT_ID_STRIDE

    biz = _businesses(prng, account_index, businesses, start, now)
    biz_ids = np.array([int(b["id"]) for b in biz], dtype=np.int64)
    practitioners, users = _practitioners(stride, biz[0], max(2, min(8, businesses + 1)))
    prac_ids = np.array([int(p["id"]) for p in practitioners], dtype=np.int64)
    types = [
        {
            "id": str(_ID_BASE["appointment_types"] + stride + (k + 1) * 15_485_863),
            "name": type_name,
            "duration_in_minutes": minutes,
            "category": None,
            "color": "#3c8dbc",
            "max_attendees": max_attendees,
            "show_in_online_bookings": not archived,
            "telehealth_enabled": "Telehealth" in type_name,
            "archived_at": biz[0]["updated_at"] if archived else None,
            "created_at": biz[0]["created_at"],
            "updated_at": biz[0]["updated_at"],
        }
        for k, (type_name, minutes, max_attendees, archived) in enumerate(
            [(name, minutes, 1, False) for name, minutes in _APPOINTMENT_TYPES]
            + list(_MORE_APPOINTMENT_TYPES)
            + list(_CLASS_TYPES)
        )
    ]
    type_ids = np.array([int(t["id"]) for t in types], dtype=np.int64)
    durations = np.array([m for _, m in _APPOINTMENT_TYPES], dtype=np.int64)

    n = appointments
    n_patients = patients if patients is not None else max(5, n // 4)
    weights = rng.random(businesses) + 0.5
    b_idx = rng.choice(businesses, size=n, p=weights / weights.sum())
    day = rng.integers(0, days, n)
    if hot_day_appointments:
        b_idx[:hot_day_appointments] = 0
        day[:hot_day_appointments] = (hot_day - start).days
    minute = 7 * 60 + 15 * rng.integers(0, 52, n)
    t_idx = rng.integers(0, len(_APPOINTMENT_TYPES), n)
    duration = durations[t_idx]
    late = rng.random(n) < 0.01
    late[:1] = True  # rows are in random order here; forcing the first keeps small accounts covering the case
    minute[late] = 23 * 60 + 15 * rng.integers(0, 4, int(late.sum()))
    t_idx[late] = 3
    duration[late] = 90
    midnight_utc = _epoch(datetime.combine(start, time(), tzinfo=UTC))
    starts = midnight_utc + day * 86400 + minute * 60 - _utc_offsets(biz, start, days)[b_idx, day]
    ends = starts + duration * 60

    order = np.lexsort((starts, b_idx))
    b_idx, day, starts, ends, t_idx = b_idx[order], day[order], starts[order], ends[order], t_idx[order]
    regulars = max(1, n_patients // 10)
    p_idx = np.where(rng.random(n) < 0.4, rng.integers(0, regulars, n), rng.integers(0, n_patients, n))
    again = rng.random(n) < 0.04
    again[:1] = False
    again &= ~np.roll(again, 1)
    same_day = np.zeros(n, dtype=bool)
    same_day[1:] = (b_idx[1:] == b_idx[:-1]) & (day[1:] == day[:-1])
    again &= same_day
    p_idx[again] = p_idx[np.flatnonzero(again) - 1]

    lead = rng.integers(3600, 60 * 86400, n)
    created = np.minimum(starts - lead, now_s - rng.integers(60, 86400, n))
    roll = rng.random(n)
    roll[1:4] = (0.0, 0.09, 0.097)[: max(0, n - 1)]
    cancelled = roll < 0.08
    archived = (roll >= 0.08) & (roll < 0.095)
    deleted = (roll >= 0.095) & (roll < 0.10)
    span = np.maximum(np.minimum(starts, now_s) - created, 1)
    happened = (ends <= now_s) & ~cancelled
    after_end = np.minimum(ends + rng.integers(60, 30 * 86400, n), now_s)
    status_at = np.where(happened, after_end, created + (span * rng.random(n)).astype(np.int64))
    cancelled_at = np.where(cancelled, created + (span * rng.random(n)).astype(np.int64), NULL)
    archived_at = np.where(archived, status_at, NULL)
    deleted_at = np.where(deleted, status_at, NULL)
    did_not_arrive = happened & (rng.random(n) < 0.05)
    arrived = happened & ~did_not_arrive & (rng.random(n) < 0.8)
    marked = np.where(did_not_arrive | arrived, np.minimum(ends + rng.integers(0, 7200, n), now_s), created)
    updated = created.copy()
    for stamp in (cancelled_at, archived_at, deleted_at, marked):
        updated = np.maximum(updated, np.where(stamp == NULL, created, stamp))
    reasons = np.array(list(CANCELLATION_REASONS), dtype=np.int16)
    cancellation_reason = np.where(cancelled, reasons[rng.integers(0, len(reasons), n)], 0).astype(np.int16)
    notes = np.array(_CANCELLATION_NOTES, dtype=object)[rng.integers(0, len(_CANCELLATION_NOTES), n)]
    reminded = ~cancelled & (starts - 86400 <= now_s)

    appt_ids = _ids(rng, _ID_BASE["individual_appointments"] + stride, created)
    repeated_from = np.full(n, NULL, dtype=np.int64)
    follow_up = np.zeros(n, dtype=bool)
    follow_up[1:] = (rng.random(n - 1) < 0.03) & (b_idx[1:] == b_idx[:-1])
    repeated_from[follow_up] = appt_ids[np.flatnonzero(follow_up) - 1]

    first_created = np.full(n_patients, now_s, dtype=np.int64)
    np.minimum.at(first_created, p_idx, created)
    patient_created = first_created - rng.integers(0, 400 * 86400, n_patients)
    patient_ids = _ids(rng, _ID_BASE["patients"] + stride, patient_created)
    countries = [b["country_code"] for b in biz]
    home_country = np.full(n_patients, -1)
    home_country[p_idx] = b_idx
    people, deleted_people, names = _patients(
        prng, patient_ids, patient_created, home_country, countries, now_s
    )

    free = (t_idx == 2) & (np.random.default_rng([seed, account_index, 11]).random(n) < _FREE_CONSULT_SHARE)
    t_idx = np.where(free, len(_APPOINTMENT_TYPES), t_idx)  # index of _FREE_CONSULT in `types`

    table = AppointmentTable(
        id=appt_ids,
        business_id=biz_ids[b_idx],
        patient_id=patient_ids[p_idx],
        practitioner_id=prac_ids[rng.integers(0, len(prac_ids), n)],
        appointment_type_id=type_ids[t_idx],
        repeated_from_id=repeated_from,
        starts_at=starts,
        ends_at=ends,
        created_at=created,
        updated_at=np.minimum(updated, np.maximum(now_s, created)),
        cancelled_at=cancelled_at,
        archived_at=archived_at,
        deleted_at=deleted_at,
        cancellation_reason=cancellation_reason,
        cancellation_note=notes,
        did_not_arrive=did_not_arrive,
        patient_arrived=arrived,
        email_reminder_sent=reminded & (rng.random(n) < 0.7),
        sms_reminder_sent=reminded & (rng.random(n) < 0.6),
        patient_names=names,
    )
    classes, attendees = _classes(
        random.Random(f"{seed}/{account_index}/classes"),
        stride,
        biz,
        start,
        days,
        now_s,
        prac_ids,
        [t for t in types if t["max_attendees"] > 1 and t["archived_at"] is None],
        patient_ids,
        _same_day_patients(b_idx, day, p_idx, days),
        n,
        [(hot_day - start).days] * hot_day_classes if hot_day is not None else [],
    )
    return Account(
        name=name or f"Sandbox account {account_index + 1}",
        api_key=_api_key(random.Random(f"{seed}/{account_index}/key"), shard),
        shard=shard,
        businesses=biz,
        practitioners=practitioners,
        appointment_types=types,
        patients=people,
        deleted_patients=deleted_people,
        appointments=table,
        now=now,
        users=users,
        group_appointments=classes,
        attendees=attendees,
    )


def _same_day_patients(b_idx: np.ndarray, day: np.ndarray, p_idx: np.ndarray, days: int) -> dict[int, int]:
    """(business index * days + day) -> the patient index of one individual appointment there (the first)."""
    keys = b_idx.astype(np.int64) * days + day
    unique, first = np.unique(keys, return_index=True)
    return dict(zip(unique.tolist(), p_idx[first].tolist(), strict=True))


def _classes(
    rng: random.Random,
    stride: int,
    biz: list[dict],
    start: date,
    days: int,
    now_s: int,
    prac_ids: np.ndarray,
    class_types: list[dict],
    patient_ids: np.ndarray,
    same_day: dict[int, int],
    appointments: int,
    hot_days: list[int],
) -> tuple[list[dict], list[dict]]:
    """Group appointments and their attendees, from their own random stream (so no other value changes).

    Every day has a class at the first business and one at the second, plus one more class per
    `_EXTRA_CLASSES_PER_APPOINTMENTS` individual appointments anywhere, and one at the first business on each
    day of `hot_days`. A class has 5 to `max_attendees` of
    its type (12 or 20) attendees, distinct patients; half the classes count a patient who also has an
    individual appointment at that business that day. Of the classes 5 % are archived and 3 % deleted (with
    their attendees); of the attendees 8 % cancelled, 3 % archived, and of those of a class that is over, 10 %
    did not arrive (`arrived` false) and 5 % were never marked (`arrived` null). Records use `<name>_id`
    fields for related records, as the other generated records do.
    """
    slots = [(d, b) for d in range(days) for b in range(min(2, len(biz)))]
    extra = min(appointments // _EXTRA_CLASSES_PER_APPOINTMENTS, days * len(biz))
    slots += [(rng.randrange(days), rng.randrange(len(biz))) for _ in range(extra)]
    slots += [(d, 0) for d in hot_days]
    offsets = _utc_offsets(biz, start, days)
    midnight_utc = _epoch(datetime.combine(start, time(), tzinfo=UTC))
    classes: list[dict] = []
    attendees: list[dict] = []
    for d, b in slots:
        kind = rng.choice(class_types)
        starts = midnight_utc + d * 86400 + (6 * 60 + 60 * rng.randrange(14)) * 60 - int(offsets[b, d])
        ends = starts + kind["duration_in_minutes"] * 60
        created = min(starts - rng.randint(3600, 30 * 86400), now_s - rng.randint(60, 86400))
        fate = rng.random()
        archived = min(max(ends, created), now_s) if fate < 0.05 else None
        deleted = min(max(ends, created), now_s) if 0.05 <= fate < 0.08 else None
        over = ends <= now_s
        count = min(rng.randint(5, kind["max_attendees"]), len(patient_ids))
        chosen = rng.sample(range(len(patient_ids)), count)
        regular = same_day.get(b * days + d)
        if regular is not None and rng.random() < 0.5 and regular not in chosen:
            chosen[0] = regular
        class_id = len(classes)
        joined: list[int] = []
        for p in chosen:
            signed_up = rng.randint(created, max(created, min(starts, now_s)))
            roll = rng.random()
            cancelled = rng.randint(signed_up, max(signed_up, min(starts, now_s))) if roll < 0.08 else None
            archived_attendee = min(ends, now_s) if 0.08 <= roll < 0.11 else None
            arrived: bool | None = None
            if over and cancelled is None:
                mark = rng.random()
                arrived = False if mark < 0.10 else None if mark < 0.15 else True
            changed = max(x for x in (signed_up, cancelled, archived_attendee, deleted) if x is not None)
            if cancelled is None:
                joined.append(p)
            reason = rng.choice(list(CANCELLATION_REASONS)) if cancelled is not None else None
            attendees.append(
                {
                    "id": None,
                    "booking_id": class_id,
                    "patient_id": str(int(patient_ids[p])),
                    "arrived": arrived,
                    "cancelled_at": None if cancelled is None else format_timestamp(cancelled),
                    "cancellation_reason": reason,
                    "cancellation_reason_description": CANCELLATION_REASONS.get(reason, "") if reason else "",
                    "cancellation_note": rng.choice(_CANCELLATION_NOTES) if cancelled is not None else None,
                    "archived_at": None if archived_attendee is None else format_timestamp(archived_attendee),
                    "deleted_at": None if deleted is None else format_timestamp(deleted),
                    "email_reminder_sent": cancelled is None and starts - 86400 <= now_s,
                    "sms_reminder_sent": False,
                    "created_at": format_timestamp(signed_up),
                    "updated_at": format_timestamp(min(max(changed, signed_up), max(now_s, signed_up))),
                    "_created": signed_up,
                }
            )
        changed = max(x for x in (created, archived, deleted) if x is not None)
        classes.append(
            {
                "id": None,
                "business_id": biz[b]["id"],
                "practitioner_id": str(int(prac_ids[rng.randrange(len(prac_ids))])),
                "appointment_type_id": kind["id"],
                "repeated_from_id": None,
                "starts_at": format_timestamp(starts),
                "ends_at": format_timestamp(ends),
                "max_attendees": kind["max_attendees"],
                "notes": None,
                "patient_ids": [str(int(patient_ids[p])) for p in joined],
                "archived_at": None if archived is None else format_timestamp(archived),
                "deleted_at": None if deleted is None else format_timestamp(deleted),
                "created_at": format_timestamp(created),
                "updated_at": format_timestamp(min(changed, max(now_s, created))),
                "_created": created,
            }
        )
    _assign_ids(classes, _ID_BASE["group_appointments"] + stride, rng)
    _assign_ids(attendees, _ID_BASE["attendees"] + stride, rng)
    for attendee in attendees:
        attendee["booking_id"] = classes[attendee["booking_id"]]["id"]
    return sorted(classes, key=lambda r: int(r["id"])), sorted(attendees, key=lambda r: int(r["id"]))


def _assign_ids(records: list[dict], base: int, rng: random.Random) -> None:
    """Ascending ids in creation order, like Cliniko's (`_ids` for records kept as dicts)."""
    next_id = base
    for record in sorted(records, key=lambda r: r["_created"]):
        next_id += rng.randint(1, 5_000)
        record["id"] = str(next_id)
    for record in records:
        del record["_created"]


def _practitioners(stride: int, first_business: dict, count: int) -> tuple[list[dict], list[dict]]:
    """The account's first `count` practitioners and their Cliniko users, plus a receptionist user (see
    `_PRACTITIONER_EMAIL_DOMAIN` for who has which email and who is inactive)."""
    created, updated = first_business["created_at"], first_business["updated_at"]
    practitioners: list[dict] = []
    users: list[dict] = []
    people = [*_PRACTITIONER_NAMES[:count], _RECEPTIONIST]
    for k, (first, last) in enumerate(people):
        is_practitioner = k < count
        user_id = str(_ID_BASE["users"] + stride + (k + 1) * 7_919)
        ascii_name = f"{first}.{last}".lower().encode("ascii", "ignore").decode()
        email: str | None = f"{ascii_name}@{_PRACTITIONER_EMAIL_DOMAIN}"
        if is_practitioner and k % 4 == 1:
            email = None
        elif is_practitioner and k % 4 == 3:
            email = f"{ascii_name}.physiotherapy.team@{_PRACTITIONER_EMAIL_DOMAIN}"
        active = not (is_practitioner and k % 4 == 2)
        users.append(
            {
                "id": user_id,
                "title": None,
                "first_name": first,
                "last_name": last,
                "email": email,
                "role": "practitioner" if is_practitioner else "receptionist",
                "time_zone": first_business["time_zone"],
                "user_active": active,
                "created_at": created,
                "updated_at": updated,
            }
        )
        if is_practitioner:
            practitioners.append(
                {
                    "id": str(_ID_BASE["practitioners"] + stride + (k + 1) * 104_729),
                    "first_name": first,
                    "last_name": last,
                    "title": "Dr" if k % 3 == 0 else None,
                    "designation": "Physiotherapist",
                    "description": None,
                    "label": f"{first} {last}",
                    "display_name": f"{first} {last}",
                    "active": active,
                    "show_in_online_bookings": active,
                    "user_id": user_id,
                    "created_at": created,
                    "updated_at": updated,
                }
            )
    return practitioners, users


def _patients(
    rng: random.Random,
    ids: np.ndarray,
    created: np.ndarray,
    home_business: np.ndarray,
    countries: Sequence[str],
    now_s: int,
) -> tuple[list[dict], list[dict], dict[int, str]]:
    """Patients as Cliniko returns them, split into returned (incl. archived/merged) and deleted ones."""
    people: list[dict] = []
    deleted: list[dict] = []
    names: dict[int, str] = {}
    for k in range(len(ids)):
        pid = int(ids[k])
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        country = countries[home_business[k]] if home_business[k] >= 0 else rng.choice(countries)
        made = int(created[k])
        fate = (1.0, 0.01, 0.03, 0.06)[k] if k < 4 else rng.random()
        archived_at = merged_at = deleted_at = None
        merged_with = None
        if fate < 0.02 and k > 0:
            merged_at = archived_at = rng.randint(made, max(made, now_s))
            merged_with = str(int(ids[rng.randrange(k)]))
        elif fate < 0.05:
            archived_at = rng.randint(made, max(made, now_s))
        elif fate < 0.07:
            deleted_at = rng.randint(made, max(made, now_s))
        changed = max(x for x in (made, archived_at, deleted_at) if x is not None)
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(30_000))
        record = {
            "id": str(pid),
            "title": rng.choice([None, "Mr", "Ms", "Mrs", "Dr", "Mx"]),
            "first_name": first,
            "last_name": last,
            "preferred_first_name": rng.choice([None, None, None, first[:3]]),
            "label": f"{first} {last}",
            "email": _email(rng, first, last, k),
            "date_of_birth": None if rng.random() < 0.1 else born.isoformat(),
            "sex": rng.choice([None, "Female", "Male"]),
            "gender": None,
            "gender_identity": None,
            "pronouns": None,
            "patient_phone_numbers": _patient_phones(rng, country),
            "reminder_type": REMINDER_TYPES[k % 5] if k < 10 else rng.choice(REMINDER_TYPES),
            "receives_confirmation_emails": rng.random() < 0.8,
            "accepted_privacy_policy": rng.choice([None, True, False]),
            "accepted_email_marketing": rng.choice([None, True, False]),
            "accepted_sms_marketing": rng.choice([None, True, False]),
            "address_1": None,
            "address_2": None,
            "address_3": None,
            "city": None,
            "state": None,
            "post_code": None,
            "country": None,
            "country_code": country,
            "old_reference_id": None if rng.random() < 0.8 else f"LEGACY-{k:06d}",
            "referral_source": None,
            "notes": None,
            "occupation": None,
            "emergency_contact": None,
            "time_zone": None,
            "custom_fields": None,
            "archived_at": None if archived_at is None else format_timestamp(archived_at),
            "deleted_at": None if deleted_at is None else format_timestamp(deleted_at),
            "merged_at": None if merged_at is None else format_timestamp(merged_at),
            "merged_with_patient_id": merged_with,
            "created_at": format_timestamp(made),
            "updated_at": format_timestamp(min(changed, max(now_s, made))),
        }
        names[pid] = record["label"]
        (deleted if deleted_at is not None else people).append(record)
    return people, deleted, names


def generate_accounts(
    seed: int,
    count: int,
    *,
    businesses: int = 7,
    appointments: int = 1_000,
    start: date = date(2026, 1, 1),
    end: date = date(2026, 3, 1),
    now: datetime | None = None,
    shard: str = "au4",
) -> list[Account]:
    """Several independent accounts (several API keys) with distinct businesses and ids."""
    return [
        generate_account(
            seed,
            businesses=businesses,
            appointments=appointments,
            start=start,
            end=end,
            now=now,
            account_index=k,
            shard=shard,
        )
        for k in range(count)
    ]


def generate_preset(
    seed: int, size: str, *, today: date, now: datetime, shard: str = "au4", **overrides: int
) -> list[Account]:
    """The accounts behind `cliniko-reviews sandbox --size S`: history before `today`, some future after.

    `overrides` replace the size's `accounts`, `businesses` or `appointments` (a benchmark of many clinics
    needs many keys and locations, not a new size).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    preset = replace(SIZES[size], **overrides)
    return generate_accounts(
        seed,
        preset.accounts,
        businesses=preset.businesses,
        appointments=preset.appointments,
        start=today - timedelta(days=preset.days_back),
        end=today + timedelta(days=preset.days_forward),
        now=now,
        shard=shard,
    )
