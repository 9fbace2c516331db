"""Refresh-ahead: background refreshes keep reads off the network once warm."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from secretcache import RetryPolicy, SecretChange, SecretUnavailableError
from tests.conftest import WATCHDOG, Calls, FakeClock, quiescent, wait_until
from tests.store import ahead_cache
from tests.test_cache import rotate, warm_cache


def test_read_past_refresh_point_returns_at_once_and_refreshes_once(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Reads during a slow background refresh return the old value immediately; one call is made."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = ahead_cache(client, clock)
    assert cache.get_secret_string("db") == "pw-1"
    rotate(admin, "db", "pw-2")
    entered = threading.Event()
    release = threading.Event()

    def slow(_op: str, _params: dict[str, Any]) -> None:
        entered.set()
        release.wait(WATCHDOG)

    calls.add_fault(slow)
    clock.advance(80)  # the refresh point: 0.8 x 100 s
    assert [cache.get_secret_string("db") for _ in range(100)] == ["pw-1"] * 100
    assert entered.wait(WATCHDOG)  # the background refresh is inside the backend, held
    assert [cache.get_secret_string("db") for _ in range(100)] == ["pw-1"] * 100
    assert calls["GetSecretValue"] == 2
    release.set()
    wait_until(lambda: cache.stats().refreshes == 1)
    assert cache.get_secret_string("db") == "pw-2"
    stats = cache.stats()
    assert (stats.background_refreshes, stats.misses, stats.hits) == (1, 1, 201)
    assert calls["GetSecretValue"] == 2


def test_continuous_reads_cost_one_call_per_ttl_not_per_thread(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """8 threads reading for 10 TTLs cause about 10 fetches, each in the background."""
    cache = warm_cache(client, admin, clock, value="pw", make=ahead_cache)
    threads = 8
    barrier = threading.Barrier(threads + 1)

    def reader() -> None:
        for _ in range(50):  # 50 steps of 20 s = 10 TTLs
            barrier.wait(WATCHDOG)
            for _ in range(20):
                assert cache.get_secret_string("db") == "pw"
            barrier.wait(WATCHDOG)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(reader) for _ in range(threads)]
        for _ in range(50):
            barrier.wait(WATCHDOG)
            barrier.wait(WATCHDOG)
            # Let the background refresh finish before time moves on, as it would in real time.
            quiescent(cache)
            clock.advance(20)
        for future in futures:
            future.result(timeout=WATCHDOG)
    stats = cache.stats()
    # A refresh every refresh_ahead x ttl = 80 s: 1000 s of reads cost about 1000 / 80 calls.
    assert 10 <= calls["GetSecretValue"] <= 14
    assert stats.misses == 1  # only the cold start ever waited
    assert stats.background_refreshes == calls["GetSecretValue"] - 1


def test_expired_value_is_refetched_in_the_foreground_while_the_service_answers(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Past its TTL (no stale_while_revalidate), a read fetches: the TTL bounds a value's age."""
    cache = warm_cache(client, admin, clock, make=ahead_cache)
    rotate(admin, "db", "pw-2")
    clock.advance(150)  # idle past the TTL, well within max_stale
    assert cache.get_secret_string("db") == "pw-2"
    stats = cache.stats()
    assert (stats.misses, stats.stale_served, stats.background_refreshes) == (2, 0, 0)


