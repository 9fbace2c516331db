"""Stale-if-error without the wait: a reader holding a servable value waits for the first failed attempt only.

Past its TTL, a value may still be served while fetching fails (up to ``max_stale``). A reader
that has one never waits for the retries: it gets the value once the fetch's first attempt fails
(or at once, if the fetch it joins already failed once), and the retries go on behind it and
install the new value when they succeed. Readers with nothing to serve, and forced refreshes,
wait for the whole fetch. Each test holds an attempt on a gate and checks what the reader did
meanwhile, so nothing depends on timing; a hang fails under the watchdog.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import MockRawResponse

from secretcache import AsyncSecretCache, SecretChange
from tests.conftest import WATCHDOG, Calls, FakeClock, _reset, quiescent, wait_until
from tests.faultproxy import UNAVAILABLE, FaultProxy
from tests.test_cache import make_cache, rotate
from tests.threads import refuse_thread_starts
from tests.watchdog import within_watchdog

THROTTLED = {
    "Error": {"Code": "ThrottlingException", "Message": "injected"},
    "ResponseMetadata": {"HTTPStatusCode": 400},
}


class Attempts:
    """Scripts GetSecretValue attempts, in order: "fail", "pass", "hold" (then pass) or "hold-fail".

    Attempts past the script pass. The n-th held attempt waits for :meth:`release` of ``n`` and
    sets ``held[n]`` when it arrives.
    """

    def __init__(self, calls: Calls, *script: str) -> None:
        self.script = list(script)
        holds = sum(step.startswith("hold") for step in script)
        self.held = [threading.Event() for _ in range(holds)]
        self._gates = [threading.Event() for _ in range(holds)]
        self._lock = threading.Lock()
        self.count = 0
        calls.add_fault(self._attempt)

    def release(self, hold: int) -> None:
        self._gates[hold].set()

    def _attempt(self, operation: str, _params: dict[str, Any]) -> None:
        with self._lock:
            step = self.script[self.count] if self.count < len(self.script) else "pass"
            hold = sum(earlier.startswith("hold") for earlier in self.script[: self.count])
            self.count += 1
        if step.startswith("hold"):
            self.held[hold].set()
            assert self._gates[hold].wait(WATCHDOG), "a held attempt was never released"
        if step.endswith("fail"):
            raise ClientError(THROTTLED, operation)  # type: ignore[arg-type]


def expired(client: Any, admin: Any, clock: FakeClock, **options: Any) -> Any:
    """A cache holding pw-1 of "db" past its TTL, while Secrets Manager holds pw-2."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock, **options)
    assert cache.get_secret_string("db") == "pw-1"
    rotate(admin, "db", "pw-2")
    clock.advance(61)
    return cache


