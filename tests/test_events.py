"""Change events to invalidations: a corpus of event documents, and the SQS listener in moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from secretcache import SecretCache
from secretcache.events import SqsInvalidationListener, invalidate_from_event, secret_ids_from_event
from tests.conftest import REGION, Calls, FakeClock, wait_until
from tests.test_cache import rotate

CORPUS = Path(__file__).parent / "data" / "events"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/orders/db-AbCdEf"
CHANGE_FILES = sorted(path.name for path in CORPUS.glob("*.json") if not path.name.startswith("ignored_"))


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text())


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


@pytest.fixture
def queue(aws: None) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="secret-changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def queue_is_empty(sqs: Any, url: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


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
    listener._apply("{" + " " * 300_000 + "}")  # larger than SQS allows: not even parsed


def test_listener_thread_survives_sqs_errors_and_stops_promptly(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """Receive failures are retried with backoff; the event is applied once SQS answers; stop() is prompt."""
    sqs, url, _ = queue
    admin.create_secret(Name="prod/orders/db", SecretString="pw-1")
    failures = [3]

    def fail_receive(**_: Any) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "ReceiveMessage")

    sqs.meta.events.register("before-call.sqs.ReceiveMessage", fail_receive)
    cache = SecretCache(client, ttl=3600, clock=clock)
    cache.get_secret_string("prod/orders/db")
    rotate(admin, "prod/orders/db", "pw-2")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(load("service_rotation_succeeded.json")))
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=1)
    listener.backoff_initial = 0.01
    with listener:
        assert listener.running
        wait_until(lambda: cache.stats().size == 0)  # the rotation event invalidated the entry
    assert not listener.running
    assert failures == [0]
    assert listener.iterations >= 4
    assert cache.get_secret_string("prod/orders/db") == "pw-2"
    assert "stopped" in repr(listener)


def test_listener_settings_and_fork(aws: None, queue: tuple[Any, str, str]) -> None:
    """Bad settings are refused; after a fork the listener is stopped and can start again."""
    sqs, url, _ = queue
    cache = SecretCache(boto3.client("secretsmanager", region_name=REGION))
    with pytest.raises(ValueError, match="wait_time_seconds"):
        SqsInvalidationListener(cache, url, wait_time_seconds=30)
    with pytest.raises(ValueError, match="max_messages"):
        SqsInvalidationListener(cache, url, max_messages=0)
    with pytest.raises(ValueError, match="queue_url"):
        SqsInvalidationListener(cache, "")
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0)
    listener.start()
    listener._after_fork_in_child()  # what os.register_at_fork runs in a child
    assert not listener.running
    assert listener.stop()
