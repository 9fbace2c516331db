"""Change events to invalidations: a corpus of event documents, bad ids, and hostile input.

The SQS listener is tested in ``tests/test_listener_messages.py`` and ``tests/test_listener_lifecycle.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from secretcache import SecretCache, SecretNotFoundError
from secretcache.events import MAX_IDS, invalidate_from_event, secret_ids_from_event
from tests.conftest import REGION, Calls, FakeClock
from tests.test_cache import rotate

CORPUS = Path(__file__).parent / "data" / "events"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/orders/db-AbCdEf"
CHANGE_FILES = sorted(path.name for path in CORPUS.glob("*.json") if not path.name.startswith("ignored_"))


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


def change_event(secret_id: str, arn: str | None = None) -> dict[str, Any]:
    """A CloudTrail PutSecretValue event naming ``secret_id`` (and ``arn`` as the response's ARN)."""
    detail: dict[str, Any] = {"eventName": "PutSecretValue", "requestParameters": {"secretId": secret_id}}
    if arn is not None:
        detail["responseElements"] = {"arn": arn}
    return {"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail", "detail": detail}


def log_lines_are_safe(caplog: pytest.LogCaptureFixture) -> bool:
    """Every captured log line is short and has no control character (no forged or flooded lines)."""
    messages = [record.getMessage() for record in caplog.records]
    return all(len(text) < 1000 and text.isprintable() for text in messages)


@pytest.mark.parametrize("name", CHANGE_FILES)
def test_every_change_event_in_the_corpus_invalidates_its_secret(
    name: str, client: Any, admin: Any, clock: FakeClock
) -> None:
    """Each documented event shape, raw or wrapped, drops the secret so the next read is current."""
    admin.create_secret(Name="prod/orders/db", SecretString="pw-1")
    cache = SecretCache(client, clock=clock)
    assert cache.get_secret_string("prod/orders/db") == "pw-1"
    rotate(admin, "prod/orders/db", "pw-2")
    document = load(name)
    ids = invalidate_from_event(cache, document)
    assert ids
    assert set(ids) <= {ARN, "prod/orders/db"}
    assert cache.get_secret_string("prod/orders/db") == "pw-2"
    assert invalidate_from_event(cache, json.dumps(document)) == ids  # as a JSON string too


def test_a_create_secret_event_drops_a_remembered_not_found(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A secret created (or created again after a deletion) is read at once, not after the
    not-found the cache remembers has backed off (up to a minute after repeated failed reads)."""
    cache = SecretCache(client, clock=clock)
    for _ in range(8):  # an application polling a secret that does not exist yet
        with pytest.raises(SecretNotFoundError):
            cache.get_secret_string("prod/orders/db")
        clock.advance(120)
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("prod/orders/db")  # remembered for 60 s now
    admin.create_secret(Name="prod/orders/db", SecretString="pw-1")
    document = load("cloudtrail_create_secret.json")
    assert invalidate_from_event(cache, document) == ["prod/orders/db", ARN]
    api_calls = calls.total
    assert cache.get_secret_string("prod/orders/db") == "pw-1"
    assert calls.total == api_calls + 1


@pytest.mark.parametrize("name", ["PutResourcePolicy", "DeleteResourcePolicy", "StartSecretVersionDelete"])
def test_policy_and_version_deletion_events_are_changes(name: str) -> None:
    """fleet.md: a resource policy granting or revoking access, and a version's deletion, name their secret."""
    event = change_event("prod/orders/db")
    event["detail"]["eventName"] = name
    assert secret_ids_from_event(event) == ["prod/orders/db"]


@pytest.mark.parametrize("name", ["ignored_get_secret_value.json", "ignored_other_source.json"])
def test_events_that_change_nothing_are_ignored(name: str) -> None:
    """A read (GetSecretValue) or another service's event invalidates nothing."""
    assert secret_ids_from_event(load(name)) == []


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        b"\xff\xfe",
        "[" * 100_000 + "]" * 100_000,  # valid JSON too deep for the parser: poison, not a crash
        '{"Records": [{"body": "' + "[" * 100_000 + '"}]}',
        [],
        42,
        None,
        {"Records": "not a list"},
        {"Records": [1, "x", {"body": "not json"}]},
        {"detail": "not an object"},
        {"Type": "Notification", "Message": "{broken"},
        {
            "source": "aws.secretsmanager",
            "detail": {"eventName": "PutSecretValue", "requestParameters": {"secretId": 5}},
        },
        {
            "Type": "Notification",
            "Message": json.dumps(
                {
                    "Type": "Notification",
                    "Message": json.dumps(
                        {
                            "Type": "Notification",
                            "Message": json.dumps(
                                {
                                    "Type": "Notification",
                                    "Message": json.dumps(
                                        {
                                            "Type": "Notification",
                                            "Message": json.dumps(load("native_secret_label_updated.json")),
                                        }
                                    ),
                                }
                            ),
                        }
                    ),
                }
            ),
        },
    ],
)
def test_malformed_events_never_raise(document: Any, aws: None) -> None:
    """Malformed, unknown or absurdly nested input returns [] without raising."""
    assert invalidate_from_event(SecretCache(boto3.client("secretsmanager", region_name=REGION)), document) == []


