"""The read protocol's flights at their ends: asyncio loops that end mid-read, bounded waits, closing, refused batches.

A claimed key is always completed for the readers that joined it, whatever happens to the reader
that claimed it. Each risky call runs under a watchdog, so a deadlock fails the test instead of
stalling the suite.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from secretcache import AsyncSecretCache, RetryPolicy, SecretUnavailableError, _flight
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.store import _deny
from tests.test_cache import make_cache
from tests.threads import refuse_thread_starts, waiting_readers
from tests.threads import start as threads_start
from tests.watchdog import within_watchdog

# -- 3. an asyncio loop that ends mid-read ---------------------------------------------------


def test_loop_ending_right_after_a_read_claims_a_key_does_not_wedge_it(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A read whose event loop stops right after it claimed the key still completes the fetch for everyone."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = AsyncSecretCache(cache=make_cache(client, clock))
    loop = asyncio.new_event_loop()
    task = loop.create_task(cache.get_secret_string("db"))
    loop.call_soon(loop.stop)  # ends the loop after the task's first step
    loop.run_forever()
    assert not task.done()
    loop.close()
    assert within_watchdog(lambda: cache.cache.get_secret_string("db")) == "pw"
    assert within_watchdog(lambda: asyncio.run(cache.get_secret_string("db"))) == "pw"
    assert calls["GetSecretValue"] == 1
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # abandoned on purpose


def test_cancelled_owner_task_does_not_stop_the_fetch(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """Cancelling the task that started a fetch leaves the fetch running for the readers that joined it."""
    admin.create_secret(Name="db", SecretString="pw")
    gate = calls.hold()
    cache = AsyncSecretCache(cache=make_cache(client, clock))

    async def scenario() -> list[str]:
        owner = asyncio.create_task(cache.get_secret_string("db"))
        await asyncio.sleep(0)
        joined = asyncio.create_task(cache.get_secret_string("db"))
        await asyncio.sleep(0)
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        gate.set()
        return [await joined, await cache.get_secret_string("db")]

    assert within_watchdog(lambda: asyncio.run(scenario())) == ["pw", "pw"]
    assert calls["GetSecretValue"] == 1


def test_a_fetch_thread_that_cannot_start_completes_its_claim(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the thread of an asyncio read's fetch cannot start, the read fails and the key is not wedged."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = AsyncSecretCache(cache=make_cache(client, clock))
    refuse_thread_starts(monkeypatch, "")
    with pytest.raises(RuntimeError, match="can't start new thread"):
        asyncio.run(cache.get_secret_string("db"))
    monkeypatch.undo()
    assert cache.stats().in_flight == 0
    assert within_watchdog(lambda: cache.cache.get_secret_string("db")) == "pw"
    assert calls["GetSecretValue"] == 1


def test_a_reader_joining_a_fetch_whose_thread_cannot_start_gets_a_typed_error(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that joined an asyncio read's fetch before its thread failed to start gets
    ``SecretUnavailableError``, not the ``RuntimeError`` of a thread it never started; its next read fetches."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = AsyncSecretCache(cache=make_cache(client, clock))
    start = threading.Thread.start
    joined: list[Future[str]] = []

    def refuse(thread: threading.Thread) -> None:
        if thread.name != "secretcache-fetch":
            return start(thread)
        joined.append(threads_start(lambda: cache.cache.get_secret_string("db"), "joiner"))
        wait_until(lambda: cache.stats().misses == 2)  # the joiner waits on the claimed fetch
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        within_watchdog(lambda: asyncio.run(cache.get_secret_string("db")))
    monkeypatch.undo()
    with pytest.raises(SecretUnavailableError, match="'db'"):
        joined[0].result(timeout=WATCHDOG)
    assert cache.stats().in_flight == 0
    assert within_watchdog(lambda: cache.cache.get_secret_string("db")) == "pw"
    assert calls["GetSecretValue"] == 1


# -- waits are bounded; a thread never waits for itself ---------------------------------------


def test_a_waiter_gives_up_after_the_wait_bound(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A reader joining a fetch that hangs gets SecretUnavailableError (or the value it had) after the bound."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock, retry=RetryPolicy(attempts=1, deadline=0.0))
    cache._store.wait_bound = 0.05  # the real bound is the retry deadline plus the client timeouts
    gate = calls.hold()
    with ThreadPoolExecutor(max_workers=1) as pool:
        owner = pool.submit(cache.get_secret_string, "db")
        wait_until(lambda: calls["GetSecretValue"] == 1)
        with pytest.raises(SecretUnavailableError, match=r"took longer than 0\.05 s"):
            within_watchdog(lambda: cache.get_secret_string("db"))
        with pytest.raises(SecretUnavailableError, match="took longer than"):
            within_watchdog(lambda: asyncio.run(AsyncSecretCache(cache=cache).get_secret_string("db")))
        gate.set()
        assert owner.result(timeout=WATCHDOG) == "pw"
    gate.clear()
    with ThreadPoolExecutor(max_workers=1) as pool:
        forced = pool.submit(cache.refresh, "db")
        wait_until(lambda: calls["GetSecretValue"] == 2)
        assert within_watchdog(lambda: cache.get_secret_string("db", force_refresh=True)) == "pw"  # the value it had
        gate.set()
        assert forced.result(timeout=WATCHDOG).secret_string == "pw"


# -- closing while fetching -------------------------------------------------------------------


def test_close_during_a_fetch_wakes_its_readers_and_refuses_new_reads(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Readers waiting on a fetch when the cache closes get its value; later reads get RuntimeError."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock)
    gate = calls.hold()
    with ThreadPoolExecutor(max_workers=3) as pool:
        readers = waiting_readers(pool, cache, "db", 3)
        cache.close()
        gate.set()
        assert [reader.result(timeout=WATCHDOG) for reader in readers] == ["pw"] * 3
    with pytest.raises(RuntimeError, match="closed"):
        cache.get_secret_string("db")
    assert cache.stats().size == 0


def test_prefetch_reports_remembered_errors_without_a_call_and_refuses_when_closed(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A secret backing off after a failure is reported from memory; a closed cache refuses prefetch."""
    cache = make_cache(client, clock)
    with pytest.raises(Exception, match="ResourceNotFound"):
        cache.get_secret_string("missing")
    failures = cache.prefetch(["missing"])
    assert list(failures) == ["missing"]
    assert calls.total == 1
    cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        cache.prefetch(["missing"])


