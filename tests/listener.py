"""Set-up shared by the SQS listener tests (``test_listener_*.py``): a queue in moto and its helpers."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from secretcache import SecretCache
from tests.conftest import REGION, FakeClock


@pytest.fixture
def queue(aws: None) -> tuple[Any, str, str]:
    """An SQS queue in moto: its client, URL and ARN."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="secret-changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight): messages a receive would get now, and received but not deleted ones."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def queue_is_empty(sqs: Any, url: str) -> bool:
    return queue_counts(sqs, url) == (0, 0)


def send(sqs: Any, url: str, body: Any) -> str:
    """Send ``body`` (JSON-encoded unless a str); return the message id."""
    text = body if isinstance(body, str) else json.dumps(body)
    message_id: str = sqs.send_message(QueueUrl=url, MessageBody=text)["MessageId"]
    return message_id


def warm(admin: Any, cache: SecretCache, *names: str) -> None:
    """Create each secret with value ``{name}-1``, read it into ``cache``, then change it to ``{name}-2``.

    A plain PutSecretValue: moto's BatchGetSecretValue (``refresh=True``) misses AWSCURRENT moved by
    UpdateSecretVersionStage.
    """
    for name in names:
        admin.create_secret(Name=name, SecretString=f"{name}-1")
        assert cache.get_secret_string(name) == f"{name}-1"
        admin.put_secret_value(SecretId=name, SecretString=f"{name}-2")


def warmed(client: Any, admin: Any, clock: FakeClock, *names: str, **options: Any) -> SecretCache:
    """A cache over ``client``, TTL one hour, on ``clock`` (and ``options``), with each of ``names`` :func:`warm`."""
    cache = SecretCache(client, ttl=3600, clock=clock, **options)
    warm(admin, cache, *names)
    return cache