UNUSABLE_IDS = {
    "blank": " ",
    "whitespace control characters": "\t\r\n\x0b\x0c\x1c\x1d\x1e\x1f\x85",
    "2049 characters": "x" * 2049,
    "control characters": "prod/orders/db\x00",
    "200000 characters": "y" * 200_000,
}


@pytest.mark.parametrize("batch", [False, True], ids=["one event", "Records batch"])
@pytest.mark.parametrize("bad", list(UNUSABLE_IDS.values()), ids=list(UNUSABLE_IDS))
def test_unusable_secret_ids_are_skipped_and_the_others_applied(
    bad: str, batch: bool, client: Any, admin: Any, calls: Calls, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An id the cache refuses is skipped with a DEBUG log of its length; the event's other ids are invalidated."""
    admin.create_secret(Name="prod/orders/db", SecretString="pw-1")
    cache = SecretCache(client, clock=clock)
    assert cache.get_secret_string("prod/orders/db") == "pw-1"
    rotate(admin, "prod/orders/db", "pw-2")
    if batch:
        records = [change_event(bad), change_event("prod/orders/db")]
        event: Any = {"Records": [{"body": json.dumps(record)} for record in records]}
    else:
        event = change_event(bad, arn="prod/orders/db")
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        assert secret_ids_from_event(event) == ["prod/orders/db"]
        assert invalidate_from_event(cache, event) == ["prod/orders/db"]
        assert invalidate_from_event(cache, json.dumps(event)) == ["prod/orders/db"]
    assert cache.get_secret_string("prod/orders/db") == "pw-2"
    assert calls["GetSecretValue"] == 2
    assert f"a secret id of {len(bad)} characters" in caplog.text
    assert log_lines_are_safe(caplog)


def test_control_characters_in_an_id_never_reach_a_log_line_raw(
    client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A line break or escape sequence in an event's id is escaped in every log line, so it cannot forge one."""
    forged = "db\r\n2026-01-01 CRITICAL forged line \x1b[31m\x00"
    cache = SecretCache(client, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        ids = invalidate_from_event(cache, change_event(forged, arn="prod/orders/db"))
    assert ids == ["prod/orders/db"]  # no name or ARN has a control character: skipped
    assert "invalidated" in caplog.text
    assert log_lines_are_safe(caplog)


DEPTH = 100_000


def deep(key: str) -> dict[str, Any]:
    """A dict nested ``DEPTH`` levels deep through ``key`` (built without recursion)."""
    document: dict[str, Any] = {}
    for _ in range(DEPTH):
        document = {key: document}
    return document


def deep_json(key: str) -> str:
    """The JSON text of ``deep(key)``, written directly: json.dumps would itself recurse too deep."""
    return f'{{"{key}": ' * DEPTH + "{}" + "}" * DEPTH


def deep_records() -> dict[str, Any]:
    document: dict[str, Any] = {}
    for _ in range(DEPTH):
        document = {"Records": [{"body": document}]}
    return document


def deep_notifications() -> dict[str, Any]:
    document: dict[str, Any] = {}
    for _ in range(DEPTH):
        document = {"Type": "Notification", "Message": document}
    return document


DEEP: dict[str, Callable[[], Any]] = {
    "object": lambda: deep("a"),
    "object through detail": lambda: deep("detail"),
    "object as eventName": lambda: {"source": "aws.secretsmanager", "detail": {"eventName": deep("a")}},
    "object as secretId": lambda: {"detail": {"requestParameters": {"secretId": deep("a")}}},
    "JSON": lambda: deep_json("a"),
    "JSON bytes": lambda: deep_json("detail").encode(),
    "JSON as eventName": lambda: '{"detail": {"eventName": ' + deep_json("a") + "}}",
    "Records body object": lambda: {"Records": [{"body": deep("a")}]},
    "Records body JSON": lambda: {"Records": [{"body": deep_json("a")}]},
    "Records body eventName object": lambda: {"Records": [{"body": {"detail": {"eventName": deep("a")}}}]},
    "Records as JSON": lambda: '{"Records": [{"body": ' + json.dumps(deep_json("a")) + "}]}",
    "Records nested in Records": deep_records,
    "SNS Message object": lambda: {"Type": "Notification", "Message": deep("a")},
    "SNS Message JSON": lambda: {"Type": "Notification", "Message": deep_json("a")},
    "SNS in Records object": lambda: {"Records": [{"Sns": {"Message": deep("detail")}}]},
    "SNS in Records JSON": lambda: {"Records": [{"Sns": {"Message": deep_json("a")}}]},
    "SNS nested in SNS": deep_notifications,
}


@pytest.mark.parametrize("make", list(DEEP.values()), ids=list(DEEP))
def test_deeply_nested_input_never_raises(
    make: Callable[[], Any], client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A document nested 100,000 deep, as objects or JSON, bare or wrapped, invalidates nothing and never raises."""
    document = make()
    cache = SecretCache(client, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="secretcache"):  # a log line formatting the input would raise here
        assert invalidate_from_event(cache, document) == []
        assert secret_ids_from_event(document) == []
    assert log_lines_are_safe(caplog)


def test_an_event_naming_thousands_of_secrets_yields_at_most_max_ids(
    client: Any, admin: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """fleet.md: a poison message listing 3,000 ARNs invalidates and logs at most MAX_IDS of them."""
    arns = [f"{ARN[:-7]}-{index:06d}" for index in range(3000)]
    event = {"source": "aws.secretsmanager", "detail-type": "Secret Label Updated", "resources": arns, "detail": {}}
    cache = SecretCache(client, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        assert secret_ids_from_event(event) == arns[:MAX_IDS]
        assert invalidate_from_event(cache, event) == arns[:MAX_IDS]
    invalidated = [record for record in caplog.records if record.getMessage().startswith("invalidated ")]
    assert len(invalidated) == MAX_IDS
    assert f"ignoring {3000 - MAX_IDS} secret ids of an event beyond the first {MAX_IDS}" in caplog.text


def test_a_lambda_batch_record_packing_thousands_of_events_yields_at_most_max_ids(
    client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """fleet.md: one SQS message of a Lambda batch yields at most MAX_IDS ids; the other records all apply."""
    packed = [change_event(f"poison/{index:04d}") for index in range(1200)]
    poison = {"body": json.dumps({"Records": [{"body": json.dumps(event)} for event in packed]})}
    batch = {"Records": [poison, {"body": json.dumps(change_event("prod/orders/db"))}]}
    cache = SecretCache(client, clock=clock)
    expected = [f"poison/{index:04d}" for index in range(MAX_IDS)] + ["prod/orders/db"]
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        assert secret_ids_from_event(batch) == expected
        assert invalidate_from_event(cache, json.dumps(batch)) == expected
    invalidated = [record for record in caplog.records if record.getMessage().startswith("invalidated ")]
    assert len(invalidated) == MAX_IDS + 1
    assert f"ignoring {1200 - MAX_IDS} secret ids of a message beyond the first {MAX_IDS}" in caplog.text
