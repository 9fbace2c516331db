"""The read protocol called back into: listeners and log handlers that read the cache while it works.

Logging never happens under the lock; a listener runs once the new value is served, and may read
another secret of its batch or the same secret under another spelling; a thread never waits for
itself; counters trail the state they count. Each risky call runs under a watchdog, so a deadlock
fails the test instead of stalling the suite.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from secretcache import SecretChange, SecretUnavailableError
from secretcache.testing import seeded_cache
from tests.conftest import FAST_RETRY, Calls, FakeClock, quiescent
from tests.store import _deny
from tests.test_cache import make_cache, rotate, warm_cache
from tests.watchdog import within_watchdog


@pytest.fixture
def secretcache_log() -> Iterator[logging.Logger]:
    """The library's logger at DEBUG, restored afterwards."""
    log = logging.getLogger("secretcache")
    level = log.level
    log.setLevel(logging.DEBUG)
    yield log
    log.setLevel(level)


class CallbackHandler(logging.Handler):
    """A log handler that runs ``callback(record)`` for every record, once at a time."""

    def __init__(self, callback: Callable[[logging.LogRecord], None]) -> None:
        super().__init__(logging.DEBUG)
        self._callback = callback
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._inside, "busy", False):
            return
        self._inside.busy = True
        try:
            self._callback(record)
        finally:
            self._inside.busy = False


# -- 1. listeners that read another secret of a prefetch batch -------------------------------


@pytest.mark.parametrize("batch", ["batch", "refused batch"])
def test_listener_reading_another_secret_of_the_batch_returns(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, batch: str
) -> None:
    """An on_change listener may read a secret of the same prefetch batch (batch and one-by-one paths)."""
    for name in ("a", "b"):
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = make_cache(client, clock)
    cache.prefetch(["a", "b"])
    cache.invalidate()
    admin.put_secret_value(SecretId="a", SecretString="a-2")  # a new version: a change to report
    if batch == "refused batch":
        calls.add_fault(lambda op, _params: _deny(op, "BatchGetSecretValue"))
    seen: list[str] = []
    cache.on_change(lambda change: seen.append(cache.get_secret_string("b")))
    assert within_watchdog(lambda: cache.prefetch(["a", "b"])) == {}
    assert seen == ["b-1"]
    assert calls["GetSecretValue"] == (2 if batch == "refused batch" else 0)  # b read by the listener: a hit


# -- 2. logging never happens under the lock ---------------------------------------------------


def test_log_handler_that_reads_the_cache_does_not_deadlock(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, secretcache_log: logging.Logger
) -> None:
    """A logging handler may read a secret from the cache that is logging (here: 'readable again')."""
    admin.create_secret(Name="db", SecretString="pw")
    admin.create_secret(Name="other", SecretString="other")
    cache = make_cache(client, clock)
    read_in_handler: list[str] = []
    handler = CallbackHandler(lambda record: read_in_handler.append(cache.get_secret_string("other", ttl=0)))
    remove = calls.fail_with("ServiceUnavailable", 503)
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")
    remove()
    clock.advance(FAST_RETRY.failure_backoff)
    secretcache_log.addHandler(handler)
    try:
        assert within_watchdog(lambda: cache.get_secret_string("db")) == "pw"  # logs "readable again"
    finally:
        secretcache_log.removeHandler(handler)
    assert read_in_handler
    assert set(read_in_handler) == {"other"}


def test_no_log_line_is_emitted_while_the_lock_is_held(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, secretcache_log: logging.Logger
) -> None:
    """Every log record of failures, stale serving, recovery, refusals and listeners is emitted outside the lock."""
    for name in ("db", "x", "y"):
        admin.create_secret(Name=name, SecretString=name)
    cache = make_cache(client, clock, max_size=2, max_stale=100)
    locked: list[bool] = []
    messages: list[str] = []

    def check(record: logging.LogRecord) -> None:
        locked.append(cache._store._lock.locked())
        messages.append(record.getMessage())

    secretcache_log.addHandler(CallbackHandler(check))
    try:
        cache.on_change(lambda change: 1 / 0)  # a failing listener is logged
        cache.get_secret_string("db")
        remove = calls.fail_with("ServiceUnavailable", 503)
        clock.advance(61)
        assert cache.get_secret_string("db") == "db"  # stale, with a warning
        quiescent(cache)  # its retries end (and warn) before the clock moves on
        clock.advance(200)
        with pytest.raises(SecretUnavailableError):
            cache.get_secret_string("db")  # too old: another warning
        remove()
        clock.advance(FAST_RETRY.max_failure_backoff)
        rotate(admin, "db", "db-2")
        cache.get_secret_string("db")  # readable again, and a change for the failing listener
        calls.add_fault(lambda op, _params: _deny(op, "BatchGetSecretValue"))
        cache.prefetch(["x", "y"])  # refused batch, evictions
        cache.invalidate("x")
    finally:
        secretcache_log.handlers = [h for h in secretcache_log.handlers if not isinstance(h, CallbackHandler)]
    logged = {
        kind: sum(message.startswith(prefix) for message in messages)
        for kind, prefix in [
            ("stale", "serving the cached value of secret 'db'"),
            ("failure", "fetching secret 'db' failed and no cached value can be served"),
            ("recovery", "secret 'db' is readable again"),
            ("listener", "on_change listener"),
            ("refusal", "BatchGetSecretValue refused"),
            ("invalidation", "invalidated 1 cached entries of 'x'"),
        ]
    }
    assert logged == dict.fromkeys(logged, 1), messages  # every kind the docstring names, each once
    assert not any(locked), [m for m, held in zip(messages, locked, strict=True) if held]


