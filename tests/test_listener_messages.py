"""The SQS listener in moto, message by message: the pipelines that feed it, and the caches it serves.

Bad and poison messages, and refresh failures, are handled per message.

Each test drives the listener one iteration at a time (``poll_once``); the queue helpers are in
``tests/listener.py``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from secretcache import SecretCache, SecretNotFoundError
from secretcache.events import MAX_IDS, SqsInvalidationListener
from tests.conftest import FAST_RETRY, REGION, Calls, FakeClock
from tests.leaks import record_leaks
from tests.listener import queue as queue  # a fixture
from tests.listener import queue_counts, queue_is_empty, send, warm, warmed
from tests.test_cache import rotate
from tests.test_events import ARN, change_event, load

MARKER = "pk_live_example-listener-marker"


def test_eventbridge_rule_to_sqs_pipeline(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """An event put on the bus reaches the queue through a rule; one listener iteration applies it."""
    sqs, url, queue_arn = queue
    arn = admin.create_secret(Name="prod/orders/db", SecretString="pw-1")["ARN"]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="secret-changes", EventPattern=json.dumps({"source": ["aws.secretsmanager"]}))
    events.put_targets(Rule="secret-changes", Targets=[{"Id": "queue", "Arn": queue_arn}])
    cache = SecretCache(client, ttl=3600, clock=clock)
    other = SecretCache(client, ttl=3600, clock=clock)
    assert cache.get_secret_string("prod/orders/db") == other.get_secret_string("prod/orders/db") == "pw-1"
    _, new_version = rotate(admin, "prod/orders/db", "pw-2")
    detail = {"name": "prod/orders/db", "labelUpdated": "AWSCURRENT", "versionId": new_version}
    events.put_events(Entries=[{"Source": "aws.secretsmanager", "DetailType": "Secret Label Updated",
                                "Detail": json.dumps(detail), "Resources": [arn]}])  # fmt: skip
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0)
    listener.add(other)
    assert listener.poll_once() == 1
    assert listener.iterations == 1
    assert cache.get_secret_string("prod/orders/db") == other.get_secret_string("prod/orders/db") == "pw-2"
    assert queue_is_empty(sqs, url)


@pytest.mark.parametrize("raw", [True, False])
def test_sns_to_sqs_raw_and_wrapped(
    raw: bool, client: Any, admin: Any, calls: Calls, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """Events published to SNS reach the listener with raw and non-raw delivery; refresh=True prefetches."""
    sqs, url, queue_arn = queue
    arn = admin.create_secret(Name="prod/orders/db", SecretString="pw-1")["ARN"]
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="secret-changes")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "true" if raw else "false"})  # fmt: skip
    cache = SecretCache(client, ttl=3600, clock=clock)
    cache.get_secret_string("prod/orders/db")
    # moto's BatchGetSecretValue (which takes no stage) misses AWSCURRENT moved by
    # UpdateSecretVersionStage, so this rotation is a plain PutSecretValue.
    admin.put_secret_value(SecretId="prod/orders/db", SecretString="pw-2")
    # The corpus event, about this run's secret (its ARN suffix differs from the corpus's).
    event = json.loads(json.dumps(load("cloudtrail_update_secret_version_stage.json")).replace(ARN, arn))
    sns.publish(TopicArn=topic, Message=json.dumps(event))
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, refresh=True)
    assert listener.poll_once() == 1
    assert calls["BatchGetSecretValue"] == 1  # prefetched right after the invalidation
    assert cache.get_secret_string("prod/orders/db") == "pw-2"
    assert calls.total == 2


def test_bad_messages_are_skipped_and_deleted(aws: None, queue: tuple[Any, str, str]) -> None:
    """Not JSON, wrong shape and oversized bodies are dropped from the queue, not retried."""
    sqs, url, _ = queue
    for body in ["not json", '{"hello": "world"}', json.dumps({"padding": "x" * 200_000})]:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    cache = SecretCache(boto3.client("secretsmanager", region_name=REGION))
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0)
    handled = 0
    while handled < 3 and listener.iterations < 5:
        handled += listener.poll_once()
    assert handled == 3
    assert queue_is_empty(sqs, url)
    assert listener._apply("m-1", "{" + " " * 300_000 + "}") is True  # larger than SQS allows: not even parsed


def test_a_poison_message_does_not_hold_back_its_batch(
    client: Any, admin: Any, calls: Calls, queue: tuple[Any, str, str], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Messages that raise or cannot be used are logged by id and deleted; the rest of the batch is applied.

    No record holds what the bodies held (an event name, a field, text that is not JSON) or the
    raised error's message: message, fields, exception chain, formatted line.
    """
    sqs, url, _ = queue
    cache = warmed(client, admin, clock, "first", "poison", "last", retry=FAST_RETRY)

    class Boom(Exception):
        pass

    def explode(operation: str, params: dict[str, Any]) -> None:
        if "poison" in params.get("SecretIdList", []):
            raise Boom(f"unexpected failure carrying {MARKER}")

    calls.add_fault(explode)
    sent = [
        send(sqs, url, change_event("first")),
        poison := send(sqs, url, change_event("poison")),  # its refresh raises an unexpected error
        send(sqs, url, change_event(" ", arn=MARKER + "x" * 2048)),  # no usable id
        send(sqs, url, {"source": "aws.secretsmanager", "detail": {"eventName": {"a": MARKER}}}),
        send(sqs, url, {"source": "aws.secretsmanager", "detail": {"eventName": MARKER}}),
        send(sqs, url, {"source": "aws.secretsmanager", "detail": {"eventName": f"Get{MARKER}"}}),
        send(sqs, url, {"detail": {"eventName": "PutSecretValue", "requestParameters": {"secretString": MARKER}}}),
        send(sqs, url, {"Records": [{"body": f"not json {MARKER}"}], "detail-type": MARKER}),
        send(sqs, url, f"not json {MARKER}"),
        send(sqs, url, change_event("last")),
    ]
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, refresh=True)
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        assert listener.poll_once() == len(sent)
    assert queue_is_empty(sqs, url)
    assert calls["BatchGetSecretValue"] == 3  # first, poison (raised), last
    assert cache.get_secret_string("first") == "first-2"
    assert cache.get_secret_string("last") == "last-2"
    assert f"refreshing after SQS message {poison} raised Boom; the invalidation stands" in caplog.text
    assert all(message_id in caplog.text for message_id in sent)
    assert record_leaks(caplog.records, MARKER) == []


