"""The whole product as a user runs it: emulators and the admin API as processes, the manual's set-up over
HTTP, `cliniko-reviews run` for two days of three mappings, then the analysts' views and what Birdeye got."""

import json
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as day_start
from zoneinfo import ZoneInfo

import duckdb
import httpx
import pytest

from pipeline.demo import (
    BETA_LOCATION_NUMBER,
    DEMO_BIRDEYE_KEY,
    TEST_LOCATION_NUMBER,
    local_services,
    set_up_clinics,
)
from pipeline.registry.manual import ENTERPRISE_LOCATION_NUMBER, SMB_BUSINESS_NUMBER
from pipeline.sandbox.birdeye_emulator import read_records

MAPPINGS = (SMB_BUSINESS_NUMBER, ENTERPRISE_LOCATION_NUMBER, TEST_LOCATION_NUMBER)
RESTRICTION_COLUMNS = [
    "business_number",
    "group_id",
    "partition_date",
    "target_date",
    "appointment_id",
    "appointment_kind",
    "patient_id",
    "cliniko_business_id",
    "location_name",
    "appointment_ends_at",
    "is_eligible",
    "restriction_code",
    "restriction_reason",
    "is_test",
    "practitioner_id",
    "practitioner_name",
]
REQUEST_COLUMNS = [
    "business_number",
    "group_id",
    "partition_date",
    "target_date",
    "appointment_id",
    "appointment_kind",
    "patient_id",
    "channels",
    "status",
    "attempts",
    "error_code",
    "error_message",
    "birdeye_customer_id",
    "first_attempt_at",
    "sent_at",
    "practitioner_id",
    "practitioner_name",
    "employee_sent",
]


def cliniko_practitioners(base_url: str, accounts: list[dict], appointment_ids: set[str]) -> dict[str, dict]:
    """What the Cliniko emulator holds, read over plain HTTP: appointment id (or a class attendee's
    `attendee-<id>`) -> its practitioner's id, names, whether active, and its user's email (None for a visit
    without practitioner). A class attendee's practitioner is its class's."""
    headers = {"User-Agent": "e2e test (tests@example.com)"}
    out: dict[str, dict] = {}

    def get(http: httpx.Client, path: str, params: list[tuple[str, str]]) -> list[dict]:
        records, url, query = [], path, [*params, ("per_page", "100")]
        while url:
            response = http.get(url, params=query)
            if response.status_code == 429:  # the pipeline's runs spent this minute's budget
                time.sleep(max(1.0, float(response.headers["x-ratelimit-reset"]) - time.time()))
                continue
            response.raise_for_status()
            body = response.json()
            records += body[path.strip("/").split("/")[0]]
            url, query = body["links"].get("next"), None
        return records

    def last(link: dict | None) -> str | None:
        return link["links"]["self"].rsplit("/", 1)[-1] if link else None

    wanted = sorted(appointment_ids)
    for account in accounts:
        with httpx.Client(base_url=base_url, auth=(account["api_key"], ""), headers=headers) as http:
            users = {u["id"]: u for u in get(http, "/users", [])}
            practitioners = {
                p["id"]: p
                for path in ("/practitioners", "/practitioners/inactive")
                for p in get(http, path, [])
            }

            def named(practitioner_id: str | None, practitioners=practitioners, users=users) -> dict:
                practitioner = practitioners.get(practitioner_id or "")
                user = users[last(practitioner["user"])] if practitioner else None
                return {
                    "id": practitioner and practitioner["id"],
                    "first_name": practitioner and practitioner["first_name"],
                    "last_name": practitioner and practitioner["last_name"],
                    "active": practitioner and practitioner["active"],
                    "email": user and user["email"],
                }

            hidden_too = [("q[]", "archived_at:*"), ("q[]", "cancelled_at:*")]
            appointments = [i for i in wanted if not i.startswith("attendee-")]
            attendees = [i.removeprefix("attendee-") for i in wanted if i.startswith("attendee-")]
            for start in range(0, len(appointments), 100):
                ids = ",".join(appointments[start : start + 100])
                for appointment in get(
                    http, "/individual_appointments", [("q[]", f"id:={ids}"), *hidden_too]
                ):
                    out[appointment["id"]] = named(last(appointment["practitioner"]))
            class_of: dict[str, str] = {}
            for start in range(0, len(attendees), 100):
                ids = ",".join(attendees[start : start + 100])
                for attendee in get(http, "/attendees", [("q[]", f"id:={ids}"), *hidden_too]):
                    class_of[attendee["id"]] = last(attendee["booking"])
            classes = sorted(set(class_of.values()))
            practitioner_of: dict[str, str | None] = {}
            for start in range(0, len(classes), 100):
                ids = ",".join(classes[start : start + 100])
                for group in get(
                    http, "/group_appointments", [("q[]", f"id:={ids}"), ("q[]", "archived_at:*")]
                ):
                    practitioner_of[group["id"]] = last(group["practitioner"])
            for attendee_id, class_id in class_of.items():
                out[f"attendee-{attendee_id}"] = named(practitioner_of.get(class_id))
    return out


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("e2e")
    record = data_dir / "birdeye_checkins.jsonl"
    first = date.today() - timedelta(days=3)
    days = ["--date", first.isoformat(), "--date-to", (first + timedelta(days=1)).isoformat()]
    mappings = [arg for number in MAPPINGS for arg in ("--mapping", number)]
    with local_services(data_dir, birdeye_record=record) as (env, admin_url, accounts):
        env = {**env, "DAGSTER_HOME": str(data_dir / "dagster_home")}
        mapped = set_up_clinics(admin_url, accounts)
        classes = cliniko_classes(
            env["CLINIKO_BASE_URL"], accounts, mapped, [first, first + timedelta(days=1)]
        )
        run = run_cli(env, "run", *days, *mappings)
        received_after_first_run = read_records(record)
        rerun = run_cli(env, "run", *days, *mappings)
        received = read_records(record)
        candidates = analytics({"data_dir": data_dir}, "select appointment_id from restriction_reasons")
        practitioners = cliniko_practitioners(
            env["CLINIKO_BASE_URL"], accounts, {appointment for (appointment,) in candidates}
        )
    return {
        "practitioners": practitioners,
        "data_dir": data_dir,
        "run": run,
        "rerun": rerun,
        "first_received": received_after_first_run,
        "received": received,
        "dates": {first, first + timedelta(days=1)},
        "classes": classes,
    }


