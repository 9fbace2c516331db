"""Concurrency: single flight, independent keys, linearizable invalidation, counts under threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from secretcache import SecretCache, SecretNotFoundError
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.test_cache import make_cache, rotate
from tests.threads import waiting_readers


def test_cold_stampede_of_32_threads_makes_one_call(backend: Any, clock: FakeClock) -> None:
    """32 threads released together on a cold key while the backend is slow cause exactly one call."""
    client = backend()
    client.create_secret(Name="db", SecretString="pw")
    calls = Calls(client)
    gate = calls.hold()
    cache = make_cache(client, clock)
    barrier = threading.Barrier(32)

    def read() -> str:
        barrier.wait(timeout=WATCHDOG)
        return cache.get_secret_string("db")

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(read) for _ in range(32)]
        wait_until(lambda: cache.stats().misses == 32)  # every reader is waiting on the one fetch
        gate.set()
        results = [future.result(timeout=WATCHDOG) for future in futures]
    assert results == ["pw"] * 32
    assert calls["GetSecretValue"] == 1


def test_failed_flight_delivers_the_error_to_every_waiter(client: Any, calls: Calls, clock: FakeClock) -> None:
    """Readers waiting on a fetch that fails all get the typed error, from one call."""
    gate = calls.hold()
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = waiting_readers(pool, cache, "missing", 8)
        gate.set()
        for future in futures:
            with pytest.raises(SecretNotFoundError):
                future.result(timeout=WATCHDOG)
    assert calls["GetSecretValue"] == 1


def test_other_keys_never_wait_for_a_slow_fetch(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """While one key's fetch hangs, other keys are fetched and hit freely."""
    for name in ("slow", "fast", "warm"):
        admin.create_secret(Name=name, SecretString=name)
    cache = make_cache(client, clock)
    cache.get_secret_string("warm")
    gate = threading.Event()
    calls.add_fault(lambda _op, params: gate.wait(WATCHDOG) if params["SecretId"] == "slow" else None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(cache.get_secret_string, "slow")
        wait_until(lambda: cache.stats().misses == 2)
        assert cache.get_secret_string("warm") == "warm"  # a hit
        assert cache.get_secret_string("fast") == "fast"  # a miss with its own fetch
        assert not slow.done()
        gate.set()
        assert slow.result(timeout=WATCHDOG) == "slow"


def test_reads_after_invalidate_do_not_join_an_older_fetch(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A read that starts after invalidate() starts its own fetch instead of waiting on an older one."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)
    entered = threading.Event()
    release = threading.Event()
    first = [True]

    def hold_first_call(_op: str, _params: dict[str, Any]) -> None:
        if first[0]:
            first[0] = False
            entered.set()
            release.wait(WATCHDOG)

    calls.add_fault(hold_first_call)
    with ThreadPoolExecutor(max_workers=2) as pool:
        early = pool.submit(cache.get_secret_string, "db")
        entered.wait(WATCHDOG)
        cache.invalidate("db")
        rotate(admin, "db", "pw-2")
        late = pool.submit(cache.get_secret_string, "db")
        assert late.result(timeout=WATCHDOG) == "pw-2"  # while the older fetch is still held
        assert not early.done()
        release.set()
        early.result(timeout=WATCHDOG)
    assert cache.get_secret_string("db") == "pw-2"
    assert calls["GetSecretValue"] == 2


def test_orphaned_fetch_does_not_install_its_old_value(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A fetch that read the old value before invalidate() is not installed when it ends."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)
    fetched = threading.Event()
    release = threading.Event()

    def hold_after_response(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if parsed.get("SecretString") == "pw-1" and not release.is_set():
            fetched.set()
            release.wait(WATCHDOG)

    client.meta.events.register("after-call.secretsmanager.GetSecretValue", hold_after_response)
    with ThreadPoolExecutor(max_workers=1) as pool:
        early = pool.submit(cache.get_secret_string, "db")
        fetched.wait(WATCHDOG)  # the old value is read, not yet installed
        rotate(admin, "db", "pw-2")
        cache.invalidate("db")
        release.set()
        assert early.result(timeout=WATCHDOG) == "pw-1"  # its reader started before invalidate
    assert cache.get_secret_string("db") == "pw-2"


def test_one_fetch_per_ttl_however_many_threads(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """16 threads reading through 10 TTL periods cost one fetch per period, never one per thread."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock, ttl=60)
    threads = 16
    barrier = threading.Barrier(threads + 1)
    reads_per_period = 200

    def reader() -> int:
        done = 0
        for _ in range(11):
            barrier.wait(WATCHDOG)  # the clock only moves between periods
            for _ in range(reads_per_period):
                assert cache.get_secret_string("db") == "pw"
                done += 1
            barrier.wait(WATCHDOG)
        return done

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(reader) for _ in range(threads)]
        for _ in range(11):
            barrier.wait(WATCHDOG)
            barrier.wait(WATCHDOG)
            clock.advance(61)
        total = sum(future.result(timeout=WATCHDOG) for future in futures)
    assert calls["GetSecretValue"] == 11
    stats = cache.stats()
    assert stats.misses >= 11
    assert stats.hits + stats.misses == total == threads * reads_per_period * 11


def test_concurrent_invalidations_and_reads_stay_consistent(client: Any, admin: Any, clock: FakeClock) -> None:
    """Reads racing invalidations and rotations only ever see real versions, and nothing deadlocks."""
    admin.create_secret(Name="db", SecretString="v0")
    cache = make_cache(client, clock, max_size=4)
    versions = {"v0"}
    stop = threading.Event()
    seen: set[str] = set()

    def reader() -> None:
        while not stop.is_set():
            seen.add(cache.get_secret_string("db"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(reader) for _ in range(4)]
        for index in range(1, 30):
            value = f"v{index}"
            rotate(admin, "db", value)
            versions.add(value)
            cache.invalidate("db" if index % 2 else None)
            assert cache.get_secret_string("db") == value
        stop.set()
        for future in futures:
            future.result(timeout=WATCHDOG)
    assert seen <= versions


def test_cache_is_shared_safely_by_many_keys_and_threads(client: Any, admin: Any, calls: Calls) -> None:
    """Many threads on many keys with a small max_size: every read is right, nothing deadlocks."""
    for index in range(12):
        admin.create_secret(Name=f"s{index}", SecretString=f"value-{index}")
    cache = SecretCache(client, ttl=0.001, max_size=5, ttl_jitter=0.5)

    def worker(seed: int) -> int:
        reads = 0
        for step in range(150):
            index = (seed * 31 + step * 7) % 12
            assert cache.get_secret_string(f"s{index}") == f"value-{index}"
            reads += 1
        return reads

    with ThreadPoolExecutor(max_workers=8) as pool:
        total = sum(pool.map(worker, range(8), timeout=WATCHDOG * 3))
    stats = cache.stats()
    assert total == 8 * 150
    assert stats.size <= 5
    assert calls["GetSecretValue"] == stats.api_calls["GetSecretValue"]
    assert calls["GetSecretValue"] <= stats.misses