def test_a_message_naming_thousands_of_secrets_applies_at_most_max_ids(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """fleet.md: one message yields at most MAX_IDS ids, however it packs them (a ``Records`` list in its body).

    An SQS message is one event; a poison one under 256 KiB packing 1,200 change events used to
    invalidate, and log at INFO, all 1,200.
    """
    sqs, url, _ = queue
    cache = warmed(client, admin, clock, "s0")
    records = [{"body": json.dumps(change_event(f"s{index}"), separators=(",", ":"))} for index in range(1200)]
    body = json.dumps({"Records": records}, separators=(",", ":"))
    assert len(body) < 256 * 1024
    message_id = send(sqs, url, body)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0)
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        assert listener.poll_once() == 1
    invalidated = [record for record in caplog.records if "after SQS message" in record.getMessage()]
    assert len(invalidated) == MAX_IDS
    assert f"SQS message {message_id}: ignoring {1200 - MAX_IDS} secret ids beyond the first {MAX_IDS}" in caplog.text
    assert cache.get_secret_string("s0") == "s0-2"  # the first ids are applied
    assert queue_is_empty(sqs, url)


def test_a_transient_refresh_failure_leaves_the_message_for_redelivery(
    client: Any, admin: Any, calls: Calls, aws: None, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A message whose refresh fails transiently is not deleted; its batch's others are; redelivery applies it."""
    sqs = boto3.client("sqs", region_name=REGION)
    # Visibility 0: a message left undeleted is visible again at once, as after a visibility timeout.
    url = sqs.create_queue(QueueName="secret-changes", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    cache = warmed(client, admin, clock, "flaky", "steady", retry=FAST_RETRY)

    def unavailable(operation: str, params: dict[str, Any]) -> None:
        if "flaky" in params.get("SecretIdList", []):
            error = {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}
            raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)  # type: ignore[arg-type]

    remove_fault = calls.add_fault(unavailable)
    flaky = send(sqs, url, change_event("flaky"))
    send(sqs, url, change_event("steady"))
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, max_messages=2, refresh=True)
    with caplog.at_level(logging.WARNING, logger="secretcache.events"):
        assert listener.poll_once() == 1  # steady applied and deleted; flaky left
    assert sum(queue_counts(sqs, url)) == 1
    assert f"after SQS message {flaky} failed (SecretUnavailableError); leaving the message" in caplog.text
    assert cache.get_secret_string("steady") == "steady-2"
    remove_fault()
    assert listener.poll_once() == 1  # redelivered, applied, deleted
    assert queue_is_empty(sqs, url)
    api_calls = calls.total
    assert cache.get_secret_string("flaky") == "flaky-2"
    assert calls.total == api_calls  # prefetched by the redelivered message


