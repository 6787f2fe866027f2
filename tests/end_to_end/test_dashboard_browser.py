"""The integration dashboard driven in a real headless Chromium against a real admin server.

Each test types into the page's labelled inputs and clicks its buttons as an operator would, then checks the
registry through the admin API. Chromium is Debian's package (`make test` installs it); Playwright drives it
with `executable_path`, so no browser is ever downloaded.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from pipeline.registry.api import create_app
from pipeline.registry.manual import ENTERPRISE_LOCATION_NUMBER, SMB_BUSINESS_NUMBER, replay_manual
from pipeline.sandbox.browser import CHROMIUM, launch_chromium
from pipeline.settings import load_settings

SMB_KEY = "MS0xMTExMTExMTExMTExMTExMTEtc21iLWtleS1mb3ItdGhlLWRhc2hib2FyZA-au3"
ENTERPRISE_KEY = "MS0yMjIyMjIyMjIyMjIyMjIyMjItZW50ZXJwcmlzZS1rZXk-uk2"
OVERRIDE_KEY = "MS0zMzMzMzMzMzMzMzMzMzMzMzMtb3ZlcnJpZGUta2V5-uk2"
BIRDEYE_KEY = "be-live-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """uvicorn in a thread on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "admin server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests need Debian's chromium package. Run `make test` "
            "(it installs it) or `apt-get install -y chromium`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None = None) -> FastAPI:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_SECRET_KEY", Fernet.generate_key().decode())
    if token:
        monkeypatch.setenv("ADMIN_TOKEN", token)
    else:
        monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    return create_app(load_settings())


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    return _app(tmp_path, monkeypatch)


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with serving(app) as url:
        yield url


