"""The support manual's curl commands as data, and a replay of its set-up against a running admin API.

Bodies are kept as the manual's exact text (JSON numbers for business numbers, the manual's sample
Cliniko key), so replaying them is the acceptance test of SPEC §2.1: the same method, path, query string,
headers and body that `curl` would send once the host is swapped. The sample key is the manual's published
example, not a credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

_GROUP_BODY = """{
"parentBusinessNumber": 159894373919788,
"integrationSourceId": 118,
"integrationGroupProperties": [
{
"propertyKey": "cliniko.api.key",
"propertyValue": "MS05ODkwMTU1NzY1ODIwMzcyNjAtSWRPVXNVMytzR1JyMVlwdWdOM2hkbDJBRi9nVlM3TmU-au3",
"isSecure": false
},
{
"propertyKey": "customer.fetch.delay",
"propertyValue": "0",
"isSecure": false
}
],
"integrationGroupTriggers": [
{
"triggerId": 129,
"triggerTypeId": 1
}
]
}"""

_TRIGGERS_BODY = """{
"groupId": 22253,
"integrationGroupTriggers": [
{
"triggerId": 129,
"triggerTypeId": 1
}
]
}"""

_SMB_MAPPING_BODY = """{
"businessNumber":159894373919788,
"integrationGroupId": 22253,
"integrationProperties": [
{
"propertyKey": "cliniko.location.name",
"propertyValue": "New York",
"isSecure": false
},
{
"propertyKey": "customer.fetch.delay",
"propertyValue": "0",
"isSecure": false
}
],
"active": true,
"test": false,
"beta": false
}"""

_ENTERPRISE_MAPPING_BODY = _SMB_MAPPING_BODY.replace(
    '"businessNumber":159894373919788,', '"businessNumber": 159894396935987,'
)

SAMPLE_TRIGGERS_RESPONSE: list[dict] = json.loads("""[
{
"id": 129,
"triggerService": "clinikoAppointmentTriggerServiceImpl",
"displayName": "Cliniko Appointment Trigger",
"description": "This trigger is used to fetch customer data based on the completed appointments",
"active": true,
"integrationTriggerType": {
"id": 1,
"name": "JOB"
},
"actionGroupId": 1,
"sourceIdsList": [
118
],
"triggerName": "Cliniko Appointment Trigger",
"caseTypeId": 1
}
]""")

SAMPLE_GROUP_RESPONSE: dict = json.loads("""{
"groupId": 22253,
"integrationSourceType": {
"id": 118,
"integrationSource": "CLINIKO",
"sourceCategory": "Healthcare",
"integrationType": "Birdeye API",
"integrationPlan": "Standard",
"oauthEnabled": false},
"integrationGroupTriggers": [
{
"triggerId": 129,
"triggerTypeId": 1,
"actionIds": [
1
]
}
]
}""")

SMB_BUSINESS_NUMBER = "159894373919788"
ENTERPRISE_LOCATION_NUMBER = "159894396935987"
MANUAL_GROUP_ID = 22253

_JSON = {"cache-control": "no-cache", "content-type": "application/json"}


@dataclass(frozen=True)
class ManualStep:
    """One curl command of the manual: method, path with query string, headers and exact body text."""

    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None

    @property
    def payload(self) -> object:
        """The body as Python data (business numbers are JSON numbers in the manual)."""
        return json.loads(self.body) if self.body is not None else None


STEPS: tuple[ManualStep, ...] = (
    ManualStep("smb_group", "PUT", "/integration/add/businessintegrationgroup", _JSON, _GROUP_BODY),
    ManualStep("enterprise_group", "PUT", "/integration/add/businessintegrationgroup", _JSON, _GROUP_BODY),
    ManualStep("list_triggers", "GET", "/integration/trigger/integrationtriggers/sourceid/118", _JSON),
    ManualStep(
        "find_group",
        "GET",
        f"/integration/businessintegrationgroup/{SMB_BUSINESS_NUMBER}",
        {"Cache-Control": "no-cache"},
    ),
    ManualStep(
        "replace_triggers",
        "POST",
        "/integration/update/businessintegrationgroup?replaceTriggers=true",
        _JSON,
        _TRIGGERS_BODY,
    ),
    ManualStep(
        "append_triggers",
        "POST",
        "/integration/update/businessintegrationgroup?replaceTriggers=false",
        _JSON,
        _TRIGGERS_BODY,
    ),
    ManualStep(
        "smb_mapping",
        "PUT",
        "/integration/add/businessintegrationmapping",
        {"Content-Type": "application/json"},
        _SMB_MAPPING_BODY,
    ),
    ManualStep(
        "enterprise_mapping",
        "PUT",
        "/integration/add/businessintegrationmapping",
        {"Content-Type": "application/json"},
        _ENTERPRISE_MAPPING_BODY,
    ),
)
STEP = {step.name: step for step in STEPS}


def send(client: httpx.Client, step: ManualStep) -> httpx.Response:
    """Send one step exactly as curl would: the body's bytes untouched."""
    content = step.body.encode() if step.body is not None else None
    return client.request(step.method, step.path, headers=step.headers, content=content)


def replay_manual(
    base_url: str, *, token: str | None = None, timeout: float = 10.0
) -> dict[str, httpx.Response]:
    """Run the manual's set-up in its order against the admin API at `base_url`; responses by step name.

    Stops at nothing: each response is returned for the caller to judge (the tests assert on every one).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
        return {step.name: send(client, step) for step in STEPS}
