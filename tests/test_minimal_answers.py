"""A ``GetSecretValue`` answer without ``Name``, ``ARN`` or ``VersionId``, as a test stub returns it.

Real answers always carry those fields; users' tests built on botocore's ``Stubber`` rarely do
(``{"SecretString": "x"}``), and both peers return the value. The cache accepts such an answer:
the requested id stands for the name, the ARN and the version id are empty (unknown). An unknown
version is never a change and takes no part in monotonic reads; single flight is unchanged. A
response with no value at all (a body botocore could not parse) is still malformed and retried.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.stub import Stubber

from secretcache import SecretCache, SecretChange, SecretUnavailableError
from tests.conftest import WATCHDOG, FakeClock, wait_until
from tests.threads import start

AWSCURRENT = {"SecretId": "app/key", "VersionStage": "AWSCURRENT"}
VERSION_1 = "v1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
VERSION_2 = "v2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/key-AbCdEf"


def full(value: str, version: str, created: int) -> dict[str, Any]:
    return {
        "Name": "app/key",
        "ARN": ARN,
        "VersionId": version,
        "SecretString": value,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": datetime.fromtimestamp(created, tz=timezone.utc),
    }


def test_a_minimal_answer_is_served_without_retries(stubbed: tuple[Any, Stubber]) -> None:
    """{"SecretString": "x"} is the value: one call, the requested id as the name, no ARN or version id."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretString": "x"}, AWSCURRENT)
    cache = SecretCache(client, clock=FakeClock())
    assert cache.get_secret_string("app/key") == "x"
    value = cache.get_secret("app/key")  # a hit: the stub has no second answer
    assert (value.name, value.arn, value.version_id) == ("app/key", "", "")
    assert cache.stats().api_calls == {"GetSecretValue": 1}
    stubber.assert_no_pending_responses()


def test_a_minimal_binary_answer_is_served(stubbed: tuple[Any, Stubber]) -> None:
    """{"SecretBinary": b"..."} alone is a binary value."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretBinary": b"\x00\x01"}, AWSCURRENT)
    assert SecretCache(client, clock=FakeClock()).get_secret_binary("app/key") == b"\x00\x01"


@pytest.mark.parametrize("text", ["ZXhhbXBsZQ==", "Zürich-\udc80"])
def test_a_binary_given_as_str_by_a_stub_is_served_as_its_utf8_bytes(stubbed: tuple[Any, Stubber], text: str) -> None:
    """A Stubber takes a str for SecretBinary (a real answer never has one): served as its UTF-8 bytes, unretried."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretBinary": text}, AWSCURRENT)
    cache = SecretCache(client, clock=FakeClock())
    assert cache.get_secret_binary("app/key") == text.encode("utf-8", "surrogatepass")
    assert cache.get_secret("app/key").secret_string is None
    assert cache.stats().api_calls == {"GetSecretValue": 1}
    stubber.assert_no_pending_responses()


def test_an_answer_with_no_value_is_still_malformed_and_retried(stubbed: tuple[Any, Stubber]) -> None:
    """A body with neither SecretString nor SecretBinary (a cut-off response) is retried, then unavailable."""
    client, stubber = stubbed
    for _ in range(3):
        stubber.add_response("get_secret_value", {"Name": "app/key"}, AWSCURRENT)
    with pytest.raises(SecretUnavailableError):
        SecretCache(client, clock=FakeClock()).get_secret_string("app/key")
    stubber.assert_no_pending_responses()


def test_cold_readers_of_a_minimal_answer_share_one_call(stubbed: tuple[Any, Stubber]) -> None:
    """Eight threads on a cold key answered by a stub: one call, all get the value."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretString": "x"}, AWSCURRENT)
    gate = threading.Event()
    # Before the call is built: the Stubber answers from before-call, ahead of any handler there.
    client.meta.events.register("before-parameter-build.secretsmanager.GetSecretValue", lambda **_: gate.wait(WATCHDOG))
    cache = SecretCache(client, clock=FakeClock())
    readers = [start(lambda: cache.get_secret_string("app/key"), f"reader-{index}") for index in range(8)]
    wait_until(lambda: cache.stats().misses == 8)
    gate.set()
    assert [reader.result(timeout=WATCHDOG) for reader in readers] == ["x"] * 8
    assert cache.stats().api_calls == {"GetSecretValue": 1}


def test_unknown_versions_are_never_changes(stubbed: tuple[Any, Stubber]) -> None:
    """Minimal answers report nothing; the first change is between two known versions."""
    client, stubber = stubbed
    for answer in ({"SecretString": "a"}, {"SecretString": "b"}, full("c", VERSION_1, 1), full("d", VERSION_2, 2)):
        stubber.add_response("get_secret_value", answer, AWSCURRENT)
    cache = SecretCache(client, clock=FakeClock())
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    assert [cache.refresh("app/key").secret_string for _ in range(4)] == ["a", "b", "c", "d"]
    assert [(change.old_version_id, change.new_version_id) for change in changes] == [(VERSION_1, VERSION_2)]
    assert cache.stats().changes == 1
