"""The SQS listener in moto: per-message handling, the caches served, stop/start, errors, fork."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from secretcache import SecretCache, SecretNotFoundError
from secretcache.events import SqsInvalidationListener
from tests.conftest import FAST_RETRY, REGION, Calls, FakeClock, _reset, wait_until
from tests.test_cache import rotate
from tests.test_events import ARN, change_event, load

MARKER = "pk_live_example-listener-marker"


@pytest.fixture
def queue(aws: None) -> tuple[Any, str, str]:
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


class HeldReceive:
    """Holds the first ``ReceiveMessage`` of a real client in its ``before-call`` hook until released.

    The held thread is, for the listener, inside a receive that has not returned: like a long
    poll. Every thread that calls ``ReceiveMessage`` is recorded.
    """

    def __init__(self, sqs: Any) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        sqs.meta.events.register("before-call.sqs.ReceiveMessage", self._hold)

    @property
    def held(self) -> threading.Thread:
        return self.threads[0]

    def _hold(self, **_: Any) -> None:
        with self._lock:
            first = not self.threads
            if threading.current_thread() not in self.threads:
                self.threads.append(threading.current_thread())
        if first:
            self.entered.set()
            if not self.gate.wait(30):
                raise AssertionError("the held receive was never released")

    def finish(self) -> None:
        """Release the held receive and wait (bounded) for every recorded thread to end."""
        self.gate.set()
        for thread in list(self.threads):
            thread.join(30)
            assert not thread.is_alive(), "a stopped listener thread did not end"


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
    """Messages that raise or cannot be used are logged by id and deleted; the rest of the batch is applied."""
    sqs, url, _ = queue
    cache = SecretCache(client, ttl=3600, retry=FAST_RETRY, clock=clock)
    warm(admin, cache, "first", "poison", "last")

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
    assert f"deleting SQS message {poison}: applying it raised Boom" in caplog.text
    assert all(message_id in caplog.text for message_id in sent)
    assert MARKER not in caplog.text


def test_a_transient_refresh_failure_leaves_the_message_for_redelivery(
    client: Any, admin: Any, calls: Calls, aws: None, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A message whose refresh fails transiently is not deleted; its batch's others are; redelivery applies it."""
    sqs = boto3.client("sqs", region_name=REGION)
    # Visibility 0: a message left undeleted is visible again at once, as after a visibility timeout.
    url = sqs.create_queue(QueueName="secret-changes", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    cache = SecretCache(client, ttl=3600, retry=FAST_RETRY, clock=clock)
    warm(admin, cache, "flaky", "steady")

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
    cache = SecretCache(client, ttl=3600, retry=FAST_RETRY, clock=clock)
    warm(admin, cache, "gone")
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


def test_stop_returns_while_a_receive_is_blocked_and_start_polls_at_once(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """stop() returns False while the thread's receive is still blocked; start() runs a fresh thread at once."""
    sqs, url, _ = queue
    cache = SecretCache(client, ttl=3600, clock=clock)
    warm(admin, cache, "a")
    receives = HeldReceive(sqs)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=1)
    try:
        listener.start()
        assert receives.entered.wait(10)
        assert listener.stop() is False  # it did not wait for the receive
        assert receives.held.is_alive()
        assert not listener.running
        listener.start()
        assert listener.running
        send(sqs, url, change_event("a"))
        wait_until(lambda: queue_is_empty(sqs, url) and cache.stats().size == 0)  # the new thread applied it
        assert len(receives.threads) == 2
        assert receives.held.is_alive()  # still held: the new thread did not wait for it
        assert "running" in repr(listener)
    finally:
        listener.stop()
        receives.finish()
    assert cache.get_secret_string("a") == "a-2"


@pytest.mark.parametrize("release_fails", [False, True])
def test_messages_received_after_stop_are_released_not_applied_nor_deleted(
    release_fails: bool, client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A stopped thread whose receive returns a message neither applies nor deletes it, and makes it visible again."""
    sqs, url, _ = queue
    cache = SecretCache(client, ttl=3600, clock=clock)
    warm(admin, cache, "a")
    receives = HeldReceive(sqs)
    if release_fails:

        def refuse(**_: Any) -> None:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ChangeMessageVisibilityBatch")

        sqs.meta.events.register("before-call.sqs.ChangeMessageVisibilityBatch", refuse)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=1)
    with caplog.at_level(logging.WARNING, logger="secretcache.events"):
        listener.start()
        assert receives.entered.wait(10)
        assert listener.stop() is False
        send(sqs, url, change_event("a"))
        receives.finish()  # the stopped thread's receive now returns the message
    assert cache.stats().size == 1  # not applied
    assert cache.get_secret_string("a") == "a-1"
    if release_fails:  # best-effort: logged, and the message returns after its visibility timeout
        assert queue_counts(sqs, url) == (0, 1)
        assert "could not release 1 SQS messages received while stopping (ClientError)" in caplog.text
        return
    assert queue_counts(sqs, url) == (1, 0)  # not deleted, and visible again at once
    with listener:
        wait_until(lambda: queue_is_empty(sqs, url) and cache.stats().size == 0)  # the next thread applies it
    assert cache.get_secret_string("a") == "a-2"


def test_stop_from_the_polling_thread_returns_without_deadlock(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """stop() called by code running on the polling thread (an on_change listener) returns False and the thread ends."""
    sqs, url, _ = queue
    cache = SecretCache(client, ttl=3600, clock=clock)
    warm(admin, cache, "a")
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, refresh=True)
    results: list[bool] = []
    threads: list[threading.Thread] = []

    def stop_listener(_: Any) -> None:
        threads.append(threading.current_thread())
        results.append(listener.stop())

    cache.on_change(stop_listener)
    send(sqs, url, change_event("a"))
    listener.start()
    wait_until(lambda: bool(results))
    threads[0].join(10)
    assert results == [False]
    assert not threads[0].is_alive()
    assert not listener.running
    assert queue_is_empty(sqs, url)  # the message it was applying was finished and deleted
    assert cache.get_secret_string("a") == "a-2"


@pytest.fixture
def http_sqs(moto_server: str) -> Iterator[tuple[Any, Any]]:
    """SQS and Secrets Manager clients of moto's HTTP server (long polls are real requests)."""
    _reset(moto_server)
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30)
    yield (
        boto3.client("sqs", region_name=REGION, endpoint_url=moto_server, config=config),
        boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server, config=config),
    )
    _reset(moto_server)


