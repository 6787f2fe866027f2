"""The client's pure parts: body, phone form, local validation, response classification."""

import httpx
import pytest

from pipeline.birdeye import Accepted, BirdeyeClient, CheckIn, Rejected, Retryable, birdeye_phone


def check_in(**overrides) -> CheckIn:
    fields = dict(
        business_number="166015909542313",
        appointment_id="901",
        patient_id="42",
        patient_name="Ann Lee",
        location_name="Fitzroy",
        channels="sms,email",
        email="ann@example.com",
        sms_phone="+61412345678",
    )
    return CheckIn.for_appointment(**(fields | overrides))


def test_body_carries_only_the_allowed_channels():
    assert check_in().body() == {
        "name": "Ann Lee",
        "emailId": "ann@example.com",
        "phone": "+61412345678",
        "smsEnabled": 1,
        "externalId": "cliniko-patient-42",
        "additionalParams": {"location": "Fitzroy", "appointmentId": "901"},
    }
    email_only = check_in(channels="email").body()
    assert "phone" not in email_only and email_only["smsEnabled"] == 0
    sms_only = check_in(channels="sms", location_name=None).body()
    assert "emailId" not in sms_only and sms_only["smsEnabled"] == 1
    assert sms_only["additionalParams"] == {"appointmentId": "901"}


def test_north_american_numbers_go_as_ten_digits_others_keep_e164():
    assert birdeye_phone("+14085551234") == "4085551234"
    assert birdeye_phone("+61412345678") == "+61412345678"
    assert birdeye_phone("+447700900123") == "+447700900123"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"patient_name": "  "}, "1142"),
        ({"email": None, "sms_phone": None}, "1246"),
        ({"channels": "email", "sms_phone": "+61412345678", "email": None}, "1246"),
        ({"email": "not-an-email"}, "1087"),
        ({"email": "a" * 30 + "@example.com"}, "1088"),
        ({"sms_phone": "+61 4x"}, "1055"),
    ],
)
def test_local_validation_mirrors_birdeye(overrides, code):
    rejected = check_in(**overrides).local_rejection()
    assert rejected is not None and rejected.code == code and rejected.local and rejected.status == 400


def test_sms_flag_outside_zero_one_is_1170():
    bad = CheckIn(business_number="1", name="A", email="a@b.co", sms_enabled=2)
    assert bad.local_rejection().code == "1170"
    assert check_in().local_rejection() is None


def request() -> httpx.Request:
    return httpx.Request("POST", "http://birdeye.test/resources/v1/customer/checkin")


@pytest.mark.parametrize(
    "text",
    ['{"customerId": 673356544}', '{"customerId": "673356544"}', '{"customerId":\u201d673356544\u201d}'],
)
def test_customer_id_as_number_string_or_the_docs_typographic_quotes(text):
    response = httpx.Response(200, text=text, request=request())
    assert BirdeyeClient.classify(response) == Accepted(customer_id="673356544")


def test_200_without_body_is_accepted_without_id():
    assert BirdeyeClient.classify(httpx.Response(200, request=request())) == Accepted(customer_id=None)


def test_both_error_envelopes_and_a_non_json_body():
    new = httpx.Response(
        400, json={"code": 1087, "message": "Customer email id is invalid."}, request=request()
    )
    old = httpx.Response(
        400, json={"errorCode": 1087, "errorMessage": "Customer email id is invalid."}, request=request()
    )
    assert (
        BirdeyeClient.classify(new)
        == BirdeyeClient.classify(old)
        == Rejected(400, "1087", "Customer email id is invalid.")
    )
    html = httpx.Response(502, text="<html>Bad Gateway</html>", request=request())
    assert BirdeyeClient.classify(html) == Retryable(
        reason="HTTP 502: <html>Bad Gateway</html>", status=502, code=None
    )
    limited = httpx.Response(429, json={"code": 89, "message": "Rate limit exceeded"}, request=request())
    assert BirdeyeClient.classify(limited) == Retryable("HTTP 429 code 89: Rate limit exceeded", 429, "89")


def test_the_key_is_masked_in_repr():
    client = BirdeyeClient("secret-key-abcd1234", base_url="http://127.0.0.1:9/resources")
    try:
        assert "secret-key" not in repr(client) and "1234" in repr(client)
    finally:
        client.close()