def test_a_refused_batch_still_serves_the_readers_of_a_secret_dropped_meanwhile(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A reader waiting on a batched secret that is invalidated before the batch is refused still gets its value."""
    for name in ("a", "b"):
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = make_cache(client, clock)
    entered, release = threading.Event(), threading.Event()

    def refuse_batch_later(operation: str, _params: dict[str, Any]) -> None:
        if operation == "BatchGetSecretValue":
            entered.set()
            release.wait(WATCHDOG)
            _deny(operation, operation)

    calls.add_fault(refuse_batch_later)
    with ThreadPoolExecutor(max_workers=2) as pool:
        batch = pool.submit(cache.prefetch, ["a", "b"])
        assert entered.wait(WATCHDOG)
        reader = pool.submit(cache.get_secret_string, "a")
        wait_until(lambda: cache.stats().misses == 1)  # joined the batch's flight of "a"
        assert cache.invalidate("a") == 0  # nothing cached yet; the flight is orphaned
        release.set()
        assert reader.result(timeout=WATCHDOG) == "a-1"
        assert batch.result(timeout=WATCHDOG) == {}
    assert cache.stats().in_flight == 0


# -- a reader holding a value past its TTL, woken as its fetch completes -----------------------


def test_a_reader_woken_by_its_fetch_completing_is_served_its_answer_not_its_spare(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holding a value past its TTL, woken at the moment its fetch completes, is served the fetch's answer.

    Such a reader waits for its fetch to *settle* and serves its old entry (counted stale) only
    if the fetch faltered. The settle signal of a completing flight is held open here until the
    reader has answered: the reader must already see the flight done then. It was once
    signalled before "done"; a reader in that window served its old entry, counted stale,
    though the fetch had just succeeded (seen by the 16-thread stress test on a loaded machine).
    The fetch returns the version the reader holds: a new version would retire the old entry,
    which hides the window.
    """
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock, ttl=10.0, max_stale=3600.0)
    assert cache.get_secret_string("db") == "pw"
    clock.advance(11.0)  # past the TTL, within max_stale: the reader holds a spare
    gate = calls.hold()
    answered = threading.Event()

    class HeldOpen(threading.Event):
        def set(self) -> None:
            super().set()
            answered.wait(WATCHDOG)  # keep the waker here until the reader has answered

    class ProbedFlight(_flight.Flight):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._settled = HeldOpen()

    monkeypatch.setattr(_flight, "Flight", ProbedFlight)

    def read() -> str:
        try:
            return cache.get_secret_string("db")
        finally:
            answered.set()

    with ThreadPoolExecutor(max_workers=1) as pool:
        reader = pool.submit(read)
        wait_until(lambda: calls["GetSecretValue"] == 2)  # its fetch runs, on a thread of its own
        gate.set()
        assert reader.result(timeout=WATCHDOG) == "pw"
    stats = cache.stats()
    assert (stats.stale_served, stats.misses) == (0, 2)  # the first read's miss, and this one's
