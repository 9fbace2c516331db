"""The SQS listener's thread in moto: stop and start around a blocked receive, SQS errors, fork.

Also a real long poll over HTTP (moto's server), and the listener's settings.

The queue helpers are in ``tests/listener.py``.
"""

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

from secretcache import SecretCache
from secretcache.events import SqsInvalidationListener
from tests.conftest import REGION, FakeClock, _reset, wait_until
from tests.leaks import record_leaks
from tests.listener import queue as queue  # a fixture
from tests.listener import queue_counts, queue_is_empty, send, warm, warmed
from tests.test_cache import rotate
from tests.test_events import change_event, load

MARKER = "pk_live_example-sqs-error-marker"  # in the SQS errors' messages: must reach no record


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


def test_stop_returns_while_a_receive_is_blocked_and_start_polls_at_once(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """stop() returns False while the thread's receive is still blocked; start() runs a fresh thread at once."""
    sqs, url, _ = queue
    cache = warmed(client, admin, clock, "a")
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
    cache = warmed(client, admin, clock, "a")
    receives = HeldReceive(sqs)
    if release_fails:

        def refuse(**_: Any) -> None:
            error = {"Code": "AccessDenied", "Message": f"no, quoting {MARKER}"}
            raise ClientError({"Error": error}, "ChangeMessageVisibilityBatch")

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
        assert record_leaks(caplog.records, MARKER) == []
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
    cache = warmed(client, admin, clock, "a")
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


def rotation_behind_failed_receives(
    queue: tuple[Any, str, str], client: Any, admin: Any, clock: FakeClock, failures: int
) -> tuple[SecretCache, list[int]]:
    """A cache holding pw-1 of a secret rotated to pw-2 since, whose rotation event waits in the
    queue behind ``failures`` receives that fail; the count of failures still to come."""
    sqs, url, _ = queue
    admin.create_secret(Name="prod/orders/db", SecretString="pw-1")
    left = [failures]

    def fail_receive(**_: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            error = {"Code": "ServiceUnavailable", "Message": f"down, quoting {MARKER}"}
            raise ClientError({"Error": error}, "ReceiveMessage")

    sqs.meta.events.register("before-call.sqs.ReceiveMessage", fail_receive)
    cache = SecretCache(client, ttl=3600, clock=clock)
    cache.get_secret_string("prod/orders/db")
    rotate(admin, "prod/orders/db", "pw-2")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(load("service_rotation_succeeded.json")))
    return cache, left


def test_listener_thread_survives_sqs_errors_and_stops_promptly(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Receive failures are retried with backoff (logged without the error's message); the event is
    applied once SQS answers; stop() is prompt."""
    caplog.set_level(logging.DEBUG, logger="secretcache")
    sqs, url, _ = queue
    cache, failures = rotation_behind_failed_receives(queue, client, admin, clock, 3)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=1)
    listener.backoff_initial = 0.01
    with listener:
        assert listener.running
        wait_until(lambda: cache.stats().size == 0)  # the rotation event invalidated the entry
    assert not listener.running
    assert failures == [0]
    assert listener.iterations >= 4
    failed = [record for record in caplog.records if record.getMessage().startswith("polling SQS failed (ClientError)")]
    assert len(failed) == 3
    assert record_leaks(caplog.records, MARKER) == []
    assert cache.get_secret_string("prod/orders/db") == "pw-2"
    assert "stopped" in repr(listener)


def test_listener_thread_outlives_a_system_exit_raised_while_it_applies_a_message(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An ``on_change`` listener raising ``SystemExit`` on the polling thread (its refresh) is logged
    and the thread polls on: the next event is applied (it ended the thread silently, for good)."""
    sqs, url, _ = queue
    cache = warmed(client, admin, clock, "prod/a", "prod/b")
    raised = threading.Event()
    seen: list[str] = []

    def exits_once(change: Any) -> None:
        if not raised.is_set():
            raised.set()
            raise SystemExit("from an on_change listener")
        seen.append(change.name)

    cache.on_change(exits_once)
    send(sqs, url, change_event("prod/a"))
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=0, refresh=True)
    listener.backoff_initial = 0.01
    with listener:
        wait_until(raised.is_set)
        send(sqs, url, change_event("prod/b"))
        wait_until(lambda: "prod/b" in seen or not listener.running)
        assert listener.running
    assert cache.get_secret_string("prod/b") == "prod/b-2"
    assert any("polling SQS failed (SystemExit)" in record.getMessage() for record in caplog.records)


def test_listener_thread_outlives_a_thousand_failures_in_a_row(
    client: Any, admin: Any, queue: tuple[Any, str, str], clock: FakeClock
) -> None:
    """Its backoff stops doubling: past 1,024 failures (8.5 h at the default backoff) it does not
    overflow and kill the thread, and the first event after SQS answers again is applied."""
    sqs, url, _ = queue
    cache, failures = rotation_behind_failed_receives(queue, client, admin, clock, 1100)
    listener = SqsInvalidationListener(cache, url, client=sqs, wait_time_seconds=1)
    listener.backoff_initial = listener.backoff_max = 0.0  # no waiting: the delays are still computed
    logging.getLogger("secretcache.events").disabled = True  # 1,100 warnings
    try:
        with listener:
            wait_until(lambda: cache.stats().size == 0 or not listener.running)
            assert listener.running
    finally:
        logging.getLogger("secretcache.events").disabled = False
    assert failures == [0]
    assert cache.get_secret_string("prod/orders/db") == "pw-2"


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