def test_stale_while_revalidate_serves_within_its_window_only(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Within stale_while_revalidate past the TTL a value is returned at once while a refresh runs."""
    cache = warm_cache(client, admin, clock, make=ahead_cache, stale_while_revalidate=30)
    rotate(admin, "db", "pw-2")
    gate = calls.hold()
    clock.advance(120)  # 20 s past the TTL: inside the 30 s window
    assert cache.get_secret_string("db") == "pw-1"
    assert cache.stats().stale_served == 1
    gate.set()
    wait_until(lambda: cache.stats().refreshes == 1)
    assert cache.get_secret_string("db") == "pw-2"
    rotate(admin, "db", "pw-3")
    clock.advance(131)  # 31 s past the new value's TTL: outside the window
    assert cache.get_secret_string("db") == "pw-3"
    assert cache.stats().stale_served == 1


def test_cold_and_too_old_values_still_block(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """With no usable value (cold, or past max_stale) the read waits for the fetch."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = ahead_cache(client, clock, max_stale=10)
    assert cache.get_secret_string("db") == "pw-1"
    rotate(admin, "db", "pw-2")
    clock.advance(111)  # past ttl + max_stale
    assert cache.get_secret_string("db") == "pw-2"
    stats = cache.stats()
    assert (stats.misses, stats.background_refreshes, stats.stale_served) == (2, 0, 0)


def test_background_failure_backs_off_and_never_raises_in_readers(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A failing background refresh keeps serving the value, backs off, and recovers."""
    policy = RetryPolicy(attempts=2, initial_delay=0, max_delay=0, failure_backoff=5.0, max_failure_backoff=5.0)
    cache = warm_cache(client, admin, clock, make=ahead_cache, retry=policy, max_stale=1000)
    remove = calls.fail_with("ThrottlingException")
    clock.advance(80)
    assert cache.get_secret_string("db") == "pw-1"
    wait_until(lambda: cache.stats().errors == 1)
    for _ in range(100):  # within the 5 s backoff: no new attempt
        assert cache.get_secret_string("db") == "pw-1"
    assert calls["GetSecretValue"] == 1 + 2
    clock.advance(5)
    assert cache.get_secret_string("db") == "pw-1"  # starts a second background attempt
    wait_until(lambda: cache.stats().errors == 2)
    assert calls["GetSecretValue"] == 1 + 4
    remove()
    rotate(admin, "db", "pw-2")
    clock.advance(100)  # expired, backoff over, the service answers again: fetched at once
    assert cache.get_secret_string("db") == "pw-2"
    assert cache.stats().refreshes == 1


def test_background_failure_past_max_stale_surfaces_only_to_blocking_readers(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Once nothing usable is left, a reader gets SecretUnavailableError, not a background error."""
    cache = warm_cache(client, admin, clock, make=ahead_cache, max_stale=10)
    calls.fail_with("ServiceUnavailable", 503)
    clock.advance(200)
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")


def test_listener_runs_on_the_background_thread(client: Any, admin: Any, clock: FakeClock) -> None:
    """on_change reports a rotation found by a background refresh."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = ahead_cache(client, clock)
    seen: list[tuple[SecretChange, str]] = []
    cache.on_change(lambda change: seen.append((change, threading.current_thread().name)))
    cache.get_secret_string("db")
    rotate(admin, "db", "pw-2")
    clock.advance(85)
    cache.get_secret_string("db")
    wait_until(lambda: bool(seen))
    assert seen[0][1].startswith("secretcache-refresh")


def test_close_stops_background_work(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A closed cache schedules nothing and its threads stop."""
    cache = warm_cache(client, admin, clock, make=ahead_cache)
    clock.advance(85)
    cache.get_secret_string("db")
    wait_until(lambda: cache.stats().refreshes == 1)
    threads = cache._pool.threads
    assert threads
    assert all(thread.name.startswith("secretcache-refresh") for thread in threads)
    assert all(thread.daemon for thread in threads)
    cache.close()
    for thread in threads:
        thread.join(WATCHDOG)
    assert not any(thread.is_alive() for thread in threads)


def test_an_interrupted_worker_is_replaced(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A background thread killed by SystemExit is replaced; later refreshes still run."""
    cache = warm_cache(client, admin, clock, make=ahead_cache)
    remove = calls.raise_error(SystemExit(3), times=1)
    clock.advance(85)
    cache.get_secret_string("db")  # its background refresh dies with SystemExit
    quiescent(cache)
    wait_until(lambda: not cache._pool.threads)
    remove()
    rotate(admin, "db", "pw-2")
    cache.get_secret_string("db")  # due again: a new thread refreshes
    wait_until(lambda: cache.stats().refreshes == 1)
    assert cache.get_secret_string("db") == "pw-2"
