"""Clients the cache builds itself: no lock held across botocore, one build for concurrent readers.

Building a boto3 client resolves credentials, and botocore logs that ("Found credentials in
environment variables." at INFO on ``botocore.credentials``); a log handler may read the cache
right there, on the building thread. Every build here is a real one, inside ``mock_aws``; each
risky read runs under a watchdog on a daemon thread, so a deadlock fails the test instead of
stalling the suite.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from secretcache import InvalidSecretRequestError, RetryPolicy, SecretCache, SecretCacheError, SecretUnavailableError
from secretcache._lazy import MAX_NESTED_BUILDS, ClientUnusableError, Lazy
from tests.conftest import FAST_RETRY, REGION, WATCHDOG, Calls, FakeClock, inside, wait_until
from tests.faultproxy import FaultProxy
from tests.regions import REPLICA, THROTTLING, create
from tests.test_cache import make_cache
from tests.watchdog import within_watchdog

FOUND = "Found credentials"  # what botocore logs once per client it builds, at INFO


class ReadingHandler(logging.Handler):
    """A log handler that calls ``read(record)`` for every record (no guard against re-entering itself)."""

    def __init__(self, read: Callable[[logging.LogRecord], None]) -> None:
        super().__init__(logging.DEBUG)
        self.read = read

    def handle(self, record: logging.LogRecord) -> bool:
        """Emit without the handler's lock: a deadlocked emit must not hang ``logging.shutdown()``."""
        if self.filter(record):
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.read(record)


@pytest.fixture
def credentials_log() -> Iterator[Callable[[Callable[[logging.LogRecord], None]], None]]:
    """Attach handlers to ``botocore.credentials`` at INFO; removed and level restored afterwards."""
    log = logging.getLogger("botocore.credentials")
    level = log.level
    handlers: list[logging.Handler] = []

    def attach(read: Callable[[logging.LogRecord], None]) -> None:
        handlers.append(ReadingHandler(read))
        log.addHandler(handlers[-1])

    log.setLevel(logging.INFO)
    yield attach
    for handler in handlers:
        log.removeHandler(handler)
    log.setLevel(level)


def builds(records: list[logging.LogRecord]) -> int:
    """How many clients were built while ``records`` was recording (one credentials line each)."""
    return sum(FOUND in record.getMessage() for record in records)


def outcome(read: Callable[[], str]) -> str:
    """The value read, or the typed error's name and message ("fetched further up" for the store's give-up)."""
    try:
        return read()
    except SecretCacheError as err:
        return f"{type(err).__name__}: {'fetched further up' if 'fetched further up' in str(err) else err}"


def test_a_log_handler_reading_the_cache_while_its_client_is_built_gets_its_value(
    aws: None, admin: Any, credentials_log: Callable[[Callable[[logging.LogRecord], None]], None]
) -> None:
    """A handler of botocore's "Found credentials" line reading another secret from a cache that is
    building its own client returns, and so do later reads in other threads."""
    for name in ("db", "other", "third"):
        admin.create_secret(Name=name, SecretString=f"value-of-{name}")
    cache = SecretCache(retry=FAST_RETRY, refresh_ahead=None)  # no client: it builds its own on first use
    records: list[logging.LogRecord] = []
    read_in_handler: list[str] = []

    def read_other(record: logging.LogRecord) -> None:
        records.append(record)
        read_in_handler.append(outcome(lambda: cache.get_secret_string("other")))

    credentials_log(read_other)
    assert within_watchdog(lambda: cache.get_secret_string("db")) == "value-of-db"
    # The handler's read builds a client of its own (that build logs too, and the read there of
    # "other", fetched further up this thread's stack, fails fast); the first client built is kept.
    assert read_in_handler == ["SecretUnavailableError: fetched further up", "value-of-other"]
    assert builds(records) == 2
    with ThreadPoolExecutor(2) as pool:
        assert pool.submit(cache.get_secret_string, "third").result(WATCHDOG) == "value-of-third"
    assert builds(records) == 2  # the client is built: later reads use it
    assert cache.stats().api_calls["GetSecretValue"] == 3


