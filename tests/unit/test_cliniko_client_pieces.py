"""Pure pieces of the Cliniko client: shards, page envelope, datetimes, user agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.cliniko import (
    InvalidApiKey,
    InvalidUserAgent,
    base_url_for,
    format_datetime,
    shard_of,
    validate_user_agent,
)
from pipeline.cliniko.pagination import MalformedPage, collection_key, page_cap, raw_page

KEY = "MS0xMjM0NTY3ODkwMTIzNDU2Nzg5LWFiY2RlZmdoaWprbG1ub3Bx"


@pytest.mark.parametrize(
    ("key", "shard"),
    [
        (KEY, "au1"),
        (f"{KEY}-au2", "au2"),
        (f"{KEY}-UK2", "uk2"),
        (f"{KEY}-eu1", "eu1"),
        (f"{KEY}-ca1", "ca1"),
        ("legacy-key-with-dashes-xyzabc", "au1"),
    ],
)
def test_shard_comes_from_the_last_suffix(key: str, shard: str) -> None:
    assert shard_of(key) == shard


def test_unknown_shard_is_refused_without_showing_the_key() -> None:
    with pytest.raises(InvalidApiKey) as info:
        shard_of(f"{KEY}-zz9")
    message = str(info.value)
    assert "zz9" in message and "au1" in message
    assert KEY not in message


def test_base_url_is_the_shard_host_unless_overridden() -> None:
    assert base_url_for(f"{KEY}-au3") == ("au3", "https://api.au3.cliniko.com/v1")
    assert base_url_for(f"{KEY}-au3", "http://127.0.0.1:9/v1/") == ("au3", "http://127.0.0.1:9/v1")
    with pytest.raises(InvalidApiKey):
        base_url_for(f"{KEY}-us1", "http://127.0.0.1:9/v1")


def test_collection_key_ignores_query_and_state_suffix() -> None:
    assert collection_key("/individual_appointments?page=2") == "individual_appointments"
    assert collection_key("/patients/archived") == "patients"


def test_raw_page_reads_the_envelope_and_rejects_garbage() -> None:
    page = raw_page(
        b'{"patients":[{"id":"1"}],"total_entries":"250","links":{"self":"s","next":"n"}}', "patients"
    )
    assert (page.empty, page.next_url, page.total_entries) == (False, "n", 250)
    assert raw_page(b'{"patients":[],"links":{"self":"s"}}', "patients").next_url is None
    for body in (b'{"patients":[{"id":', b"<html>502</html>", b'{"businesses":[]}', b"[]"):
        with pytest.raises(MalformedPage):
            raw_page(body, "patients")
    assert page_cap(250) == 4 and page_cap(0) == 1 and page_cap(None) is None


def test_datetimes_are_sent_as_utc_z_whole_seconds() -> None:
    aest = timezone(timedelta(hours=10))
    assert format_datetime(datetime(2026, 11, 24, 14, 0, 0, 999, tzinfo=aest)) == "2026-11-24T04:00:00Z"
    assert format_datetime(datetime(2026, 11, 24, tzinfo=UTC)) == "2026-11-24T00:00:00Z"
    with pytest.raises(ValueError, match="time zone"):
        format_datetime(datetime(2026, 11, 24))


@pytest.mark.parametrize(
    "ua", ["cliniko-reviews (ops@example.com)", "Really helpful app (devs@helpfulapp.com)"]
)
def test_user_agent_of_the_documented_form_is_accepted(ua: str) -> None:
    assert validate_user_agent(ua) == ua


@pytest.mark.parametrize(
    "ua", ["", "python-httpx/0.28", "App (no-email)", "(ops@example.com)", "App ops@x.com"]
)
def test_user_agent_without_name_and_email_is_refused(ua: str) -> None:
    with pytest.raises(InvalidUserAgent):
        validate_user_agent(ua)


def test_an_unreachable_cliniko_names_the_host_and_says_what_to_set():
    from pipeline.cliniko.errors import ClinikoUnavailable

    problem = "timeout (NameResolutionError)"  # what this machine, without internet, gets
    unset = str(ClinikoUnavailable("appointments", 6, problem, "https://api.au4.cliniko.com/v1", False))
    assert "Cliniko at https://api.au4.cliniko.com/v1 did not answer appointments" in unset
    assert "CLINIKO_BASE_URL is unset" in unset and "cliniko-reviews sandbox" in unset
    assert "outage" not in unset
    configured = str(ClinikoUnavailable("appointments", 6, "HTTP 503", "http://127.0.0.1:8301/v1", True))
    assert "Cliniko at http://127.0.0.1:8301/v1" in configured and "outage" in configured
    assert "CLINIKO_BASE_URL is unset" not in configured