def test_stop_during_a_real_long_poll_over_http(http_sqs: tuple[Any, Any], clock: FakeClock) -> None:
    """With a 20 s long poll on the wire, stop() does not wait for it; a fresh thread applies the next event."""
    sqs, sm = http_sqs
    url = sqs.create_queue(QueueName="secret-changes")["QueueUrl"]
    cache = SecretCache(sm, ttl=3600, clock=clock)
    warm(sm, cache, "a")
    polling = threading.Event()
    pollers: set[threading.Thread] = set()

    def on_the_wire(**_: Any) -> None:
        pollers.add(threading.current_thread())
        polling.set()

    sqs.meta.events.register("before-send.sqs.ReceiveMessage", on_the_wire)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=20)
    listener.start()
    assert polling.wait(10)  # the request is sent; the server holds it while the queue is empty
    assert listener.stop() is False
    listener.start()
    assert listener.running
    send(sqs, url, change_event("a"))  # whichever thread receives it, only the running one applies it
    wait_until(lambda: queue_is_empty(sqs, url) and cache.stats().size == 0)
    listener.stop()
    wake = send(sqs, url, {"wake": "up"})  # returns the stopped threads' long polls: each releases it
    for thread in pollers:
        thread.join(30)
        assert not thread.is_alive()
    assert len(pollers) == 2
    assert queue_counts(sqs, url) == (1, 0)  # received after stop: released, not deleted
    received = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [message["MessageId"] for message in received] == [wake]
    assert cache.get_secret_string("a") == "a-2"


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


def test_listener_settings_and_fork(client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock) -> None:
    """Bad settings are refused; after a fork the listener is stopped, and start() there polls and applies."""
    sqs, url, _ = queue
    cache = SecretCache(client, ttl=3600, clock=clock)
    with pytest.raises(ValueError, match="wait_time_seconds"):
        SqsInvalidationListener(cache, url, wait_time_seconds=30)
    with pytest.raises(ValueError, match="max_messages"):
        SqsInvalidationListener(cache, url, max_messages=0)
    with pytest.raises(ValueError, match="queue_url"):
        SqsInvalidationListener(cache, "")
    warm(admin, cache, "a")
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=1)
    listener.start()
    parent = listener._poller
    assert parent is not None
    held = listener._lock
    held.acquire()  # another thread held the lock when the process forked
    try:
        listener._after_fork_in_child()  # what os.register_at_fork runs in a child
        assert not listener.running
        assert listener.stop()
        listener.start()  # with a fresh lock: the held one is not needed
        assert listener.running
        assert listener._poller is not parent
    finally:
        held.release()
        parent.stop.set()  # in a real child the parent's thread does not exist; end it here
    try:
        parent.thread.join(10)
        assert not parent.thread.is_alive()
        send(sqs, url, change_event("a"))
        wait_until(lambda: queue_is_empty(sqs, url) and cache.stats().size == 0)  # the child's thread applies it
    finally:
        listener.stop()
    assert cache.get_secret_string("a") == "a-2"