def test_a_log_handler_reading_the_cache_while_a_replica_client_is_built_gets_its_value(
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    credentials_log: Callable[[Callable[[logging.LogRecord], None]], None],
) -> None:
    """The same for the client of a replica Region given by name, built during a failover."""
    for name in ("db", "other"):
        create(admin, name, f"value-of-{name}")
    calls.fail_with(THROTTLING)
    cache = make_cache(client, clock, replica_regions=[REPLICA])
    records: list[logging.LogRecord] = []
    read_in_handler: list[str] = []

    def read_other(record: logging.LogRecord) -> None:
        records.append(record)
        read_in_handler.append(outcome(lambda: cache.get_secret_string("other")))

    credentials_log(read_other)
    value = within_watchdog(lambda: cache.get_secret("db"))
    assert (value.secret_string, value.region) == ("value-of-db", REPLICA)
    assert read_in_handler == ["SecretUnavailableError: fetched further up", "value-of-other"]
    assert builds(records) == 2
    assert cache.get_secret("other").region == REPLICA  # a hit
    assert cache.stats().failovers == 2


def test_nested_builds_on_one_thread_are_bounded(
    aws: None, admin: Any, credentials_log: Callable[[Callable[[logging.LogRecord], None]], None]
) -> None:
    """A handler reading a different secret on every record cannot recurse without end: past
    MAX_NESTED_BUILDS builds on one thread's stack, its read fails fast; the first read still returns."""
    names = [f"app/secret-{index}" for index in range(MAX_NESTED_BUILDS + 3)]
    for name in ["db", *names]:
        admin.create_secret(Name=name, SecretString=f"value-of-{name}")
    cache = SecretCache(retry=FAST_RETRY, refresh_ahead=None)
    records: list[logging.LogRecord] = []
    read_in_handler: list[str] = []
    next_name = itertools.count()

    def read_another(record: logging.LogRecord) -> None:
        records.append(record)
        name = names[next(next_name)]
        read_in_handler.append(outcome(lambda: cache.get_secret_string(name)))

    credentials_log(read_another)
    assert within_watchdog(lambda: cache.get_secret_string("db")) == "value-of-db"
    assert builds(records) == 1 + MAX_NESTED_BUILDS
    [refused, *served] = read_in_handler
    assert refused.startswith("SecretUnavailableError: GetSecretValue for secret 'app/secret-")
    assert "being built further up this thread's stack" in refused
    assert served == [f"value-of-{name}" for name in reversed(names[:MAX_NESTED_BUILDS])]


def test_concurrent_first_reads_build_one_client(
    aws: None, admin: Any, credentials_log: Callable[[Callable[[logging.LogRecord], None]], None]
) -> None:
    """Eight threads missing eight keys while the client is being built wait for that one build."""
    names = [f"app/secret-{index}" for index in range(8)]
    for name in names:
        admin.create_secret(Name=name, SecretString=f"value-of-{name}")
    cache = SecretCache(retry=FAST_RETRY, refresh_ahead=None)
    records: list[logging.LogRecord] = []

    def hold_the_build(record: logging.LogRecord) -> None:
        records.append(record)
        wait_until(lambda: cache.stats().misses == len(names))  # every reader is in a fetch

    credentials_log(hold_the_build)
    with ThreadPoolExecutor(len(names)) as pool:
        values = [future.result(WATCHDOG) for future in [pool.submit(cache.get_secret_string, n) for n in names]]
    assert values == [f"value-of-{name}" for name in names]
    assert builds(records) == 1
    assert cache.stats().api_calls["GetSecretValue"] == len(names)


def test_a_reader_waits_for_another_threads_build_at_most_the_retry_deadline(
    aws: None, admin: Any, credentials_log: Callable[[Callable[[logging.LogRecord], None]], None]
) -> None:
    """While a build is stuck, another thread's fetch fails as unavailable after the deadline, and
    the client built in the end serves every later fetch."""
    for name in ("db", "other"):
        admin.create_secret(Name=name, SecretString=f"value-of-{name}")
    clock = FakeClock()
    policy = RetryPolicy(attempts=1, deadline=0.2, failure_backoff=1.0)
    cache = SecretCache(retry=policy, refresh_ahead=None, clock=clock)
    stuck, release = threading.Event(), threading.Event()
    records: list[logging.LogRecord] = []

    def stick(record: logging.LogRecord) -> None:
        records.append(record)
        stuck.set()
        assert release.wait(WATCHDOG), "the build was never released"

    credentials_log(stick)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(cache.get_secret_string, "db")
        assert stuck.wait(WATCHDOG)
        with pytest.raises(SecretUnavailableError, match=r"'other'.*still being built by another thread after 0\.2 s"):
            within_watchdog(lambda: cache.get_secret_string("other"))
        with pytest.raises(SecretUnavailableError, match="still being built"):
            within_watchdog(lambda: cache.client)
        release.set()
        assert first.result(WATCHDOG) == "value-of-db"
    clock.advance(policy.failure_backoff)
    assert cache.get_secret_string("other") == "value-of-other"
    assert builds(records) == 1


