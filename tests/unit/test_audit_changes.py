"""How the audit trail describes a change (pipeline/registry/audit.py), without a database."""

import json

from pipeline.masking import mask
from pipeline.registry.audit import MaskedSecret, changed_fields, to_json
from pipeline.registry.secrets import Secret

OLD_KEY = "MS0xMTExMTExMTExMTExMTExMTEtc21iLWtleS1-au3"
NEW_KEY = "MS0yMjIyMjIyMjIyMjIyMjIyMjItZW50ZXJwcmlz-au3"  # another key, the same last 4 characters


def secret(value: str) -> MaskedSecret:
    return MaskedSecret(mask(value), Secret(value))


def test_only_changed_fields_are_listed_in_the_newer_states_order() -> None:
    before = {"active": True, "test": False, "customer.fetch.delay": "0"}
    after = {"active": True, "test": True, "cliniko.location.name": "Main"}
    assert changed_fields(before, after) == [
        {"field": "test", "before": False, "after": True, "secret": False},
        {"field": "cliniko.location.name", "before": None, "after": "Main", "secret": False},
        {"field": "customer.fetch.delay", "before": "0", "after": None, "secret": False},
    ]
    assert changed_fields(after, dict(after)) == []


def test_secrets_are_compared_by_value_and_shown_masked() -> None:
    assert changed_fields({"k": secret(OLD_KEY)}, {"k": secret(OLD_KEY)}) == []  # the same key sent again
    replaced = changed_fields({"k": secret(OLD_KEY)}, {"k": secret(NEW_KEY)})
    assert replaced == [{"field": "k", "before": "****-au3", "after": "****-au3", "secret": True}]
    stored = to_json({"k": secret(NEW_KEY), "n": 1}) + to_json(replaced)
    assert json.loads(to_json({"k": secret(NEW_KEY)})) == {"k": "****-au3"}
    assert NEW_KEY[:-4] not in stored and OLD_KEY[:-4] not in stored
    assert NEW_KEY not in repr(secret(NEW_KEY))