def test_a_log_handler_reading_the_key_its_thread_is_fetching_does_not_wait_for_itself(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """botocore logging a fetch to a handler that reads the same secret gets an error, not a deadlock."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock)
    nested: list[BaseException] = []

    def read_same_key(record: logging.LogRecord) -> None:
        try:
            cache.get_secret_string("db")
        except SecretUnavailableError as err:
            nested.append(err)

    botocore_log = logging.getLogger("botocore.endpoint")
    level = botocore_log.level
    handler = CallbackHandler(read_same_key)
    botocore_log.setLevel(logging.DEBUG)
    botocore_log.addHandler(handler)
    try:
        assert within_watchdog(lambda: cache.get_secret_string("db")) == "pw"
    finally:
        botocore_log.removeHandler(handler)
        botocore_log.setLevel(level)
    assert nested
    assert "further up this thread's stack" in str(nested[0])


# -- 11. counters trail the state they count --------------------------------------------------


def test_a_reader_that_sees_an_error_counted_sees_the_failure_installed(
    client: Any, clock: FakeClock, secretcache_log: logging.Logger
) -> None:
    """When stats().errors counts a failed fetch, the remembered failure is already in the cache."""
    cache = make_cache(client, clock)
    observed: list[tuple[int, int]] = []

    def observe(record: logging.LogRecord) -> None:
        if record.getMessage().startswith("fetching secret"):
            stats = cache.stats()
            observed.append((stats.errors, stats.size))

    handler = CallbackHandler(observe)
    secretcache_log.addHandler(handler)
    try:
        with pytest.raises(Exception, match="ResourceNotFound"):
            cache.get_secret_string("missing")
    finally:
        secretcache_log.removeHandler(handler)
    assert observed == [(1, 1)]


def test_listener_sees_the_new_value_served(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A change listener runs after the new version is installed: reading the secret there returns it, no call."""
    cache = warm_cache(client, admin, clock)
    read: list[tuple[SecretChange, str]] = []
    cache.on_change(lambda change: read.append((change, cache.get_secret_string("db"))))
    rotate(admin, "db", "pw-2")
    assert within_watchdog(lambda: cache.refresh("db").secret_string) == "pw-2"
    assert [value for _, value in read] == ["pw-2"]
    assert calls["GetSecretValue"] == 2


def test_a_change_found_under_one_spelling_drops_older_values_under_the_others(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A listener (or any reader) reading a changed secret by its ARN gets the new version, not one cached earlier."""
    arn = admin.create_secret(Name="db", SecretString="pw-1")["ARN"]
    cache = make_cache(client, clock)
    read: list[str] = []
    cache.on_change(lambda change: read.append(cache.get_secret_string(change.arn)))
    assert cache.get_secret_string("db") == "pw-1"
    clock.advance(30)
    assert cache.get_secret_string(arn) == "pw-1"  # the same label cached under a second spelling
    admin.put_secret_value(SecretId="db", SecretString="pw-2")
    clock.advance(31)  # the name's entry expired, the ARN's has 29 s left
    assert cache.get_secret_string("db") == "pw-2"
    assert read == ["pw-2"]
    assert cache.get_secret_string(arn) == "pw-2"
    assert calls["GetSecretValue"] == 4  # name, ARN, name after the TTL, ARN again after the change


# -- 12. ids whose hashing or comparison is user code -----------------------------------------


def test_a_str_subclass_id_that_reads_the_cache_while_hashed_does_not_deadlock(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A secret id or label of a str subclass whose __hash__ and __eq__ call the cache never runs under its lock."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)

    class Reentrant(str):
        __slots__ = ()

        def __hash__(self) -> int:
            cache.stats()  # takes the store's lock
            return str.__hash__(self)

        def __eq__(self, other: object) -> bool:
            cache.stats()
            return str.__eq__(self, other)

    def use() -> list[str]:
        return [
            cache.get_secret_string(Reentrant("db")),
            cache.get_secret_string("db", version_stage=Reentrant("AWSCURRENT"), force_refresh=True),
            cache.get_secret_string(Reentrant("db"), version_stage=Reentrant("AWSCURRENT")),
            cache.refresh(Reentrant("db")).secret_string or "",
            str(cache.invalidate(Reentrant("db"))),
            str(cache.prefetch([Reentrant("db")])),
            seeded_cache({Reentrant("seeded"): "s"}).get_secret_string(Reentrant("seeded")),
        ]

    assert within_watchdog(use) == ["pw-1", "pw-1", "pw-1", "pw-1", "1", "{}", "s"]
    assert all(type(key.secret_id) is str for key in cache._store.entries)
    assert calls["GetSecretValue"] == 3  # the first read and two forced ones; prefetch is a batch call
    assert calls["BatchGetSecretValue"] == 1