def test_a_failed_build_is_tried_again_by_the_next_fetch(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build that fails (no Region) fails its read as botocore's error says; the next fetch builds anew."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    cache = SecretCache(retry=FAST_RETRY, refresh_ahead=None)
    with pytest.raises(InvalidSecretRequestError, match="no AWS region"):
        within_watchdog(lambda: cache.get_secret_string("db"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(SecretCacheError, match="'other'") as info:
        within_watchdog(lambda: cache.get_secret_string("other"))
    assert "region" not in str(info.value)  # built this time: moto answers "not found"
    assert cache.stats().api_calls["GetSecretValue"] == 1


def test_a_waiter_waits_at_most_the_deadline_in_all_however_many_builds_fail() -> None:
    """A thread whose wait for another thread's failing build used up the deadline fails, instead of building again."""
    clock = FakeClock()
    started, release = threading.Event(), threading.Event()
    attempts = itertools.count(1)

    def failing_build() -> object:
        if next(attempts) == 1:  # the first build: slow, and past the waiter's deadline when it fails
            started.set()
            assert release.wait(WATCHDOG), "the build was never released"
            clock.advance(2.0)
        raise RuntimeError("the build failed")

    lazy: Lazy[object] = Lazy(None, failing_build, wait=1.0, clock=clock)
    outcomes: list[BaseException] = []

    def wait_for_the_client() -> None:
        try:
            lazy.get()
        except (ClientUnusableError, RuntimeError) as err:
            outcomes.append(err)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(lazy.get)
        assert started.wait(WATCHDOG)
        waiter = threading.Thread(target=wait_for_the_client, daemon=True)
        waiter.start()
        wait_until(lambda: inside(waiter, threading.Event.wait))
        release.set()
        with pytest.raises(RuntimeError, match="the build failed"):
            first.result(WATCHDOG)
        waiter.join(WATCHDOG)
    assert [type(err) for err in outcomes] == [ClientUnusableError]
    assert next(attempts) == 2  # one build only: the waiter did not start another past its deadline


def _open(client: Any) -> int:
    """How many sockets ``client`` keeps open for reuse (in urllib3's pools behind botocore's session)."""
    manager = client._endpoint.http_session._manager
    pools = [manager.pools[key] for key in manager.pools.keys()]  # noqa: SIM118 - urllib3's container cannot iterate
    return sum(1 for pool in pools for conn in list(pool.pool.queue) if conn is not None and conn.sock is not None)


def test_close_closes_the_connections_of_the_clients_the_cache_built_and_leaves_a_given_one_open(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() closes the open connections of the clients the cache built (primary, replica), not a given client's."""
    proxy = FaultProxy(moto_server, keep_alive=True)  # moto's server closes each connection itself
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    name = f"close/{uuid.uuid4()}"
    for region in (REGION, REPLICA):
        boto3.client("secretsmanager", region_name=region).create_secret(Name=name, SecretString="v")
    given = boto3.client("secretsmanager", region_name=REGION)
    built = SecretCache(retry=FAST_RETRY, refresh_ahead=None, replica_regions=[REPLICA])
    beside = SecretCache(given, retry=FAST_RETRY, refresh_ahead=None)
    replica = built._fetcher.regions.replicas[0].client  # type: ignore[union-attr]  # the one the cache built
    try:
        assert within_watchdog(lambda: built.get_secret_string(name)) == "v"
        assert within_watchdog(lambda: beside.get_secret_string(name)) == "v"
        replica.get_secret_value(SecretId=name)
        clients = (built.client, replica, given)
        assert [_open(client) for client in clients] == [1, 1, 1]
        built.close()
        beside.close()
        assert [_open(client) for client in clients] == [0, 0, 1]
    finally:
        given.close()
        proxy.close()