@contextmanager
def dashboard(browser: Browser, url: str, width: int = 1280) -> Iterator[Page]:
    """A fresh tab on the dashboard; fails the test if the page asks any other origin for anything."""
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=url)
    page = context.new_page()
    foreign: list[str] = []
    errors: list[str] = []
    page.on(
        "request", lambda request: foreign.append(request.url) if not request.url.startswith(url) else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")
    try:
        yield page
    finally:
        context.close()
    assert foreign == [], f"the page reached outside its origin: {foreign}"
    assert errors == [], f"JavaScript errors: {errors}"


def _api(url: str, path: str) -> dict:
    reply = httpx.get(url + path, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _wizard_to_properties(page: Page) -> None:
    page.get_by_role("button", name="Add Integration").click()
    page.get_by_label("CRM name").fill("clin")
    page.get_by_role("radio", name=re.compile("^Cliniko")).check()
    page.get_by_role("button", name="Next").click()
    trigger = page.get_by_label(re.compile("Cliniko Appointment Trigger"))
    expect(trigger).to_be_checked()
    expect(trigger).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Manage properties")).to_be_focused()


def _fill_location(page: Page, location: dict[str, str]) -> None:
    drawer = page.get_by_role("dialog")
    expect(drawer).to_be_visible()
    for label, value in location.items():
        field = drawer.get_by_label(label, exact=True)
        if label in ("Unit", "Status"):
            field.select_option(value)
        elif label in ("Test (dry run, never sends)", "Beta"):
            field.set_checked(value == "yes")
        else:
            field.fill(value)


def _add_location(page: Page, location: dict[str, str]) -> None:
    page.get_by_role("button", name="Add location").click()
    _fill_location(page, location)
    page.get_by_role("dialog").get_by_role("button", name="Add").click()
    expect(page.get_by_role("dialog")).to_be_hidden()


def _save(page: Page) -> None:
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Review and save")).to_be_visible()
    page.get_by_role("button", name=re.compile("^Save")).click()


def _set_up_smb(page: Page, business_number: str, names: str) -> None:
    _wizard_to_properties(page)
    page.get_by_label("Business ID", exact=True).fill(business_number)
    page.locator("#wizard-view").get_by_label("Cliniko API key", exact=True).fill(SMB_KEY)
    page.locator("#wizard-view").get_by_label("Birdeye API key", exact=True).fill(BIRDEYE_KEY)
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Add location").click()
    expect(page.get_by_label("Business ID (Birdeye location)")).to_have_value(business_number)
    _fill_location(page, {"Location names": names})
    page.get_by_role("dialog").get_by_role("button", name="Add").click()
    expect(page.get_by_role("button", name="Add location")).to_be_disabled()
    _save(page)


def _start_enterprise(page: Page, parent: str, locations: list[dict[str, str]]) -> None:
    _wizard_to_properties(page)
    page.get_by_label("Enterprise (multi-location)").check()
    page.get_by_label("Enterprise ID").fill(parent)
    page.locator("#wizard-view").get_by_label("Cliniko API key", exact=True).fill(ENTERPRISE_KEY)
    page.locator("#wizard-view").get_by_label("Customer fetch delay (days)").fill("2")
    page.get_by_role("button", name="Next").click()
    for location in locations:
        _add_location(page, location)


def test_smb_and_enterprise_integrations_set_up_through_the_page(browser: Browser, base_url: str) -> None:
    with dashboard(browser, base_url) as page:
        expect(page.locator("#list-summary")).to_have_text("0 groups, 0 locations (0 active).")

        _set_up_smb(page, "159894373919788", "New York")
        expect(page.get_by_role("status")).to_contain_text("saved with location 159894373919788")

        _start_enterprise(
            page,
            "500000000000001",
            [
                {
                    "Business ID (Birdeye location)": "500000000000011",
                    "Location names": " Sydney CBD ,Bondi",
                    "Every": "12",
                    "Unit": "hours",
                    "Next run time (UTC)": "2031-03-04T07:30",
                    "Customer fetch delay (days)": "5",
                },
                {
                    "Business ID (Birdeye location)": "500000000000012",
                    "Location names": "Parramatta",
                    "Cliniko API key": OVERRIDE_KEY,
                    "Test (dry run, never sends)": "yes",
                },
            ],
        )
        _save(page)
        expect(page.get_by_role("status")).to_contain_text("with locations 500000000000011, 500000000000012")

        # The list shows what the issue asks for, per mapping.
        sydney = page.locator("tr[data-business-number='500000000000011']")
        expect(sydney).to_contain_text("Sydney CBD, Bondi")
        expect(sydney).to_contain_text("every 12 hours")
        expect(sydney).to_contain_text("2031-03-04 07:30 UTC")
        expect(sydney.locator(".delay-cell")).to_have_text("5 days override")
        expect(sydney.locator(".keys")).to_have_text("cliniko ****-uk2 group")
        parramatta = page.locator("tr[data-business-number='500000000000012']")
        expect(parramatta.locator(".delay-cell")).to_have_text("2 days group")
        expect(parramatta.locator(".keys")).to_have_text("cliniko ****-uk2 override")
        expect(parramatta.locator(".status-cell")).to_have_text("active test")
        expect(page.locator("[data-group-id] .triggers").first).to_have_text(
            "Cliniko Appointment Trigger (129, JOB)"
        )

        page.get_by_label("Filter by business number").fill("50000000000001")
        expect(page.locator("tr[data-business-number]")).to_have_count(2)
        expect(page.locator("#list-summary")).to_contain_text("1 of 2 groups and 2 of 3 locations")

    groups = {g["parentBusinessNumber"]: g for g in _api(base_url, "/admin/groups")["groups"]}
    assert set(groups) == {"159894373919788", "500000000000001"}
    smb, enterprise = groups["159894373919788"], groups["500000000000001"]
    assert smb["integrationGroupProperties"] == [
        {"propertyKey": "cliniko.api.key", "propertyValue": "****-au3", "isSecure": True},
        {"propertyKey": "birdeye.api.key", "propertyValue": "****e8f9", "isSecure": True},
        {"propertyKey": "customer.fetch.delay", "propertyValue": "0", "isSecure": False},
    ]
    assert smb["integrationGroupTriggers"] == [{"triggerId": 129, "triggerTypeId": 1, "actionIds": [1]}]
    assert enterprise["mappedBusinessNumbers"] == ["500000000000011", "500000000000012"]

    sydney = _api(base_url, "/admin/mappings/500000000000011")
    assert (sydney["frequency"], sydney["nextRunTime"]) == (
        {"value": 12, "unit": "hours"},
        "2031-03-04T07:30:00Z",
    )
    assert sydney["integrationProperties"] == [
        {"propertyKey": "customer.fetch.delay", "propertyValue": "5", "isSecure": False},
        {"propertyKey": "cliniko.location.name", "propertyValue": "Sydney CBD, Bondi", "isSecure": False},
    ]
    parramatta = _api(base_url, "/admin/mappings/500000000000012")
    assert (parramatta["active"], parramatta["test"], parramatta["beta"]) == (True, True, False)
    assert parramatta["frequency"] == {"value": 1, "unit": "days"}
    assert parramatta["nextRunTime"].endswith("T06:00:00Z")
    assert {p["propertyKey"]: p["level"] for p in parramatta["effectiveProperties"]} == {
        "cliniko.api.key": "mapping",
        "customer.fetch.delay": "group",
        "cliniko.location.name": "mapping",
    }
    smb_mapping = _api(base_url, "/admin/mappings/159894373919788")
    assert smb_mapping["integrationGroupId"] == smb["groupId"]
    assert smb_mapping["integrationProperties"] == [
        {"propertyKey": "cliniko.location.name", "propertyValue": "New York", "isSecure": False}
    ]


def test_edit_shows_errors_next_to_their_fields_then_saves_and_deactivates(
    browser: Browser, base_url: str, app: FastAPI
) -> None:
    replay_manual(base_url)
    with dashboard(browser, base_url) as page:
        edit = page.get_by_role("button", name=f"Edit {SMB_BUSINESS_NUMBER}")
        edit.focus()
        page.keyboard.press("Enter")
        drawer = page.get_by_role("dialog", name=f"Edit location {SMB_BUSINESS_NUMBER}")
        expect(drawer).to_be_visible()
        expect(drawer.get_by_label("Status")).to_be_focused()
        page.keyboard.press("Escape")
        expect(drawer).to_be_hidden()
        expect(edit).to_be_focused()

        edit.click()
        delay = drawer.get_by_label("Customer fetch delay (days)")
        expect(delay).to_have_value("0")
        delay.fill("400")
        drawer.get_by_label("Every").fill("6")
        drawer.get_by_label("Unit").select_option("hours")
        drawer.get_by_label("Test (dry run, never sends)").check()
        before = app.state.registry.snapshot()
        drawer.get_by_role("button", name="Save").click()
        # Checked in the page: the message sits in the fetch delay's own field, and nothing was sent.
        field = page.locator(".field", has=page.locator("#loc-fetch-delay"))
        expect(field.locator(".field-error")).to_have_text("must be a whole number from 0 to 365")
        expect(delay).to_have_attribute("aria-invalid", "true")
        expect(delay).to_be_focused()
        assert app.state.registry.snapshot() == before

        # Refused by the server: the request is altered on its way, so the API's own error and field path
        # (`frequency.value`) come back, and the page puts them next to the frequency input.
        def zero_frequency(route: Route) -> None:
            body = json.loads(route.request.post_data or "{}")
            body["frequency"]["value"] = 0
            route.continue_(post_data=json.dumps(body))

        page.route(f"**/admin/mappings/{SMB_BUSINESS_NUMBER}", zero_frequency)
        delay.fill("3")
        drawer.get_by_role("button", name="Save").click()
        every = page.locator(".field", has=page.locator("#loc-frequency-value"))
        expect(every.locator(".field-error")).to_have_text("must be an integer from 1 to 8760 (hours)")
        expect(delay).not_to_have_attribute("aria-invalid", "true")
        assert app.state.registry.snapshot() == before
        page.unroute(f"**/admin/mappings/{SMB_BUSINESS_NUMBER}")

        drawer.get_by_role("button", name="Save").click()
        expect(drawer).to_be_hidden()
        expect(page.get_by_role("status")).to_have_text(f"Location {SMB_BUSINESS_NUMBER} saved.")
        row = page.locator(f"tr[data-business-number='{SMB_BUSINESS_NUMBER}']")
        expect(row.locator(".delay-cell")).to_have_text("3 days override")

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Deactivate {ENTERPRISE_LOCATION_NUMBER}").click()
        expect(page.get_by_role("status")).to_have_text(f"Location {ENTERPRISE_LOCATION_NUMBER} deactivated.")
        other = page.locator(f"tr[data-business-number='{ENTERPRISE_LOCATION_NUMBER}']")
        expect(other.locator(".status-cell")).to_have_text("inactive")
        expect(other.get_by_role("button", name="Deactivate")).to_have_count(0)

    edited = _api(base_url, f"/admin/mappings/{SMB_BUSINESS_NUMBER}")
    assert (edited["active"], edited["test"], edited["frequency"]) == (
        True,
        True,
        {"value": 6, "unit": "hours"},
    )
    assert {p["propertyKey"]: p["propertyValue"] for p in edited["integrationProperties"]} == {
        "customer.fetch.delay": "3",
        "cliniko.location.name": "New York",
    }
    assert _api(base_url, f"/admin/mappings/{ENTERPRISE_LOCATION_NUMBER}")["active"] is False


def test_a_refused_location_is_reported_and_retried_without_saving_twice(
    browser: Browser, base_url: str, app: FastAPI
) -> None:
    replay_manual(base_url)
    with dashboard(browser, base_url) as page:
        # Checked before any write: a location that is already mapped stops the whole set-up.
        _start_enterprise(
            page,
            "600000000000001",
            [
                {"Business ID (Birdeye location)": "600000000000011", "Location names": "Carlton"},
                {
                    "Business ID (Birdeye location)": ENTERPRISE_LOCATION_NUMBER,
                    "Location names": "Fitzroy",
                    "Customer fetch delay (days)": "4",
                },
            ],
        )
        before = app.state.registry.snapshot()
        _save(page)
        expect(page.locator("#wizard-banner")).to_have_text(
            "Nothing was saved: some locations are already mapped."
        )
        taken = page.locator(f"#pending-locations li[data-business-number='{ENTERPRISE_LOCATION_NUMBER}']")
        expect(taken).to_contain_text("is already mapped in integration group 22253")
        assert app.state.registry.snapshot() == before

        taken.get_by_role("button", name="Edit").click()
        drawer = page.get_by_role("dialog")
        number_field = page.locator(".field", has=page.locator("#loc-business-number"))
        expect(number_field.locator(".field-error")).to_contain_text("already mapped")
        drawer.get_by_label("Business ID (Birdeye location)").fill("600000000000012")
        drawer.get_by_role("button", name="Update").click()
        expect(drawer).to_be_hidden()

        # A refusal the page could not foresee (the request is altered on its way): the group and the first
        # location are saved, the second is not, and the page says so.
        def bad_delay(route: Route) -> None:
            body = json.loads(route.request.post_data or "{}")
            for prop in body["integrationProperties"]:
                if (
                    body["businessNumber"] == "600000000000012"
                    and prop["propertyKey"] == "customer.fetch.delay"
                ):
                    prop["propertyValue"] = "999"
            route.continue_(post_data=json.dumps(body))

        page.route("**/integration/add/businessintegrationmapping", bad_delay)
        _save(page)
        banner = page.locator("#wizard-banner")
        expect(banner).to_contain_text("Saved in part.")
        expect(banner).to_contain_text("and location 600000000000011.")
        expect(banner).to_contain_text("Not saved: 600000000000012.")
        failed = page.locator("#pending-locations li[data-business-number='600000000000012']")
        expect(failed).to_contain_text(
            "Customer fetch delay (days): must be an integer from 0 to 365, got 999"
        )
        expect(page.locator("#pending-locations li.saved")).to_have_attribute(
            "data-business-number", "600000000000011"
        )
        group_id = _api(base_url, "/integration/businessintegrationgroup/600000000000001")["groupId"]
        assert _api(base_url, f"/admin/mappings?groupId={group_id}")["mappings"][0]["businessNumber"] == (
            "600000000000011"
        )
        assert len(_api(base_url, f"/admin/mappings?groupId={group_id}")["mappings"]) == 1

        page.unroute("**/integration/add/businessintegrationmapping")
        failed.get_by_role("button", name="Edit").click()
        delay_field = page.locator(".field", has=page.locator("#loc-fetch-delay"))
        expect(delay_field.locator(".field-error")).to_contain_text("got 999")
        page.get_by_role("dialog").get_by_role("button", name="Update").click()
        _save(page)
        expect(page.get_by_role("status")).to_contain_text(
            f"Integration group {group_id} saved with locations 600000000000011, 600000000000012"
        )

    mappings = _api(base_url, f"/admin/mappings?groupId={group_id}")["mappings"]
    assert [m["businessNumber"] for m in mappings] == ["600000000000011", "600000000000012"]
    assert len(_api(base_url, "/admin/groups")["groups"]) == 2


def test_triggers_are_added_or_replaced_from_the_list(browser: Browser, base_url: str) -> None:
    replay_manual(base_url)
    with dashboard(browser, base_url) as page:
        page.get_by_role("button", name="Triggers of group 22253").click()
        drawer = page.get_by_role("dialog", name="Triggers of group 22253")
        box = drawer.get_by_label(re.compile("Cliniko Appointment Trigger"))
        box.uncheck()
        drawer.get_by_role("button", name="Save triggers").click()
        choices = page.locator("#trigger-drawer-choices")
        expect(choices.locator(".field-error")).to_have_text("choose at least one trigger")
        box.check()
        drawer.get_by_label("Replace the group's triggers").check()
        drawer.get_by_role("button", name="Save triggers").click()
        expect(page.get_by_role("status")).to_have_text("Triggers of group 22253 replaced.")
        expect(page.get_by_role("button", name="Triggers of group 22253")).to_be_focused()
    group = _api(base_url, "/admin/groups/22253")
    assert group["integrationGroupTriggers"] == [{"triggerId": 129, "triggerTypeId": 1, "actionIds": [1]}]


def test_the_drawer_shows_the_change_just_made_in_the_locations_history(
    browser: Browser, base_url: str
) -> None:
    replay_manual(base_url)
    with dashboard(browser, base_url) as page:
        edit = page.get_by_role("button", name=f"Edit {SMB_BUSINESS_NUMBER}")
        edit.click()
        drawer = page.get_by_role("dialog", name=f"Edit location {SMB_BUSINESS_NUMBER}")
        history = drawer.locator("#loc-history-list > li")
        # The mapping's creation, and its group's: an SMB's location is the group's parent business.
        expect(history).to_have_count(2)
        expect(history.last).to_contain_text(
            "created group 22253 (PUT /integration/add/businessintegrationgroup)"
        )
        expect(history.last).to_contain_text("cliniko.api.key: — → ****-au3")

        drawer.get_by_label("Customer fetch delay (days)").fill("3")
        drawer.get_by_label("Birdeye API key").fill(BIRDEYE_KEY)
        drawer.get_by_label("Test (dry run, never sends)").check()
        drawer.get_by_role("button", name="Save").click()
        expect(drawer).to_be_hidden()

        edit.click()
        expect(history).to_have_count(3)
        newest = history.first
        expect(newest.locator(".who")).to_have_text("local")
        expect(newest).to_contain_text("changed this location (PATCH /admin/mappings/{businessNumber})")
        expect(newest.locator(".history-fields > li")).to_have_text(
            ["test: false → true", "birdeye.api.key: — → ****e8f9", "customer.fetch.delay: 0 → 3"]
        )
        changed_at = _api(base_url, "/admin/audit?limit=1")["changes"][0]["changedAt"]
        expect(newest.locator("time")).to_have_attribute("datetime", changed_at)
        expect(drawer.locator("#loc-history")).not_to_contain_text(BIRDEYE_KEY[:-4])

        # A location being added has no history yet: the section stays hidden.
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Add location to group 22253").click()
        expect(page.locator("#loc-history")).to_be_hidden()


def test_token_login_and_a_401_send_the_user_back_to_sign_in(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "dashboard-t0ken"
    with serving(_app(tmp_path, monkeypatch, token=token)) as url:
        assert httpx.get(f"{url}/admin/groups").status_code == 401
        replay_manual(url, token=token)
        with dashboard(browser, url) as page:
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            expect(page.get_by_label("Admin token")).to_be_focused()
            page.get_by_label("Admin token").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#login-token-error")).to_have_text(
                "The admin token was refused. Sign in again."
            )
            page.get_by_label("Admin token").fill(token)
            page.keyboard.press("Enter")
            expect(page.locator("#list-summary")).to_have_text("1 groups, 2 locations (2 active).")
            assert page.evaluate("sessionStorage.getItem('cliniko-reviews.adminToken')") == token

            page.evaluate("sessionStorage.setItem('cliniko-reviews.adminToken', 'revoked')")
            page.get_by_role("button", name="Integrations").click()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            expect(page.locator("#list-view")).to_be_hidden()


def test_the_page_fits_a_narrow_window(browser: Browser, base_url: str) -> None:
    replay_manual(base_url)
    with dashboard(browser, base_url, width=400) as page:
        # Each table row becomes a card whose cells carry their column names.
        names_cell = page.locator(f"tr[data-business-number='{SMB_BUSINESS_NUMBER}'] td").first
        assert names_cell.evaluate("td => getComputedStyle(td, '::before').content") == '"Location names"'
        assert page.evaluate("document.documentElement.scrollWidth") <= 400
        page.get_by_role("button", name=f"Edit {SMB_BUSINESS_NUMBER}").click()
        box = page.get_by_role("dialog").bounding_box()
        assert box is not None and box["x"] >= 0 and box["width"] <= 400
        assert page.evaluate("document.documentElement.scrollWidth") <= 400


def _local(moment: datetime) -> str:
    """A time as the drawer's `datetime-local` input takes it (UTC, to the minute)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def test_an_existing_group_or_mapping_is_refused_in_words_for_people_not_api_routes(
    browser: Browser, base_url: str, app: FastAPI
) -> None:
    replay_manual(base_url)
    with dashboard(browser, base_url) as page:
        # From the list: a location that is already mapped elsewhere (no look-up first: the API refuses it).
        page.get_by_role("button", name="Add location to group 22253").click()
        drawer = page.get_by_role("dialog")
        _fill_location(
            page, {"Business ID (Birdeye location)": ENTERPRISE_LOCATION_NUMBER, "Location names": "Fitzroy"}
        )
        drawer.get_by_role("button", name="Save").click()
        number_field = page.locator(".field", has=page.locator("#loc-business-number"))
        expect(number_field.locator(".field-error")).to_have_text(
            "is already mapped in integration group 22253; to change it, use Edit on its row in the "
            "Integrations list"
        )
        expect(drawer).not_to_contain_text("PATCH")
        page.keyboard.press("Escape")

        # In the wizard, a change made elsewhere between the page's look-ups and its writes (the look-ups are
        # answered "nothing there"): the group's and the mapping's refusals come from the API.
        page.route(
            re.compile(r".*/integration/businessintegrationgroup/\d+$"),
            lambda route: route.fulfill(status=404, json={"error": {"field": None, "message": "none"}}),
        )
        page.route("**/admin/mappings?businessNumber=*", lambda route: route.fulfill(json={"mappings": []}))
        before = app.state.registry.snapshot()
        _set_up_smb(page, SMB_BUSINESS_NUMBER, "New York")
        expect(page.locator("#g-parent-error")).to_have_text(
            "already has integration group 22253; add locations to it with Add location on that group in "
            "the Integrations list"
        )
        expect(page.locator("#wizard-view")).not_to_contain_text("POST /integration")
        assert app.state.registry.snapshot() == before

        page.get_by_role("button", name="Cancel").click()
        _start_enterprise(
            page,
            "700000000000001",
            [{"Business ID (Birdeye location)": ENTERPRISE_LOCATION_NUMBER, "Location names": "Fitzroy"}],
        )
        _save(page)
        expect(page.locator("#wizard-banner")).to_contain_text(f"Not saved: {ENTERPRISE_LOCATION_NUMBER}.")
        taken = page.locator(f"#pending-locations li[data-business-number='{ENTERPRISE_LOCATION_NUMBER}']")
        expect(taken).to_contain_text(
            "is already mapped in integration group 22253; to change it, use Edit on its row"
        )
        expect(page.locator("#wizard-view")).not_to_contain_text("/admin/mappings")


def test_the_review_shows_everything_that_will_be_saved_and_no_stale_message(
    browser: Browser, base_url: str
) -> None:
    with dashboard(browser, base_url) as page:
        _start_enterprise(
            page,
            "800000000000001",
            [
                {
                    "Business ID (Birdeye location)": "800000000000011",
                    "Location names": "Carlton ,Fitzroy",
                    "Every": "12",
                    "Unit": "hours",
                    "Next run time (UTC)": "2031-03-04T07:30",
                    "Customer fetch delay (days)": "5",
                    "Beta": "yes",
                },
                {
                    "Business ID (Birdeye location)": "800000000000012",
                    "Location names": "Brunswick",
                    "Status": "inactive",
                    "Test (dry run, never sends)": "yes",
                    "Next run time (UTC)": "2031-03-05T06:00",
                    "Cliniko API key": OVERRIDE_KEY,
                    "Birdeye API key": BIRDEYE_KEY,
                },
            ],
        )
        expect(page.get_by_role("status")).to_have_text(
            "Location 800000000000012 added to this integration; it is not saved yet."
        )
        page.get_by_role("button", name="Next").click()
        expect(page.get_by_role("heading", name="Review and save")).to_be_visible()
        expect(page.locator("#status")).to_be_empty()
        expect(page.locator("#review-summary")).to_have_text(
            "Nothing is saved yet. Save writes the integration group and the 2 locations below, "
            "exactly as shown."
        )
        expect(page.locator("#review .facts dd")).to_have_text(
            [
                "Cliniko",
                "Cliniko Appointment Trigger",
                "Enterprise (multi-location)",
                "800000000000001",
                "****-uk2",
                "none",
                "2 days",
                "off",
                "7 days (the registry's default)",
            ]
        )
        carlton = page.locator("#review-locations tr[data-location='800000000000011'] > *")
        expect(carlton).to_have_text(
            [
                "800000000000011",
                "Carlton, Fitzroy",
                "active",
                "no",
                "yes",
                "every 12 hours",
                "2031-03-04 07:30 UTC",
                "5 days (override)",
                "none: the group's keys",
                "not saved",
            ]
        )
        brunswick = page.locator("#review-locations tr[data-location='800000000000012'] > *")
        expect(brunswick).to_have_text(
            [
                "800000000000012",
                "Brunswick",
                "inactive",
                "yes (dry run)",
                "no",
                "every 1 day",
                "2031-03-05 06:00 UTC",
                "2 days (group)",
                "Cliniko API key ****-uk2Birdeye API key ****e8f9",
                "not saved",
            ]
        )
        expect(page.locator("#review")).not_to_contain_text(OVERRIDE_KEY[:-4])
        expect(page.locator("#review-warnings")).to_be_hidden()

        # Back, change a location: the review is built again from what will now be sent.
        page.get_by_role("button", name="Back").click()
        page.locator("#pending-locations li[data-business-number='800000000000011']").get_by_role(
            "button", name="Edit"
        ).click()
        _fill_location(page, {"Every": "2", "Unit": "days", "Beta": "no"})
        page.get_by_role("dialog").get_by_role("button", name="Update").click()
        page.get_by_role("button", name="Next").click()
        expect(carlton.nth(4)).to_have_text("no")
        expect(carlton.nth(5)).to_have_text("every 2 days")
        expect(page.locator("#status")).to_be_empty()

        # A save that fails half-way: the review then says what is saved and what is still to save.
        def bad_delay(route: Route) -> None:
            body = json.loads(route.request.post_data or "{}")
            if body["businessNumber"] == "800000000000012":
                body["integrationProperties"].append(
                    {"propertyKey": "customer.fetch.delay", "propertyValue": "999"}
                )
            route.continue_(post_data=json.dumps(body))

        page.route("**/integration/add/businessintegrationmapping", bad_delay)
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#wizard-banner")).to_contain_text("Not saved: 800000000000012.")
        group_id = _api(base_url, "/integration/businessintegrationgroup/800000000000001")["groupId"]
        page.get_by_role("button", name="Next").click()
        expect(page.locator("#wizard-banner")).to_be_hidden()
        expect(page.locator("#review-summary")).to_have_text(
            f"Integration group {group_id} is saved. “Save remaining locations” writes the 1 location marked "
            "“not saved” below; nothing else changes."
        )
        expect(carlton.last).to_have_text("saved")
        expect(brunswick.last).to_have_text("not saved")

        # Reopened: the partial save is told again from what is saved, nothing older is kept.
        page.get_by_role("button", name="Cancel").click()
        page.get_by_role("button", name="Add Integration").click()
        expect(page.locator("#status")).to_be_empty()
        expect(page.locator("#wizard-banner")).to_contain_text("Not saved: 800000000000012.")
        page.unroute("**/integration/add/businessintegrationmapping")
        page.get_by_role("button", name="Next").click()
        page.get_by_role("button", name="Save remaining locations").click()
        expect(page.get_by_role("status")).to_contain_text(f"Integration group {group_id} saved")

        # A new set-up starts clean.
        page.get_by_role("button", name="Add Integration").click()
        expect(page.locator("#status")).to_be_empty()
        expect(page.locator("#wizard-banner")).to_be_hidden()

    brunswick_saved = _api(base_url, "/admin/mappings/800000000000012")
    assert (brunswick_saved["active"], brunswick_saved["test"], brunswick_saved["beta"]) == (
        False,
        True,
        False,
    )
    assert _api(base_url, "/admin/mappings/800000000000011")["frequency"] == {"value": 2, "unit": "days"}


def test_a_next_run_time_in_the_past_is_explained_where_it_is_entered_and_in_the_review(
    browser: Browser, base_url: str
) -> None:
    replay_manual(base_url)
    # The SMB location's own catch-up horizon: the warning must use it, not the default.
    httpx.patch(
        f"{base_url}/admin/mappings/{SMB_BUSINESS_NUMBER}",
        json={"integrationProperties": [{"propertyKey": "customer.catchup.days", "propertyValue": "2"}]},
        timeout=10,
    ).raise_for_status()
    ten_days_ago = _local(datetime.now(UTC) - timedelta(days=10, hours=1))
    with dashboard(browser, base_url) as page:
        page.get_by_role("button", name=f"Edit {SMB_BUSINESS_NUMBER}").click()
        drawer = page.get_by_role("dialog")
        warning = page.locator("#loc-next-run-warning")
        expect(warning).to_be_hidden()  # the manual's next run time lies ahead
        drawer.get_by_label("Next run time (UTC)").fill(ten_days_ago)
        expect(warning).to_contain_text("is 10 days in the past")
        expect(warning).to_contain_text("catch-up horizon of 2 days plus one frequency (1 day)")
        expect(warning).to_contain_text("are skipped")
        expect(warning).to_contain_text("Days this location already ran are not run again.")
        drawer.get_by_label("Status").select_option("inactive")
        expect(warning).to_contain_text("The location is inactive, so nothing runs until it is made active")
        page.keyboard.press("Escape")

        # The wizard: the group's fetch delay and the registry's default horizon (7 days).
        _start_enterprise(page, "900000000000001", [])
        page.get_by_role("button", name="Add location").click()
        _fill_location(
            page,
            {
                "Business ID (Birdeye location)": "900000000000011",
                "Location names": "Hobart",
                "Next run time (UTC)": ten_days_ago,
            },
        )
        expect(warning).to_contain_text("catch-up horizon of 7 days plus one frequency (1 day)")
        _fill_location(page, {"Every": "2"})
        expect(warning).to_contain_text("catch-up horizon of 7 days plus one frequency (2 days)")
        page.get_by_role("dialog").get_by_role("button", name="Add").click()
        page.get_by_role("button", name="Next").click()
        review_warning = page.locator("#review-warnings li[data-location='900000000000011']")
        expect(review_warning).to_contain_text("is 10 days in the past")
        expect(review_warning).to_contain_text("plus one frequency (2 days)")
        expect(
            page.locator("#review-locations tr[data-location='900000000000011'] .next-run")
        ).to_contain_text("in the past")

        # Moved ahead again: no warning in the drawer, none in the review.
        page.get_by_role("button", name="Back").click()
        page.locator("#pending-locations li[data-business-number='900000000000011']").get_by_role(
            "button", name="Edit"
        ).click()
        _fill_location(page, {"Next run time (UTC)": _local(datetime.now(UTC) + timedelta(days=1))})
        expect(warning).to_be_hidden()
        page.get_by_role("dialog").get_by_role("button", name="Update").click()
        page.get_by_role("button", name="Next").click()
        expect(page.locator("#review-locations tr[data-location='900000000000011']")).to_be_visible()
        expect(page.locator("#review-warnings")).to_be_hidden()