def cliniko_classes(base_url: str, accounts: list[dict], mapped: list[dict], dates: list[date]) -> dict:
    """What the Cliniko emulator itself serves, asked over HTTP before the run: per (mapping, partition date),
    attendee id -> `arrived` of every attendee who is a candidate by the rules (not cancelled, not archived,
    of a class not archived that ended on the target day at a mapped business), and how many attendees of
    those classes the rules leave out. The class tests' expectations come from here, not the pipeline."""
    headers = {"User-Agent": "cliniko-reviews e2e (tests@example.com)"}
    out: dict = {}
    for mapping in mapped:
        number = str(mapping["businessNumber"])
        if number not in MAPPINGS:
            continue
        props = {p["propertyKey"]: p["propertyValue"] for p in mapping["effectiveProperties"]}
        names = {n.strip().lower() for n in props["cliniko.location.name"].split(",")}
        account = next(a for a in accounts if names <= {b.lower() for b in a["businesses"]})
        delay = int(props.get("customer.fetch.delay", "0"))
        with httpx.Client(base_url=base_url, auth=(account["api_key"], ""), headers=headers) as cliniko:
            businesses = cliniko.get("/businesses", params={"per_page": 100}).json()["businesses"]
            for day in dates:
                visits, left_out = {}, 0
                for business in businesses:
                    if business["business_name"].strip().lower() not in names:
                        continue
                    zone = ZoneInfo(business["time_zone_identifier"] or "UTC")
                    target = day - timedelta(days=delay)
                    since = datetime.combine(target, day_start(), tzinfo=zone).astimezone(ZoneInfo("UTC"))
                    until = datetime.combine(target + timedelta(days=1), day_start(), tzinfo=zone).astimezone(
                        ZoneInfo("UTC")
                    )
                    stamp = "%Y-%m-%dT%H:%M:%SZ"
                    listed = cliniko.get(
                        "/group_appointments",
                        params=[
                            ("q[]", f"business_id:={business['id']}"),
                            ("q[]", f"ends_at:>={since.strftime(stamp)}"),
                            ("q[]", f"ends_at:<{until.strftime(stamp)}"),
                            ("q[]", "archived_at:*"),
                            ("per_page", 100),
                        ],
                    ).json()["group_appointments"]
                    for group in listed:
                        attendees = cliniko.get(
                            "/attendees",
                            params=[
                                ("q[]", f"booking_id:={group['id']}"),
                                ("q[]", "archived_at:*"),
                                ("q[]", "cancelled_at:*"),
                                ("per_page", 100),
                            ],
                        ).json()["attendees"]
                        for a in attendees:
                            if group["archived_at"] or a["archived_at"] or a["cancelled_at"]:
                                left_out += 1
                            else:
                                visits[f"attendee-{a['id']}"] = a["arrived"]
                out[(number, day)] = {"visits": visits, "left_out": left_out}
    return out


