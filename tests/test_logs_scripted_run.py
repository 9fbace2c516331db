"""Structured logs of a scripted run: every record carries its facts as ``extra`` fields, never a secret value.

One scripted run provokes every log line the library has (reads, invalidations, change events,
the SQS listener, outages, background refreshes, the database factories) and checks every record
it emits; the asyncio factory is checked the same way. The record checks are in ``tests/logs.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError

from secretcache import AsyncSecretCache, SecretNotFoundError, SecretUnavailableError
from secretcache._listener import _Poller
from secretcache._worker import BackgroundPool
from secretcache.db import async_connection_factory, connection_factory
from secretcache.events import SqsInvalidationListener, invalidate_from_event
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock, quiescent, wait_until
from tests.logs import MARKER, RETRY, Records, assert_well_formed, expect, fields
from tests.test_cache import make_cache, rotate
from tests.test_events import change_event


@pytest.fixture
def records() -> Iterator[Records]:
    """Every record of the ``secretcache`` loggers, at DEBUG."""
    logger = logging.getLogger("secretcache")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclasses.dataclass(frozen=True)
class Login:
    """What the watch in the scripted run holds."""

    user: str
    password: str


class LoginRefused(Exception):
    """What a driver raises when the database refuses a password."""


@contextmanager
def sqs_answers(sqs: Any, operation: str, answer: Callable[[], Any]) -> Iterator[None]:
    """``operation`` on ``sqs`` returns ``answer()`` (parsed) or raises what it raises, without a call."""

    def short_circuit(**_: Any) -> tuple[AWSResponse, Any]:
        return AWSResponse("https://sqs.invalid", 200, HTTPHeaders(), None), answer()

    event = f"before-call.sqs.{operation}"
    sqs.meta.events.register(event, short_circuit)
    try:
        yield
    finally:
        sqs.meta.events.unregister(event, short_circuit)


def failed_entry(code: str) -> dict[str, Any]:
    return {"Successful": [], "Failed": [{"Id": "0", "SenderFault": True, "Code": code, "Message": "refused"}]}


def test_every_record_of_a_scripted_run_carries_its_facts_and_no_value(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, records: Records
) -> None:
    """Each log line of the library, provoked once, has its fields; no record holds a secret value."""
    login = json.dumps({"username": "app", "password": f"{MARKER}-db-1", "host": "db.invalid"})
    for name in ("app/key", "app/feed", "app/gone", "app/flaky", "app/poison"):
        admin.create_secret(Name=name, SecretString=f"{MARKER}-{name}-1")
    admin.create_secret(Name="app/db", SecretString=login)
    cache = make_cache(client, clock, retry=RETRY)

    def broken(_change: Any) -> None:
        raise RuntimeError("listener bug")

    cache.on_change(broken)

    # Reads, an invalidation, an outage served stale, a recovery with a change a listener fails on.
    for name in ("app/key", "app/feed", "app/gone", "app/flaky", "app/poison"):
        assert cache.get_secret_string(name) == f"{MARKER}-{name}-1"
    cache.invalidate("app/key")
    expect(records, "invalidated 1 cached entries of 'app/key'", operation="invalidate", secret_name="app/key")
    version = cache.get_secret("app/key").version_id
    outage = calls.fail_with("ThrottlingException")
    clock.advance(61)
    assert cache.get_secret_string("app/key") == f"{MARKER}-app/key-1"
    quiescent(cache)  # the reader got the value at the first failed attempt; the retries end behind it
    expect(
        records,
        "serving the cached value of secret 'app/key'",
        operation="GetSecretValue",
        secret_name="app/key",
        version_id=version,
        attempt=3,
        error_type="ThrottlingException",
    )
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("app/cold")
    expect(
        records,
        "fetching secret 'app/cold' failed and no cached value",
        operation="GetSecretValue",
        secret_name="app/cold",
        attempt=3,
        error_type="ThrottlingException",
    )
    outage()
    _, new_version = rotate(admin, "app/key", f"{MARKER}-app/key-2")
    clock.advance(1.0)
    assert cache.get_secret_string("app/key") == f"{MARKER}-app/key-2"
    expect(
        records,
        "secret 'app/key' is readable again",
        operation="GetSecretValue",
        secret_name="app/key",
        version_id=new_version,
    )
    expect(
        records,
        "failed for secret 'app/key'",
        operation="on_change",
        secret_name="app/key",
        version_id=new_version,
        error_type="RuntimeError",
    )

    # A definite error.
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("app/missing")
    expect(
        records,
        "fetching secret 'app/missing' failed",
        operation="GetSecretValue",
        secret_name="app/missing",
        attempt=1,
        error_type="ResourceNotFoundException",
    )

    # Change events: one record per secret invalidated, and every kind of event ignored.
    two = {"Records": [{"body": json.dumps(change_event(name))} for name in ("app/key", "app/feed")]}
    assert invalidate_from_event(cache, two) == ["app/key", "app/feed"]
    for name in ("app/key", "app/feed"):
        expect(records, f"invalidated {name!r} after a change event", operation="event", secret_name=name)
    ignored: list[Any] = [
        f"not json {MARKER}",
        ["not", "an", "object"],
        {"hello": "world"},
        {"source": "aws.secretsmanager", "detail": {"eventName": 7}},
        {"source": "aws.secretsmanager", "detail": {"eventName": "GetSecretValue"}},
        change_event("bad\x00id", arn="app/feed"),
    ]
    for event in ignored:
        invalidate_from_event(cache, event)
    expect(records, "not JSON", operation="event", error_type="JSONDecodeError")
    expect(records, "not a JSON object", operation="event")
    expect(records, "unknown shape", operation="event")
    expect(records, "eventName is a int", operation="event")
    expect(records, "it changes no secret value", operation="event")
    expect(records, "a secret id of 6 characters", operation="event", error_type="InvalidSecretRequestError")

    # The SQS listener: applied, unusable, poison, and refreshes failing transiently and for good.
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="secret-changes")["QueueUrl"]
    admin.delete_secret(SecretId="app/gone", ForceDeleteWithoutRecovery=True)

    def faults(operation: str, params: dict[str, Any]) -> None:
        batch = params.get("SecretIdList", [])
        if "app/flaky" in batch:
            raise ClientError(
                {
                    "Error": {"Code": "ServiceUnavailable", "Message": "down"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},  # type: ignore[typeddict-item]
                },
                operation,
            )
        if "app/poison" in batch:
            raise LookupError("an unexpected failure")

    remove_faults = calls.add_fault(faults)
    sent = {
        name: sqs.send_message(QueueUrl=url, MessageBody=json.dumps(change_event(name)))["MessageId"]
        for name in ("app/feed", "app/gone", "app/flaky", "app/poison")
    }
    useless = sqs.send_message(QueueUrl=url, MessageBody='{"hello": "world"}')["MessageId"]
    both = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(two))["MessageId"]
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, refresh=True)
    handled = 0
    while handled < 5 and listener.iterations < 10:  # flaky stays for redelivery
        handled += listener.poll_once()
    remove_faults()
    assert handled == 5
    expect(
        records,
        f"invalidated 'app/feed' after SQS message {sent['app/feed']}",
        operation="sqs.message",
        secret_name="app/feed",
    )
    for name in ("app/key", "app/feed"):  # a message naming two secrets: one record each
        expect(records, f"invalidated {name!r} after SQS message {both}", operation="sqs.message", secret_name=name)
    expect(records, f"SQS message {useless}: no Secrets Manager change event", operation="sqs.message")
    expect(
        records,
        f"refreshing after SQS message {sent['app/poison']} raised LookupError; the invalidation stands",
        operation="sqs.refresh",
        error_type="LookupError",
    )
    gone = f"refreshing 'app/gone' after SQS message {sent['app/gone']} failed"
    expect(records, gone, operation="sqs.refresh", secret_name="app/gone")
    # An error entry of a BatchGetSecretValue answer reads as GetSecretValue's error would.
    assert {getattr(record, "error_type", None) for record in records.about(gone)} == {"ResourceNotFoundException"}
    expect(
        records,
        f"refreshing 'app/flaky' after SQS message {sent['app/flaky']} failed",
        operation="sqs.refresh",
        secret_name="app/flaky",
        error_type="ServiceUnavailable",
    )

    def one_message() -> None:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(change_event("app/feed")))

    one_message()
    with sqs_answers(sqs, "DeleteMessageBatch", lambda: failed_entry("ReceiptHandleIsInvalid")):
        assert listener.poll_once() == 1
    expect(
        records,
        "could not delete an SQS message: ReceiptHandleIsInvalid",
        operation="sqs.delete",
        error_type="ReceiptHandleIsInvalid",
    )

    # Messages received while stopping: released, one refused, the call failing.
    stopping = threading.Event()
    stopping.set()
    one_message()
    assert listener._poll(stopping) == 0
    expect(records, "released 1 SQS messages received while stopping", operation="sqs.release")
    one_message()
    with sqs_answers(sqs, "ChangeMessageVisibilityBatch", lambda: failed_entry("bad code <html>")):
        listener._poll(stopping)
    expect(records, "could not release an SQS message received", operation="sqs.release", error_type="Unknown")
    one_message()

    def denied() -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ChangeMessageVisibilityBatch")

    with sqs_answers(sqs, "ChangeMessageVisibilityBatch", denied):
        listener._poll(stopping)
    expect(records, "could not release 1 SQS messages", operation="sqs.release", error_type="AccessDenied")

    # Polling failing twice in a row (no backoff wait: the poller stops after the second failure).
    poller = _Poller(listener._run, 1)
    failures = [0]

    def over_limit(**_: Any) -> None:
        failures[0] += 1
        if failures[0] == 2:
            poller.stop.set()
        raise ClientError({"Error": {"Code": "OverLimit", "Message": "slow down"}}, "ReceiveMessage")

    listener.backoff_initial = 0.0
    sqs.meta.events.register("before-call.sqs.ReceiveMessage", over_limit)
    listener._run(poller)
    sqs.meta.events.unregister("before-call.sqs.ReceiveMessage", over_limit)
    polls = records.about("polling SQS failed")
    assert [fields(record) for record in polls] == [
        {"operation": "sqs.poll", "attempt": attempt, "error_type": "OverLimit"} for attempt in (1, 2)
    ]

    # BatchGetSecretValue refused: one secret at a time instead.
    def refuse_batches(operation: str, _params: dict[str, Any]) -> None:
        if operation == "BatchGetSecretValue":
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)

    remove_refusal = calls.add_fault(refuse_batches)
    assert make_cache(client, clock, retry=RETRY).prefetch(["app/feed", "app/key"]) == {}
    remove_refusal()
    expect(records, "BatchGetSecretValue refused", operation="BatchGetSecretValue", error_type="AccessDeniedException")

    # A background refresh whose thread is interrupted, and a job failing (the store's own
    # refreshes hand an unexpected Exception to their waiters instead: fed to the pool directly).
    ahead = make_cache(client, clock, ttl=100.0, refresh_ahead=0.8, retry=RETRY)
    ahead.get_secret_string("app/feed")
    remove_error = calls.raise_error(SystemExit(3), times=1)  # type: ignore[arg-type]
    clock.advance(85)
    ahead.get_secret_string("app/feed")  # past the refresh point: refreshed in the background
    wait_until(lambda: bool(records.about("a background refresh thread was interrupted")))
    remove_error()
    ahead.close()
    expect(records, "a background refresh thread was interrupted", operation="refresh", error_type="SystemExit")
    # A bug in a background refresh (no reader waits to receive it) is logged by the fetch.
    buggy = make_cache(client, clock, ttl=100.0, refresh_ahead=0.8, retry=RETRY)
    buggy.get_secret_string("app/feed")
    remove_error = calls.raise_error(LookupError("a bug"), times=1)
    clock.advance(85)
    buggy.get_secret_string("app/feed")
    wait_until(lambda: bool(records.about("fetching secret 'app/feed' raised LookupError")))
    remove_error()
    buggy.close()
    expect(
        records,
        "fetching secret 'app/feed' raised LookupError",
        operation="GetSecretValue",
        secret_name="app/feed",
        attempt=1,
        error_type="LookupError",
    )
    pool = BackgroundPool(threads=1)

    def job() -> None:
        raise LookupError("a bug")

    assert pool.submit(job)
    wait_until(lambda: bool(records.about("a background refresh failed unexpectedly")))
    pool.close(timeout=WATCHDOG)
    expect(records, "a background refresh failed unexpectedly", operation="refresh", error_type="LookupError")

    # A database refusing every login, through a rotation in progress and the grace.
    admin.put_secret_value(
        SecretId="app/db", SecretString=login.replace("-db-1", "-db-2"), VersionStages=["AWSPENDING"]
    )

    def refuse(**_kwargs: Any) -> Any:
        raise LoginRefused("password authentication failed for user app")

    factory = connection_factory(
        cache,
        "app/db",
        refuse,
        mapping="pymysql",
        sleep=clock.sleep,
        rotation_grace=0.5,
        is_auth_error=lambda error: isinstance(error, LoginRefused),
    )
    with pytest.raises(LoginRefused):
        factory()
    expect(
        records,
        "login with secret 'app/db' failed; refreshing",
        operation="connect",
        secret_name="app/db",
        attempt=1,
        error_type="LoginRefused",
    )
    expect(
        records,
        "login with secret 'app/db' still fails; polling",
        operation="connect",
        secret_name="app/db",
        attempt=2,
        error_type="LoginRefused",
    )

    # A watch: a version its model refuses, then a valid one whose on_change raises.
    admin.create_secret(Name="app/watched", SecretString=json.dumps({"user": "app", "password": MARKER}))

    def broken(_login: Login) -> None:
        raise RuntimeError("on_change bug")

    watch = cache.watch("app/watched", Login, on_change=broken)
    refused = admin.put_secret_value(SecretId="app/watched", SecretString=json.dumps({"user": "app"}))["VersionId"]
    cache.refresh("app/watched")
    expect(
        records,
        "secret 'app/watched' version",
        operation="watch",
        secret_name="app/watched",
        version_id=refused,
        error_type="SecretFormatError",
    )
    valid = json.dumps({"user": "app", "password": MARKER + "-2"})
    kept = admin.put_secret_value(SecretId="app/watched", SecretString=valid)["VersionId"]
    cache.refresh("app/watched")
    expect(
        records,
        "watch callback",
        operation="watch",
        secret_name="app/watched",
        version_id=kept,
        error_type="RuntimeError",
    )
    watch.close()

    mine = [record for record in records.records if record.name.startswith("secretcache")]
    assert all(isinstance(getattr(record, "operation", None), str) for record in mine)  # on every record
    assert {
        "watch",
        "invalidate",
        "event",
        "sqs.message",
        "sqs.refresh",
        "sqs.delete",
        "sqs.release",
        "sqs.poll",
        "refresh",
        "connect",
    } <= {getattr(record, "operation", None) for record in mine}
    ids = ["app/key", "app/feed", "app/gone", "app/flaky", "app/poison", "app/db", "app/cold", "app/missing"]
    assert_well_formed(mine, [*ids, "app/watched"])
    cache.close()


async def test_the_async_factory_logs_the_same_facts(
    client: Any, admin: Any, clock: FakeClock, records: Records
) -> None:
    """The asyncio factory drives the same recovery: its log lines carry the same fields."""
    admin.create_secret(Name="app/db", SecretString=json.dumps({"username": "app", "password": f"{MARKER}-1"}))

    async def refuse(**_kwargs: Any) -> Any:
        raise LoginRefused("password authentication failed for user app")

    async with AsyncSecretCache(client, clock=clock) as cache:
        factory = async_connection_factory(
            cache,
            "app/db",
            refuse,
            mapping="asyncpg",
            sleep=clock.asleep,
            rotation_grace=0.5,
            is_auth_error=lambda e: isinstance(e, LoginRefused),
        )
        with pytest.raises(LoginRefused):
            await factory()
    expect(
        records,
        "login with secret 'app/db' failed; refreshing",
        operation="connect",
        secret_name="app/db",
        attempt=1,
        error_type="LoginRefused",
    )
    expect(records, "still fails; polling", operation="connect", secret_name="app/db", attempt=1)
    assert_well_formed(records.records, ["app/db"])
