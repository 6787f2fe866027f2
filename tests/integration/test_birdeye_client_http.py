"""The client against the emulator over real HTTP on loopback: one test per outcome."""

import contextlib
import socket
import time

import pytest

from pipeline.birdeye import Accepted, BirdeyeClient, CheckIn, Rejected, Retryable, Unauthorized, Unknown
from pipeline.sandbox.birdeye_emulator import DEFAULT_API_KEY, BirdeyeEmulatorConfig, running_birdeye

KEY = "test-key-0000wxyz"
BID = "166015909542313"


def check_in(**overrides) -> CheckIn:
    fields = dict(
        business_number=BID,
        appointment_id="901",
        patient_id="42",
        patient_name="Ann Lee",
        location_name="Fitzroy",
        channels="sms,email",
        email="ann@example.com",
        sms_phone="+61412345678",
    )
    return CheckIn.for_appointment(**(fields | overrides))


def config(**overrides) -> BirdeyeEmulatorConfig:
    return BirdeyeEmulatorConfig(**({"keys": {KEY: frozenset({BID, "2"})}} | overrides))


@contextlib.contextmanager
def serving(cfg: BirdeyeEmulatorConfig, *, path: str = "/resources", **client_options):
    """The emulator and a client pointed at it (`path` replaces the `/resources` prefix)."""
    with running_birdeye(cfg) as birdeye:
        base_url = birdeye.base_url.removesuffix("/resources") + path
        with BirdeyeClient(client_options.pop("key", KEY), base_url=base_url, **client_options) as client:
            yield birdeye, client


def test_accepted_with_the_same_customer_id_for_the_same_contact():
    with running_birdeye(config()) as birdeye, BirdeyeClient(KEY, base_url=birdeye.base_url) as client:
        first = client.check_in(check_in())
        again = client.check_in(check_in(appointment_id="902"))
        other = client.check_in(check_in(patient_id="43", email="bo@example.com", sms_phone="+61412000000"))
        assert isinstance(first, Accepted) and first.customer_id.isdigit()
        assert again == first and other != first
        received = birdeye.delivered()
    assert [r.appointment_id for r in received] == ["901", "902", "901"]
    assert received[0].body["phone"] == "+61412345678" and received[0].bid == BID


@pytest.mark.parametrize("legacy", [False, True])
def test_server_rejection_in_both_envelopes(legacy):
    # An SMS-less business needs an email (1086): only Birdeye knows that, so it is not caught locally.
    cfg = config(sms_disabled_businesses=frozenset({BID}), legacy_envelope=legacy)
    with running_birdeye(cfg) as birdeye, BirdeyeClient(KEY, base_url=birdeye.base_url) as client:
        outcome = client.check_in(check_in(channels="sms"))
    assert outcome == Rejected(400, "1086", "Customer email id cannot be blank.")


@pytest.mark.parametrize(
    ("key", "bid", "status", "code"),
    [("wrong-key", BID, 401, "1161"), (KEY, "999", 401, "1175")],
)
def test_auth_rejections(key, bid, status, code):
    with running_birdeye(config()) as birdeye, BirdeyeClient(key, base_url=birdeye.base_url) as client:
        outcome = client.check_in(check_in(business_number=bid))
    # Birdeye processed nothing: the sink keeps such a request to post once the key is fixed.
    assert isinstance(outcome, Unauthorized) and (outcome.status, outcome.code) == (status, code)


def test_unknown_business_as_404_when_switched():
    with serving(config(unknown_business_status=404)) as (_, client):
        outcome = client.check_in(check_in(business_number="999"))
    assert (outcome.status, outcome.code) == (404, "1175")


def test_non_json_error_body():
    with serving(config(), path="") as (_, client):
        outcome = client.check_in(check_in())
    assert outcome == Rejected(404, None, "Not Found")


def test_local_rejection_makes_no_http_call():
    with running_birdeye(config()) as birdeye, BirdeyeClient(KEY, base_url=birdeye.base_url) as client:
        outcome = client.check_in(check_in(email="x" * 41 + "@example.com", channels="email"))
        assert outcome.local and outcome.code == "1088"
        assert birdeye.records() == []


def test_429_and_5xx_are_retryable():
    with serving(config(rate_per_second=0.001, burst=1, server_error_first=1)) as (birdeye, client):
        outcomes = [client.check_in(check_in(appointment_id=str(i))) for i in range(3)]
    assert outcomes[0].status == 503 and isinstance(outcomes[0], Retryable)
    assert outcomes[2] == Retryable("HTTP 429 code 89: Rate limit exceeded", 429, "89")
    assert not any(r.delivered for r in birdeye.records() if r.status in (429, 503))


def test_connection_refused_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        with BirdeyeClient(KEY, base_url=f"http://127.0.0.1:{port}/resources") as client:
            outcome = client.check_in(check_in())
    assert isinstance(outcome, Retryable) and "could not connect" in outcome.reason


def test_read_timeout_is_unknown_and_birdeye_did_get_it():
    with running_birdeye(config(latency_seconds=0.4)) as birdeye:
        with BirdeyeClient(KEY, base_url=birdeye.base_url, timeout=0.1) as client:
            outcome = client.check_in(check_in())
        assert isinstance(outcome, Unknown) and "ReadTimeout" in outcome.reason
        for _ in range(100):  # the emulator finishes the request after the client gave up
            if birdeye.delivered():
                break
            time.sleep(0.01)
        assert len(birdeye.delivered()) == 1


def test_dropped_connection_is_unknown_and_birdeye_did_get_it():
    with (
        running_birdeye(config(drop_rate=1.0)) as birdeye,
        BirdeyeClient(KEY, base_url=birdeye.base_url) as client,
    ):
        outcome = client.check_in(check_in())
        assert isinstance(outcome, Unknown)
        assert [r.status for r in birdeye.delivered()] == [None]


def test_the_key_never_appears_in_outcomes_or_urls():
    with running_birdeye(config()) as birdeye, BirdeyeClient(KEY, base_url=birdeye.base_url) as client:
        outcomes = [client.check_in(check_in()), client.check_in(check_in(business_number="999"))]
        assert all(KEY not in repr(o) for o in outcomes)
        assert all(r.key_suffix == KEY[-4:] for r in birdeye.records())


def test_default_sandbox_key_accepts_any_business():
    with running_birdeye() as birdeye, BirdeyeClient(DEFAULT_API_KEY, base_url=birdeye.base_url) as client:
        assert isinstance(client.check_in(check_in(business_number="12345")), Accepted)
