"""AsyncSecretCache: awaitable reads that never block the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from secretcache import (
    AsyncSecretCache,
    RetryPolicy,
    SecretCache,
    SecretFormatError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._cache import store_of
from secretcache._flight import Flight
from secretcache._stats import Counters
from secretcache._store import Store
from tests.conftest import FAST_RETRY, REGION, WATCHDOG, Calls, FakeClock, inside, wait_until
from tests.test_cache import rotate
from tests.watchdog import within_watchdog


def async_cache(client: Any, clock: FakeClock, **options: Any) -> AsyncSecretCache:
    settings: dict[str, Any] = {"ttl": 60.0, "ttl_jitter": 0.0, "retry": FAST_RETRY}
    settings.update(options)
    return AsyncSecretCache(client, clock=clock, **settings)


async def test_reads_of_every_kind(client: Any, admin: Any, clock: FakeClock) -> None:
    """String, binary, JSON, metadata and refresh reads work as awaitables."""
    admin.create_secret(Name="db", SecretString='{"user": "app"}')
    admin.create_secret(Name="key", SecretBinary=b"\x01")
    cache = async_cache(client, clock)
    assert await cache.get_secret_string("db") == '{"user": "app"}'
    assert await cache.get_secret_json("db", "user") == "app"
    assert await cache.get_secret_binary("key") == b"\x01"
    assert (await cache.get_secret("db")).name == "db"
    rotate(admin, "db", '{"user": "app2"}')
    assert (await cache.refresh("db")).secret_string == '{"user": "app2"}'
    with pytest.raises(SecretFormatError):
        await cache.get_secret_string("key")
    with pytest.raises(TypeError):
        await cache.get_secret_json("db", 3)  # type: ignore[arg-type]


def test_hit_completes_without_suspending(client: Any, admin: Any, clock: FakeClock) -> None:
    """A warm read finishes on its first step: it never yields to the event loop."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = async_cache(client, clock)
    asyncio.run(cache.get_secret_string("db"))
    coroutine = cache.get_secret_string("db")
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert done.value.value == "pw"


async def test_cold_key_read_by_many_tasks_is_one_call_and_one_thread(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """100 tasks on a cold key share one API call and one worker thread; the loop keeps running."""
    admin.create_secret(Name="db", SecretString="pw")
    gate = calls.hold()
    cache = async_cache(client, clock)
    threads_before = threading.active_count()
    readers = [asyncio.create_task(cache.get_secret_string("db")) for _ in range(100)]
    ticks = 0
    while cache.stats().misses < 100 or calls.total < 1:
        await asyncio.sleep(0.001)  # the loop is free while the fetch is held
        ticks += 1
    assert threading.active_count() - threads_before == 1
    gate.set()
    assert await asyncio.gather(*readers) == ["pw"] * 100
    assert calls["GetSecretValue"] == 1
    assert ticks > 0


async def test_errors_are_typed_and_not_shared(client: Any, calls: Calls, clock: FakeClock) -> None:
    """Each waiting task gets its own typed error object."""
    gate = calls.hold()
    cache = async_cache(client, clock)
    readers = [asyncio.create_task(cache.get_secret_string("missing")) for _ in range(3)]
    while cache.stats().misses < 3:
        await asyncio.sleep(0.001)
    gate.set()
    errors = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(error, SecretNotFoundError) for error in errors)
    assert len({id(error) for error in errors}) == 3
    assert calls["GetSecretValue"] == 1