def analytics(outcome, sql: str) -> list[tuple]:
    con = duckdb.connect(str(outcome["data_dir"] / "analytics.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_run_succeeds_and_prints_a_summary_per_mapping(outcome):
    run = outcome["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 of 6 partition(s) succeeded" in run.stdout
    for number in MAPPINGS:
        assert number in run.stdout
    assert BETA_LOCATION_NUMBER not in run.stdout  # not asked for


def test_analysts_views_have_the_spec_columns_and_no_contact_details(outcome):
    columns = analytics(
        outcome,
        "select column_name from information_schema.columns "
        "where table_name = 'restriction_reasons' order by ordinal_position",
    )
    assert [c for (c,) in columns] == RESTRICTION_COLUMNS
    columns = analytics(
        outcome,
        "select column_name from information_schema.columns "
        "where table_name = 'review_requests' order by ordinal_position",
    )
    assert [c for (c,) in columns] == REQUEST_COLUMNS
    rows = analytics(
        outcome,
        "select business_number, partition_date, count(*) from restriction_reasons group by all order by all",
    )
    assert {(bn, d) for bn, d, _ in rows} == {(bn, d) for bn in MAPPINGS for d in outcome["dates"]}


def test_coverage_shows_every_partition_run_closed_and_the_summary_says_so(outcome):
    # The partitions are days 3 and 2 before today: every clinic's day is over, so each run closed its own.
    con = duckdb.connect(str(outcome["data_dir"] / "analytics.duckdb"), read_only=True)
    try:
        states = con.execute(
            "select business_number, partition_date, state, runs from coverage "
            "where list_contains($numbers, business_number) and list_contains($dates, partition_date)",
            {"numbers": list(MAPPINGS), "dates": sorted(outcome["dates"])},
        ).fetchall()
    finally:
        con.close()
    assert {(bn, d, state) for bn, d, state, _ in states} == {
        (bn, d, "closed") for bn in MAPPINGS for d in outcome["dates"]
    }
    assert {runs for *_, runs in states} == {2}  # the run and the re-run
    assert outcome["run"].stdout.count("coverage:   2 closed") == len(MAPPINGS)


def test_every_eligible_request_reached_birdeye_exactly_once_and_test_mappings_never(outcome):
    eligible = analytics(
        outcome, "select business_number, appointment_id from restriction_reasons where is_eligible"
    )
    ledger = dict(
        ((bn, appointment), status)
        for bn, appointment, status in analytics(
            outcome, "select business_number, appointment_id, status from review_requests"
        )
    )
    assert set(ledger) == set(eligible)
    for (bn, _), status in ledger.items():
        assert status == ("dry_run" if bn == TEST_LOCATION_NUMBER else "sent")

    delivered = [(r.bid, r.appointment_id) for r in outcome["first_received"] if r.delivered]
    assert Counter(delivered).most_common(1)[0][1] == 1  # nothing posted twice
    sent = {key for key, status in ledger.items() if status == "sent"}
    assert set(delivered) == sent
    assert sent and not any(bn == TEST_LOCATION_NUMBER for bn, _ in delivered)
    assert all(r.body["externalId"].startswith("cliniko-patient-") for r in outcome["first_received"])


def test_rerunning_the_same_partitions_posts_nothing_again(outcome):
    assert outcome["rerun"].returncode == 0, outcome["rerun"].stdout + outcome["rerun"].stderr
    assert len(outcome["received"]) == len(outcome["first_received"])


def test_no_api_key_in_the_databases_or_the_output(outcome):
    manifest = (outcome["data_dir"] / "sandbox.json").read_text()
    keys = [a["api_key"] for a in json.loads(manifest)["cliniko_accounts"]] + [DEMO_BIRDEYE_KEY]
    blobs = [outcome["run"].stdout, outcome["run"].stderr]
    warehouses = list((outcome["data_dir"] / "warehouse").glob("*.duckdb"))
    assert warehouses
    alerts = [p for p in [outcome["data_dir"] / "alerts.duckdb"] if p.exists()]  # made by the first alert
    for name in ["analytics.duckdb", "registry.sqlite3", *warehouses, *alerts]:
        blobs.append((outcome["data_dir"] / name).read_bytes().decode("latin-1"))
    for path in (outcome["data_dir"] / "dagster_home").rglob("*"):
        if path.is_file():
            blobs.append(path.read_bytes().decode("latin-1"))
    for key in keys:
        assert not any(key in blob for blob in blobs), "an API key leaked"


def birdeye_can_take(email: str | None) -> bool:
    """Birdeye's check of an email (reference §2.4: well formed, 1087; at most 40 characters, 1088)."""
    return (
        email is not None
        and len(email) <= 40
        and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) is not None
    )


def test_each_request_names_its_cliniko_practitioner_as_employee_when_it_has_an_email(outcome):
    practitioners = outcome["practitioners"]
    delivered = [r for r in outcome["first_received"] if r.delivered]
    with_employee = 0
    for record in delivered:
        practitioner = practitioners[record.appointment_id]
        if birdeye_can_take(practitioner["email"]):
            expected = [
                {
                    "emailId": practitioner["email"],
                    "firstName": practitioner["first_name"],
                    "lastName": practitioner["last_name"],
                }
            ]
            assert record.employees == expected, record.appointment_id
            with_employee += 1
        else:
            assert "employees" not in record.body, record.appointment_id
    # The demo's practitioners include ones with an email, without one, with one over 40 characters and
    # inactive ones: each kind reached Birdeye (or was left out) on these two days.
    kinds = {
        (birdeye_can_take(p["email"]), p["email"] is None, p["active"])
        for p in (practitioners[r.appointment_id] for r in delivered)
    }
    assert {(True, False, True), (False, True, True), (False, False, True), (True, False, False)} <= kinds
    assert 0 < with_employee < len(delivered)


def test_analysts_see_each_visits_practitioner_and_the_summary_counts_them(outcome):
    practitioners = outcome["practitioners"]
    reasons = analytics(
        outcome, "select appointment_id, practitioner_id, practitioner_name from restriction_reasons"
    )
    assert reasons
    for appointment, practitioner_id, name in reasons:
        expected = practitioners[appointment]
        assert practitioner_id == expected["id"]
        assert name == f"{expected['first_name']} {expected['last_name']}"
    requests = analytics(
        outcome,
        "select business_number, appointment_id, practitioner_name, employee_sent from review_requests",
    )
    per_mapping = Counter()
    for business_number, appointment, name, employee_sent in requests:
        expected = practitioners[appointment]
        assert name == f"{expected['first_name']} {expected['last_name']}"
        assert employee_sent == birdeye_can_take(expected["email"])
        per_mapping[business_number] += employee_sent
    lines = [line.split() for line in outcome["run"].stdout.splitlines() if "employees:" in line]
    assert len(lines) == len(MAPPINGS)
    assert sorted(int(words[1]) for words in lines) == sorted(per_mapping[number] for number in MAPPINGS)


def test_class_attendees_are_visits_with_one_outcome_each_by_the_rules(outcome):
    classes = outcome["classes"]
    assert sum(len(c["visits"]) for c in classes.values()) >= 20, "the demo data must hold classes"
    assert sum(c["left_out"] for c in classes.values()) > 0  # some cancelled or archived
    rows = analytics(
        outcome,
        "select business_number, partition_date, appointment_id, restriction_code, is_eligible "
        "from restriction_reasons where appointment_kind = 'group'",
    )
    got: dict = {}
    for bn, day, appointment, code, _ in rows:
        got.setdefault((bn, day), {})[appointment] = code
    before_did_not_arrive = {"integration_beta", "customer_inactive", "invalid_record", "did_not_arrive"}
    for key, expected in classes.items():
        assert set(got.get(key, {})) == set(expected["visits"]), key
        for appointment, arrived in expected["visits"].items():
            code = got[key][appointment]
            # arrived = false is did_not_arrive, unless a code of higher precedence applies first.
            assert code in before_did_not_arrive if arrived is False else code != "did_not_arrive", (
                appointment
            )
    assert any(code == "did_not_arrive" for codes in got.values() for code in codes.values())
    assert any(code is None for codes in got.values() for code in codes.values())
    assert not analytics(
        outcome,
        "select appointment_id from restriction_reasons where (appointment_kind = 'group') "
        "<> starts_with(appointment_id, 'attendee-')",
    )


def test_class_attendees_are_asked_once_per_patient_and_birdeye_gets_the_attendee_visit(outcome):
    eligible = analytics(
        outcome,
        "select business_number, partition_date, patient_id, list(appointment_kind) from restriction_reasons "
        "where is_eligible group by all",
    )
    assert all(len(kinds) == 1 for *_, kinds in eligible)  # one request per patient per partition
    sent = {
        appointment
        for (appointment,) in analytics(
            outcome,
            "select appointment_id from review_requests where appointment_kind = 'group' and status = 'sent'",
        )
    }
    assert sent, "some class attendees are asked"
    delivered = {r.appointment_id for r in outcome["first_received"] if r.delivered}
    assert sent <= delivered
    body = next(r.body for r in outcome["first_received"] if r.appointment_id in sent)
    assert body["additionalParams"]["appointmentId"].startswith("attendee-")
    visits, eligible_visits = analytics(
        outcome,
        "select count(*), count(*) filter (where is_eligible) from restriction_reasons "
        "where appointment_kind = 'group' and business_number = '" + SMB_BUSINESS_NUMBER + "'",
    )[0]
    assert f"classes:    {visits} attendee visits, {eligible_visits} eligible;" in outcome["run"].stdout