def test_a_definite_refresh_error_deletes_the_message(
    client: Any, admin: Any, calls: Calls, queue: tuple[Any, str, str], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """After a DeleteSecret event the refresh finds no secret: the invalidation stands and the message is deleted."""
    sqs, url, _ = queue
    cache = warmed(client, admin, clock, "gone", retry=FAST_RETRY)
    admin.delete_secret(SecretId="gone", ForceDeleteWithoutRecovery=True)
    event = change_event("gone")
    event["detail"]["eventName"] = "DeleteSecret"
    message_id = send(sqs, url, event)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, refresh=True)
    with caplog.at_level(logging.INFO, logger="secretcache.events"):
        assert listener.poll_once() == 1
    assert queue_is_empty(sqs, url)
    assert f"after SQS message {message_id} failed (SecretNotFoundError); the invalidation stands" in caplog.text
    api_calls = calls.total
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("gone")
    assert calls.total == api_calls  # the error the refresh found is remembered, like a read's


@pytest.mark.parametrize("refresh", [True, False])
def test_a_closed_cache_is_dropped_once_and_the_others_still_served(
    refresh: bool, client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A closed cache stops being served (logged once at INFO); the other caches still get every event."""
    sqs, url, _ = queue
    closed = SecretCache(client, ttl=3600, clock=clock)
    served = SecretCache(client, ttl=3600, clock=clock)
    warm(admin, served, "a", "b")
    listener = SqsInvalidationListener(closed, url, client=sqs, wait_time_seconds=0, refresh=refresh)
    listener.add(served)
    closed.close()
    send(sqs, url, change_event("a"))
    send(sqs, url, change_event("b"))
    with caplog.at_level(logging.INFO, logger="secretcache.events"):
        assert listener.poll_once() + listener.poll_once() == 2
    assert queue_is_empty(sqs, url)
    assert served.get_secret_string("a") == "a-2"
    assert served.get_secret_string("b") == "b-2"
    assert caplog.text.count("a closed SecretCache was dropped") == 1
    assert "caches=1" in repr(listener)
    listener.remove(closed)  # already dropped: a no-op


def test_a_cache_whose_refresh_raises_holds_back_none_of_the_others(
    admin: Any, queue: tuple[Any, str, str], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``refresh=True``, an unexpected error in one cache's refresh (a bug, a thread refused)
    is logged for it alone: every cache is invalidated, and the others are refreshed."""
    sqs, url, _ = queue
    buggy_client, client = (boto3.client("secretsmanager", region_name=REGION) for _ in range(2))

    def bug(**_: Any) -> None:
        raise RuntimeError("can't start new thread")

    buggy_client.meta.events.register("before-call.secretsmanager.BatchGetSecretValue", bug)
    buggy = SecretCache(buggy_client, ttl=3600, clock=clock)
    served = SecretCache(client, ttl=3600, clock=clock)
    admin.create_secret(Name="a", SecretString="a-1")
    assert buggy.get_secret_string("a") == served.get_secret_string("a") == "a-1"
    admin.put_secret_value(SecretId="a", SecretString="a-2")
    listener = SqsInvalidationListener(buggy, url, client=sqs, wait_time_seconds=0, refresh=True)
    listener.add(served)
    send(sqs, url, change_event("a"))
    calls = Calls(client)
    with caplog.at_level(logging.WARNING, logger="secretcache.events"):
        assert listener.poll_once() == 1
    assert queue_is_empty(sqs, url)
    assert calls.counts == {"BatchGetSecretValue": 1}  # the other cache was refreshed
    assert served.get_secret_string("a") == "a-2"
    assert calls.total == 1
    assert "raised RuntimeError; the invalidation stands" in caplog.text
    buggy_client.meta.events.unregister("before-call.secretsmanager.BatchGetSecretValue", bug)
    assert buggy.get_secret_string("a") == "a-2"  # invalidated all the same


def test_remove_stops_invalidating_a_cache_and_ignores_one_not_served(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """remove() stops events reaching a cache; removing one never added, or twice, does nothing."""
    sqs, url, _ = queue
    cache = SecretCache(client, ttl=3600, clock=clock)
    other = SecretCache(client, ttl=3600, clock=clock)
    warm(admin, cache, "a")
    assert other.get_secret_string("a") == "a-2"  # read after the change: only a stale cache would differ
    admin.put_secret_value(SecretId="a", SecretString="a-3")
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0)
    listener.add(other)
    listener.remove(other)
    listener.remove(other)
    listener.remove(SecretCache(client))
    assert "caches=1" in repr(listener)
    send(sqs, url, change_event("a"))
    assert listener.poll_once() == 1
    assert cache.get_secret_string("a") == "a-3"
    assert other.get_secret_string("a") == "a-2"  # not invalidated: still its cached value