def test_a_task_sees_its_fetch_counted_when_its_read_returns(
    client: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that finds its fetch already done reads stats() that count it (they once lagged).

    The fetching thread is paused as it counts the failed fetch, and the task asks to be woken
    only then. The fetch was marked done before it was counted, so the task returned and read
    ``errors=0`` (a failover test failed this way on a loaded machine); now it waits until the
    count is in.
    """
    counting, proceed = threading.Event(), threading.Event()
    real_add, real_when_done = Counters.add, Store.when_done

    def add(self: Counters, name: str, amount: int = 1) -> None:
        if name == "errors":
            counting.set()
            assert proceed.wait(WATCHDOG), "the task never reached when_done"
        real_add(self, name, amount)

    def when_done(self: Store, flight: Flight, callback: Callable[[], None], *, settled: bool = False) -> None:
        assert counting.wait(WATCHDOG), "the fetch never counted"
        real_when_done(self, flight, callback, settled=settled)

    monkeypatch.setattr(Counters, "add", add)
    monkeypatch.setattr(Store, "when_done", when_done)
    cache = async_cache(client, clock)
    seen: list[int] = []

    async def read() -> None:
        with pytest.raises(SecretNotFoundError):
            await cache.get_secret_string("missing")
        seen.append(cache.stats().errors)

    reader = threading.Thread(target=asyncio.run, args=(read(),))
    reader.start()
    # Release the count once the task has returned, or is stuck asking to be woken (the fix).
    wait_until(lambda: not reader.is_alive() or inside(reader, real_when_done))
    proceed.set()
    reader.join(WATCHDOG)
    assert seen == [1]


async def test_cancelled_reader_does_not_cancel_the_fetch(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Cancelling one waiting task leaves the shared fetch to finish for the others."""
    admin.create_secret(Name="db", SecretString="pw")
    gate = calls.hold()
    cache = async_cache(client, clock)
    first = asyncio.create_task(cache.get_secret_string("db"))
    second = asyncio.create_task(cache.get_secret_string("db"))
    while cache.stats().misses < 2:
        await asyncio.sleep(0.001)
    first.cancel()
    gate.set()
    assert await second == "pw"
    assert first.cancelled()
    assert calls["GetSecretValue"] == 1


@pytest.mark.parametrize("spare", [False, True], ids=["nothing-cached", "a-value-to-serve-stale"])
async def test_a_task_cancelled_as_its_fetch_completes_is_cancelled(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, spare: bool
) -> None:
    """The cancellation wins when the fetch completes first and the loop has not run the task since.

    Python 3.10 and 3.11's ``asyncio.wait_for`` returned the value instead (the task went on
    as if never cancelled), whether the read waited for the fetch to complete or to settle.
    """
    admin.create_secret(Name="db", SecretString="pw")
    cache = async_cache(client, clock, max_stale=600.0, stale_while_revalidate=0.0)
    if spare:
        assert await cache.get_secret_string("db") == "pw"
        clock.advance(61)  # expired, still servable if the fetch falters
    gate = calls.hold()
    task = asyncio.create_task(cache.get_secret_string("db"))
    while cache.stats().misses < 1 + spare:
        await asyncio.sleep(0.001)
    fetching = [thread for thread in threading.enumerate() if thread.name == "secretcache-fetch"]
    assert fetching
    gate.set()
    for thread in fetching:  # without awaiting: the task is woken, and cancelled, before the loop runs it
        thread.join(WATCHDOG)
    assert not any(thread.is_alive() for thread in fetching)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls["GetSecretValue"] == 1 + spare
    assert await cache.get_secret_string("db") == "pw"  # the fetch completed for the cache all the same
    assert calls["GetSecretValue"] == 1 + spare


async def test_refresh_ahead_and_prefetch(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """Warm async reads refresh in the background; prefetch batches; invalidate and stats work."""
    for name in ("a", "b", "c"):
        admin.create_secret(Name=name, SecretString=name)
    cache = async_cache(client, clock, refresh_ahead=0.5)
    assert await cache.prefetch(["a", "b", "c"]) == {}
    assert calls.counts == {"BatchGetSecretValue": 1}
    clock.advance(31)
    assert await cache.get_secret_string("a") == "a"  # returns at once, refreshes behind
    while cache.stats().refreshes < 1:
        await asyncio.sleep(0.001)
    assert calls["GetSecretValue"] == 1
    assert cache.stats().background_refreshes == 1
    assert cache.invalidate("b") == 1
    with pytest.raises(TypeError):
        await cache.prefetch("a")
    cache.close()  # its refresh thread stops now, not 10 s into later tests


async def test_shares_a_sync_cache_and_closes(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """Wrapping an existing SecretCache shares its entries with threaded code."""
    admin.create_secret(Name="db", SecretString="pw")
    sync = SecretCache(client, clock=clock)
    sync.get_secret_string("db")
    async with AsyncSecretCache(cache=sync) as cache:
        assert cache.cache is sync
        assert await cache.get_secret_string("db") == "pw"
        seen: list[Any] = []
        cache.on_change(seen.append)
        assert "AsyncSecretCache(SecretCache(" in repr(cache)
        assert not cache.closed
    assert cache.closed
    assert sync.closed
    assert calls.total == 1
    with pytest.raises(RuntimeError, match="closed"):
        await cache.get_secret_string("db")
    with pytest.raises(TypeError, match="cannot be combined with client"):
        AsyncSecretCache(client, cache=sync)
    with pytest.raises(TypeError, match="must be a SecretCache"):
        AsyncSecretCache(cache="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "setting",
    [
        {"ttl": 1},
        {"ttl": 300.0},  # equal to the default, still not applied to the wrapped cache
        {"max_size": 5},
        {"refresh_ahead": None},
        {"max_stale": 0},
        {"stale_while_revalidate": 0},
        {"ttl_jitter": 0.0},
        {"retry": RetryPolicy(attempts=1)},
        {"ttl_overrides": {"db": 1}},
        {"clock": FakeClock()},
        {"sleep": FakeClock().sleep},
    ],
    ids=lambda setting: next(iter(setting)),
)
def test_wrapping_refuses_every_setting_it_would_drop(client: Any, setting: dict[str, Any]) -> None:
    """AsyncSecretCache(cache=..., <setting>) raises TypeError naming the setting instead of ignoring it."""
    sync = SecretCache(client)
    with pytest.raises(TypeError, match=f"cannot be combined with {next(iter(setting))}"):
        AsyncSecretCache(cache=sync, **setting)


def test_wrapping_names_every_clashing_setting(client: Any) -> None:
    """All clashing settings are named at once, so one fix is enough."""
    with pytest.raises(TypeError, match="max_size, retry, ttl"):
        AsyncSecretCache(cache=SecretCache(client), ttl=1, max_size=5, retry=RetryPolicy())


async def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """AsyncSecretCache.from_env reads the same variables."""
    monkeypatch.setenv("SECRETCACHE_TTL", "42")
    assert "ttl=42.0" in repr(AsyncSecretCache.from_env())


@pytest.mark.parametrize("outer", ["async", "sync"])
def test_a_task_reading_the_key_its_own_thread_is_fetching_does_not_wait_for_itself(
    aws: None, admin: Any, clock: FakeClock, outer: str
) -> None:
    """An async read run by botocore's hooks of a fetch, on the fetching thread, gets an error at once.

    The fetch cannot go on until the hook returns, so waiting for it only ends at the wait
    bound (about two minutes with botocore's default timeouts); threads were already told at
    once. The client's short timeouts keep that bound to a few seconds should it wait.
    """
    client = boto3.client("secretsmanager", region_name=REGION, config=Config(connect_timeout=1, read_timeout=1))
    admin.create_secret(Name="db", SecretString="pw")
    cache = async_cache(client, clock, retry=RetryPolicy(attempts=1, deadline=1.0))
    nested: list[BaseException | str] = []

    def read_same_key(**_: Any) -> None:
        if not nested:
            try:
                nested.append(asyncio.run(cache.get_secret_string("db")))
            except SecretUnavailableError as err:
                nested.append(err)

    client.meta.events.register("before-send.secretsmanager.GetSecretValue", read_same_key)
    if outer == "async":
        assert within_watchdog(lambda: asyncio.run(cache.get_secret_string("db"))) == "pw"
    else:
        assert within_watchdog(lambda: cache.cache.get_secret_string("db")) == "pw"
    assert len(nested) == 1
    assert "further up this thread's stack" in str(nested[0])
    assert cache.stats().api_calls == {"GetSecretValue": 1}


def test_a_read_whose_loop_closed_under_it_closes_inside_a_cache_lock_without_waiting_for_it(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A read left pending by a closed loop is closed by the garbage collector wherever it runs: no deadlock.

    The collector may run it inside a lock of the cache on that thread (the counters' own, in
    ``stats()``); closing it must take none. ``coro.close()`` does what the collector does.
    """
    admin.create_secret(Name="db", SecretString="pw-1")
    fetch = calls.hold()
    cache = AsyncSecretCache(client, retry=FAST_RETRY, clock=clock)
    loop = asyncio.new_event_loop()
    task = loop.create_task(cache.get_secret_string("db"))

    async def until_waiting() -> None:
        while cache.stats().misses < 1:
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(until_waiting(), WATCHDOG))
    loop.close()  # the read stays pending for good, awaiting its fetch
    coro = task.get_coro()
    counters = store_of(cache.cache).counters

    def close_inside_the_lock() -> None:
        with counters._lock:
            coro.close()  # type: ignore[union-attr]

    closer = threading.Thread(target=close_inside_the_lock, daemon=True)
    closer.start()
    closer.join(WATCHDOG)
    assert not closer.is_alive(), "closing the abandoned read waited for a lock its own thread held"
    fetch.set()
    cache.close()
