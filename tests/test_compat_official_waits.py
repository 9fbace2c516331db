"""The adapter's shared ``DescribeSecret``: its waiters are bounded and woken on every path.

Readers meeting one ``ResourceNotFoundException`` share one ``DescribeSecret``; the others wait for
the reader that asks. That wait is bounded as the cache's own waits are (``Store.wait_bound``), a
thread never waits for a call it is making itself further up its stack, and an interrupted asker
still wakes its waiters. A hang fails these tests (watchdogs, daemon threads), never stalls them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.compat_official import build
from tests.compat_official import official_sleeps as official_sleeps  # autouse: the original never sleeps
from tests.conftest import WATCHDOG, Calls, inside, wait_until
from tests.watchdog import finished, spawn, within_watchdog

pytestmark = pytest.mark.timeout(90)

SECRET = "s3cr3t-T0KEN-value"


def hold_describe(calls: Calls, release: threading.Event) -> None:
    """Hold every ``DescribeSecret`` until ``release`` is set (a stalled connection)."""
    calls.add_fault(lambda operation, _params: operation == "DescribeSecret" and release.wait(WATCHDOG))


def test_a_reader_waiting_for_a_describe_that_hangs_gives_up_after_the_wait_bound(
    admin: Any, client: Any, calls: Calls
) -> None:
    """A reader waits for another's DescribeSecret at most the cache's wait bound; the GetSecretValue error stands."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = build(adapter, client)
    cache.cache._store.wait_bound = 0.05  # the real bound is the retry deadline plus the client timeouts
    release = threading.Event()
    hold_describe(calls, release)
    asker, asked = spawn(lambda: cache.get_secret_string("db", "AWSPENDING"))
    wait_until(lambda: calls["DescribeSecret"] == 1)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        within_watchdog(lambda: cache.get_secret_string("db", "AWSPENDING"))
    assert raised.value.operation_name == "GetSecretValue"
    release.set()
    assert finished(asker, asked) is None  # the asker gets its answer, and it is kept
    assert cache.get_secret_string("db", "AWSPENDING") is None
    assert (calls["GetSecretValue"], calls["DescribeSecret"]) == (1, 1)


def test_a_log_handler_reading_the_secret_during_its_describe_does_not_wait_for_itself(
    admin: Any, client: Any, calls: Calls
) -> None:
    """A read from a log handler of the DescribeSecret call raises the GetSecretValue error at once, no deadlock."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = build(adapter, client)  # a wait bound of minutes (boto3's 60 s timeouts): waiting it would fail
    inner: list[object] = []

    class ReadsTheCache(logging.Handler):
        def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: a hung read cannot stall exit
            self.emit(record)
            return True

        def emit(self, record: logging.LogRecord) -> None:
            if "DescribeSecret" in record.getMessage() and not inner:
                inner.append("reading")
                try:
                    inner[0] = cache.get_secret_string("db", "AWSPENDING")
                except Exception as err:
                    inner[0] = err

    logger = logging.getLogger("botocore.endpoint")  # botocore logs each request there, at DEBUG
    handler, level = ReadsTheCache(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        assert within_watchdog(lambda: cache.get_secret_string("db", "AWSPENDING")) is None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert isinstance(inner[0], client.exceptions.ResourceNotFoundException)
    assert (calls["GetSecretValue"], calls["DescribeSecret"]) == (1, 1)


class InterruptibleLock:
    """A lock whose next acquisition by an armed thread raises KeyboardInterrupt.

    Lock acquisition is interruptible on POSIX: a Ctrl-C reaching a main thread that waits for a
    contended lock raises there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.armed: set[int] = set()

    def __enter__(self) -> bool:
        if threading.get_ident() in self.armed:
            self.armed.discard(threading.get_ident())
            raise KeyboardInterrupt
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


@pytest.mark.parametrize("where", ["in the call", "after the call"])
def test_an_interrupted_describe_wakes_every_reader_waiting_for_it(
    admin: Any, client: Any, calls: Calls, where: str
) -> None:
    """A KeyboardInterrupt on the asker, in DescribeSecret or after it, wakes its waiters; the next read asks again."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = build(adapter, client)  # a wait bound of minutes: a waiter not woken fails the test
    lock = cache._labels_lock = InterruptibleLock()
    release = threading.Event()
    interrupted: list[str] = []

    def interrupt(operation: str, _params: dict[str, Any]) -> None:
        if operation == "DescribeSecret" and not interrupted:
            interrupted.append(where)
            release.wait(WATCHDOG)
            if where == "in the call":
                raise KeyboardInterrupt
            lock.armed.add(threading.get_ident())  # interrupted at its next taking of the adapter's lock

    calls.add_fault(interrupt)
    asker = spawn(lambda: cache.get_secret_string("db", "AWSPENDING"))
    wait_until(lambda: calls["DescribeSecret"] == 1)
    waiters = [spawn(lambda: cache.get_secret_string("db", "AWSPENDING")) for _ in range(4)]
    wait_until(
        lambda: all(inside(t, adapter.SecretCache._exists) and inside(t, threading.Event.wait) for t, _ in waiters)
    )
    release.set()
    results = [finished(*waiter) for waiter in waiters]
    answer = finished(*asker)
    lock.armed.clear()  # an interrupt the asker never met (it takes no lock after the call) must not meet a
    # later thread given the asker's ident (3.13 reuses it at once: the read below got the KeyboardInterrupt)
    if where == "in the call":  # no answer: the GetSecretValue error stands for the waiters
        assert isinstance(answer, KeyboardInterrupt)
        assert all(isinstance(result, client.exceptions.ResourceNotFoundException) for result in results)
    else:  # nothing left to interrupt once the answer is in: everyone gets it
        assert answer is None
        assert results == [None] * 4
    assert within_watchdog(lambda: cache.get_secret_string("db", "AWSPENDING")) is None
    assert calls["GetSecretValue"] == 1
