"""The emulator's contract (reference §2.8): auth codes, validation order, limits, faults and its record."""

import contextlib
import time

import httpx
import pytest

from pipeline.sandbox.birdeye_emulator import (
    CHECKIN_V2_ROUTE,
    BirdeyeEmulatorConfig,
    read_records,
    running_birdeye,
    validation_error,
)

KEY = "emu-key-1234"
VALID = {"name": "Ann", "emailId": "ann@example.com", "phone": "0412345678", "smsEnabled": 1}


def post(base_url: str, body, *, key: str | None = KEY, bid: str | None = "100", **kwargs) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    params = {"bid": bid} if bid else {}
    return httpx.post(f"{base_url}/v1/customer/checkin", json=body, headers=headers, params=params, **kwargs)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**VALID, "name": " ", "emailId": "bad", "smsEnabled": 7}, 1142),
        ({"name": "Ann", "smsEnabled": 9}, 1246),
        ({**VALID, "emailId": "bad", "phone": "12", "smsEnabled": 7}, 1087),
        ({**VALID, "emailId": "x" * 40 + "@a.co", "phone": "12"}, 1088),
        ({**VALID, "phone": "12", "smsEnabled": 7}, 1055),
        ({**VALID, "smsEnabled": 2}, 1170),
        ({**VALID, "smsEnabled": True}, 1170),
        (VALID, None),
        ({**VALID, "phone": "+61 412 345 678"}, None),
        ({**VALID, "phone": "(408) 123-1234", "emailId": None}, None),
    ],
)
def test_validation_order(body, code):
    assert validation_error(body) == code


def test_sms_less_business_needs_an_email_first():
    assert validation_error({"name": "Ann", "phone": "4081231234"}, sms_business=False) == 1086
    assert validation_error({"name": "Ann", "phone": "4081231234"}, sms_business=True) is None


def test_auth_codes_and_the_404_switch():
    keys = {KEY: frozenset({"100"})}
    with running_birdeye(BirdeyeEmulatorConfig(keys=keys)) as birdeye:
        missing = post(birdeye.base_url, VALID, key=None)
        unknown = post(birdeye.base_url, VALID, key="nope")
        foreign = post(birdeye.base_url, VALID, bid="200")
        in_query = httpx.post(f"{birdeye.base_url}/v1/customer/checkin?bid=100&api_key={KEY}", json=VALID)
        ok = post(birdeye.base_url, VALID)
    assert (missing.status_code, missing.json()) == (401, {"code": 1167, "message": "API key is missing"})
    assert (unknown.status_code, unknown.json()["code"]) == (401, 1161)
    assert (foreign.status_code, foreign.json()["code"]) == (401, 1175)
    assert in_query.status_code == 401  # the legacy query key only when switched on
    assert ok.status_code == 200 and isinstance(ok.json()["customerId"], int)
    with running_birdeye(
        BirdeyeEmulatorConfig(keys=keys, unknown_business_status=404, accept_query_key=True)
    ) as b:
        assert post(b.base_url, VALID, bid="200").status_code == 404
        assert (
            httpx.post(f"{b.base_url}/v1/customer/checkin?bid=100&api_key={KEY}", json=VALID).status_code
            == 200
        )


def test_legacy_envelope_and_v2_route():
    with running_birdeye(BirdeyeEmulatorConfig(keys={KEY: None}, legacy_envelope=True)) as birdeye:
        bad = post(birdeye.base_url, {**VALID, "name": ""})
        v2 = httpx.post(
            birdeye.base_url.removesuffix("/resources") + CHECKIN_V2_ROUTE,
            json=VALID,
            headers={"x-api-key": KEY, "x-business-number": "100"},
        )
        v1 = post(birdeye.base_url, VALID)
    assert bad.json() == {"errorCode": 1142, "errorMessage": "Customer name cannot be blank"}
    assert v2.status_code == 200 and v2.json() == v1.json()  # same contact, same enterprise: same customer


def test_contacts_are_per_enterprise():
    config = BirdeyeEmulatorConfig(keys={KEY: None}, enterprises={"100": "E1", "101": "E1"})
    with running_birdeye(config) as birdeye:
        ids = [post(birdeye.base_url, VALID, bid=bid).json()["customerId"] for bid in ("100", "101", "102")]
    assert ids[0] == ids[1] != ids[2]


def test_token_bucket_per_key():
    config = BirdeyeEmulatorConfig(keys={KEY: None, "other-key": None}, rate_per_second=0.01, burst=2)
    with running_birdeye(config) as birdeye:
        statuses = [post(birdeye.base_url, VALID).status_code for _ in range(3)]
        other = post(birdeye.base_url, VALID, key="other-key")
        limited = post(birdeye.base_url, VALID)
    assert statuses == [200, 200, 429] and other.status_code == 200
    assert limited.json() == {"code": 89, "message": "Rate limit exceeded"}


def test_faults_are_deterministic_from_the_seed():
    bodies = [{**VALID, "externalId": f"p{i}"} for i in range(40)]

    def run(seed: int) -> list[int | None]:
        config = BirdeyeEmulatorConfig(keys={KEY: None}, server_error_rate=0.3, drop_rate=0.2, seed=seed)
        with running_birdeye(config) as birdeye, httpx.Client() as client:
            for body in bodies:
                with contextlib.suppress(httpx.RemoteProtocolError):
                    client.post(
                        f"{birdeye.base_url}/v1/customer/checkin",
                        json=body,
                        params={"bid": "1"},
                        headers={"x-api-key": KEY},
                    )
            return [r.status for r in birdeye.records()]

    first = run(seed=7)
    assert first == run(seed=7) != run(seed=8)
    assert {200, 503, None} <= set(first)


def test_record_file_is_readable_from_outside(tmp_path):
    path = tmp_path / "checkins.jsonl"
    config = BirdeyeEmulatorConfig(keys={KEY: None}, record_path=path, drop_rate=1.0)
    with running_birdeye(config) as birdeye:
        with pytest.raises(httpx.RemoteProtocolError):
            post(birdeye.base_url, {**VALID, "additionalParams": {"appointmentId": "77"}})
        post(birdeye.base_url, {**VALID, "name": ""})
        records = read_records(path)  # while the emulator still runs: flushed per request
    assert [(r.appointment_id, r.status, r.delivered) for r in records] == [
        ("77", None, True),
        (None, 400, False),
    ]
    assert records[0].key_suffix == KEY[-4:] and KEY not in path.read_text()


def test_latency_is_added():
    with running_birdeye(BirdeyeEmulatorConfig(keys={KEY: None}, latency_seconds=0.05)) as birdeye:
        started = time.perf_counter()
        post(birdeye.base_url, VALID)
        assert time.perf_counter() - started >= 0.05