def test_a_reader_with_a_value_gets_it_at_the_first_failed_attempt(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """First attempt fails: the reader gets the old value while the retry is held; the retry installs the new one."""
    cache = expired(client, admin, clock)
    attempts = Attempts(calls, "fail", "hold")
    with ThreadPoolExecutor(max_workers=1) as pool:
        read = pool.submit(cache.get_secret_string, "db")
        assert read.result(timeout=WATCHDOG) == "pw-1"  # while the retry is still to come, or held
        assert attempts.held[0].wait(WATCHDOG)
        assert cache.stats().stale_served == 1
        attempts.release(0)
    quiescent(cache)
    made = calls["GetSecretValue"]
    assert cache.get_secret_string("db") == "pw-2"  # installed by the retry behind the reader
    assert calls["GetSecretValue"] == made == 1 + 2
    assert cache.stats().errors == 0


def test_readers_joining_a_failing_fetch_get_the_value_once_its_first_attempt_fails(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Eight readers of an expired value: one fetch; all return the value once its first attempt fails."""
    cache = expired(client, admin, clock)
    attempts = Attempts(calls, "hold-fail", "hold")
    readers = 8
    with ThreadPoolExecutor(max_workers=readers) as pool:
        reads = [pool.submit(cache.get_secret_string, "db") for _ in range(readers)]
        assert attempts.held[0].wait(WATCHDOG)  # the first attempt is in progress
        wait_until(lambda: cache.stats().misses == 1 + readers)  # every reader waits on the one fetch
        assert not any(read.done() for read in reads), "a reader did not wait for the first attempt"
        attempts.release(0)  # the first attempt fails; the second is held
        assert [read.result(timeout=WATCHDOG) for read in reads] == ["pw-1"] * readers
        assert attempts.held[1].wait(WATCHDOG)
        assert attempts.count == 2  # one fetch, at its second attempt
        attempts.release(1)
    quiescent(cache)
    assert cache.get_secret_string("db") == "pw-2"
    assert cache.stats().stale_served == readers


def test_a_reader_with_nothing_to_serve_waits_for_the_retries(client: Any, admin: Any, calls: Calls) -> None:
    """A cold read whose first attempt fails waits for the retry and gets its value, not an error."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, FakeClock())
    Attempts(calls, "fail", "fail")
    assert cache.get_secret_string("db") == "pw-1"
    assert calls["GetSecretValue"] == 3


def test_a_forced_refresh_waits_for_the_whole_fetch(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """refresh() asks for Secrets Manager's answer: it waits through a failed attempt and returns the new value."""
    cache = expired(client, admin, clock)
    Attempts(calls, "fail")
    assert cache.refresh("db").secret_string == "pw-2"
    assert cache.stats().stale_served == 0


def test_listeners_run_on_the_readers_thread_before_it_returns_when_the_fetch_succeeds(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """A read past the TTL that finds a new version returns after its listeners ran, on its own thread."""
    cache = expired(client, admin, clock)
    seen: list[tuple[str, str]] = []
    cache.on_change(lambda change: seen.append((change.name, threading.current_thread().name)))
    assert cache.get_secret_string("db") == "pw-2"
    assert seen == [("db", threading.current_thread().name)]


def test_listeners_of_a_fetch_that_failed_first_run_when_its_retry_succeeds(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """The reader left at the first failure; the change its fetch finds later is still reported, once."""
    cache = expired(client, admin, clock)
    seen: list[SecretChange] = []
    cache.on_change(seen.append)
    attempts = Attempts(calls, "fail", "hold")
    assert cache.get_secret_string("db") == "pw-1"
    assert attempts.held[0].wait(WATCHDOG)
    assert seen == []
    attempts.release(0)
    wait_until(lambda: len(seen) == 1)
    quiescent(cache)
    assert len(seen) == 1


def test_an_async_reader_with_a_value_gets_it_at_the_first_failed_attempt(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """The same for asyncio: the task returns the old value while the retry is held."""
    cache = expired(client, admin, clock)
    attempts = Attempts(calls, "fail", "hold")

    async def main() -> str:
        return await asyncio.wait_for(AsyncSecretCache(cache=cache).get_secret_string("db"), WATCHDOG)

    assert asyncio.run(main()) == "pw-1"
    assert attempts.held[0].wait(WATCHDOG)
    attempts.release(0)
    quiescent(cache)
    assert cache.get_secret_string("db") == "pw-2"


def test_without_a_thread_to_spare_the_reader_fetches_itself(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If no thread can be started for the fetch, the reader runs it and its retries itself, as before."""
    cache = expired(client, admin, clock)
    refuse_thread_starts(monkeypatch, "secretcache-fetch")
    Attempts(calls, "fail")
    assert cache.get_secret_string("db") == "pw-2"  # the reader waited for the retry
    assert cache.stats().in_flight == 0


def test_without_a_thread_to_spare_an_async_reader_gets_the_value_it_holds(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If no thread can be started for an asyncio read's fetch, a reader holding a value it may
    serve gets it (counted stale), and the key's next read fetches; one with nothing to serve
    still gets the ``RuntimeError``, since the event loop must not run the fetch.

    It raised ``RuntimeError("can't start new thread")`` although its value was servable.
    """
    cache = expired(client, admin, clock)
    acache = AsyncSecretCache(cache=cache)
    refuse_thread_starts(monkeypatch, "secretcache-fetch")
    assert within_watchdog(lambda: asyncio.run(acache.get_secret_string("db"))) == "pw-1"
    assert cache.stats().stale_served == 1
    assert cache.stats().in_flight == 0
    with pytest.raises(RuntimeError, match="can't start new thread"):  # a cold key: nothing to serve
        within_watchdog(lambda: asyncio.run(acache.get_secret_string("other")))
    monkeypatch.undo()
    assert within_watchdog(lambda: asyncio.run(acache.get_secret_string("db"))) == "pw-2"
    assert calls["GetSecretValue"] == 2  # the first read of db, then this one: none while no thread started


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, MemoryError])
def test_a_fetch_thread_start_interrupted_leaves_no_fetch_in_flight(
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    interrupt: type[BaseException],
) -> None:
    """``Thread.start`` raising something else than ``RuntimeError`` for a reader's fetch thread
    (an interrupt, no memory) reaches the reader, and the key's next read fetches.

    The claimed fetch was never completed: the key stayed in flight for good, every later read
    waited the wait bound for it and then got the stale value, and no fetch was ever made again.
    """
    cache = expired(client, admin, clock)
    refuse_thread_starts(monkeypatch, "secretcache-fetch", interrupt)
    with pytest.raises(interrupt):
        cache.get_secret_string("db")
    monkeypatch.undo()
    assert cache.stats().in_flight == 0
    assert within_watchdog(lambda: cache.get_secret_string("db")) == "pw-2"
    assert calls["GetSecretValue"] == 2


def test_over_http_botocores_own_retries_do_not_hold_a_reader_with_a_value(moto_server: str, clock: FakeClock) -> None:
    """A client with botocore's standard retries: the reader returns at the first failed HTTP attempt."""
    _reset(moto_server)
    proxy = FaultProxy(moto_server)
    try:
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10)
        client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=proxy.url, config=config)
        admin = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_server)
        cache = expired(client, admin, clock)
        release = threading.Event()
        proxy.then(("status", UNAVAILABLE), ("hold", release))  # botocore retries the 503 itself
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                read = pool.submit(cache.get_secret_string, "db")
                assert read.result(timeout=WATCHDOG) == "pw-1"
                assert proxy.holding.wait(WATCHDOG)  # botocore's second HTTP attempt, in progress
        finally:
            release.set()
        quiescent(cache)
        assert cache.get_secret_string("db") == "pw-2"
        assert cache.stats().api_calls["GetSecretValue"] == 2  # one call of ours: two HTTP attempts
    finally:
        proxy.close()
        _reset(moto_server)


class _Wire:
    """Scripts the HTTP attempts of GetSecretValue on botocore's ``before-send``, ahead of moto.

    Armed with steps ("503", "hold"), each attempt of a thread other than ``app`` takes the next
    one; unarmed or past the script, attempts reach moto.
    """

    def __init__(self, client: Any) -> None:
        self.steps: list[str] = []
        self.holding, self.release = threading.Event(), threading.Event()
        client.meta.events.register_first("before-send.secrets-manager.GetSecretValue", self._send)

    def _send(self, request: Any, **_: Any) -> Any:
        if threading.current_thread().name == "app" or not self.steps:
            return None
        step = self.steps.pop(0)
        if step == "hold":
            self.holding.set()
            assert self.release.wait(WATCHDOG), "a held attempt was never released"
            return None
        body = MockRawResponse(b'{"__type": "ServiceUnavailable", "message": "injected"}')
        return AWSResponse(request.url, 503, {}, body)


def test_botocores_retries_do_not_hold_a_reader_when_the_client_was_in_use_at_the_first_fetch(
    aws: None, admin: Any, clock: FakeClock
) -> None:
    """An application thread's call on the cache's client, racing its first fetch, leaves the attempt watch working."""
    config = Config(retries={"mode": "standard", "max_attempts": 3})
    client = boto3.client("secretsmanager", region_name="us-east-1", config=config)
    admin.create_secret(Name="db", SecretString="pw-1")
    wire = _Wire(client)
    cache = make_cache(client, clock)
    # The application's first call looks up its needs-retry handlers, and is preempted right
    # after (forced here through botocore's private handler trie), while the cache's first
    # fetch starts: botocore's emitter then caches the handlers that thread found.
    trie = client.meta.events._emitter._handlers
    looked_up, resume = threading.Event(), threading.Event()
    lookup = trie.prefix_search

    def preempted(key: str) -> Any:
        found = lookup(key)
        if key == "needs-retry.secrets-manager.GetSecretValue" and threading.current_thread().name == "app":
            looked_up.set()
            assert resume.wait(WATCHDOG)
        return found

    trie.prefix_search = preempted
    app = threading.Thread(target=lambda: client.get_secret_value(SecretId="db"), name="app", daemon=True)
    app.start()
    assert looked_up.wait(WATCHDOG)
    assert cache.get_secret_string("db") == "pw-1"  # the cache's first fetch
    resume.set()
    app.join(WATCHDOG)
    rotate(admin, "db", "pw-2")
    clock.advance(61)
    wire.steps = ["503", "hold"]  # botocore retries the 503 itself; its second attempt is held
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            read = pool.submit(cache.get_secret_string, "db")
            assert read.result(timeout=WATCHDOG) == "pw-1"
            assert wire.holding.wait(WATCHDOG)
    finally:
        wire.release.set()
    quiescent(cache)
    assert cache.get_secret_string("db") == "pw-2"
    assert cache.stats().api_calls["GetSecretValue"] == 2  # the first fetch, then one call of two HTTP attempts
