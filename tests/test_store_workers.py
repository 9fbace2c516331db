"""The read protocol and its refresh threads: saturated, dying or refusing workers strand no refresh.

A forced refresh never waits behind other secrets' queued refreshes; a refresh thread that dies is
replaced; a refresh the pool refuses, or one invalidated while queued, leaves nothing in flight.
Each risky call runs under a watchdog, so a deadlock fails the test instead of stalling the suite.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import WATCHDOG, Calls, FakeClock, quiescent, wait_until
from tests.store import ahead_cache, busy_pool
from tests.test_cache import rotate, warm_cache
from tests.threads import refuse_thread_starts
from tests.watchdog import within_watchdog

# -- 4. a forced refresh never waits behind other secrets' queued refreshes -----------------


def test_forced_refresh_runs_a_queued_background_refresh_itself(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """With both refresh threads stuck on other secrets, refresh() fetches its key at once, in one call."""
    cache, release = busy_pool(client, admin, calls, clock)
    cache.get_secret_string("db")  # db's background refresh is queued behind them
    rotate(admin, "db", "db-2")
    try:
        assert within_watchdog(lambda: cache.refresh("db").secret_string) == "db-2"
        assert within_watchdog(lambda: cache.get_secret_string("db", force_refresh=True)) == "db-2"
    finally:
        release.set()
    quiescent(cache)
    assert calls.counts["GetSecretValue"] == 3 + 2 + 2  # warm-up, the two held, two forced: the queued job ran none


# -- 5. a refresh thread that dies is replaced ------------------------------------------------


def test_refresh_threads_killed_by_systemexit_are_replaced(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Both refresh threads dying of SystemExit leave no queued refresh stranded, and no reader hangs."""
    for name in ("s1", "s2", "db"):
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = ahead_cache(client, clock, max_stale=10)
    for name in ("s1", "s2", "db"):
        cache.get_secret_string(name)
    release = threading.Event()
    entered: list[str] = []

    def die(_op: str, params: dict[str, Any]) -> None:
        if params.get("SecretId") in ("s1", "s2"):
            entered.append(params["SecretId"])
            release.wait(WATCHDOG)
            raise SystemExit(1)

    remove = calls.add_fault(die)
    clock.advance(85)
    cache.get_secret_string("s1")
    cache.get_secret_string("s2")
    wait_until(lambda: len(entered) == 2)
    rotate(admin, "db", "db-2")
    cache.get_secret_string("db")  # queued behind two threads about to die
    release.set()
    wait_until(lambda: cache.stats().refreshes == 1)  # a new thread ran it, no reader needed
    assert cache.get_secret_string("db") == "db-2"
    remove()
    # The dying threads complete their flights (with the SystemExit) after the release; a read
    # joining one before then is told its fetch was interrupted. Once they are done:
    quiescent(cache)
    clock.advance(200)  # past TTL + max_stale of s1 and s2, whose refreshes died
    assert within_watchdog(lambda: cache.get_secret_string("s1")) == "s1-1"


# -- queued refreshes that never start --------------------------------------------------------


def test_a_refresh_the_pool_refuses_is_forgotten_and_tried_again(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """When the refresh pool refuses a job (closed or full), nothing stays in flight and a later read retries."""
    cache = warm_cache(client, admin, clock, make=ahead_cache)
    cache._pool.close()  # every submission is refused from now on
    clock.advance(85)
    assert cache.get_secret_string("db") == "pw-1"
    assert cache.get_secret_string("db") == "pw-1"  # the refresh point was restored: tried again
    stats = cache.stats()
    assert (stats.in_flight, stats.background_refreshes, calls["GetSecretValue"]) == (0, 0, 1)
    rotate(admin, "db", "pw-2")
    clock.advance(20)  # past the TTL: the read fetches in the foreground
    assert cache.get_secret_string("db") == "pw-2"


def test_invalidating_a_queued_refresh_cancels_it(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A queued refresh of a secret invalidated before a worker reaches it makes no call and installs nothing."""
    cache, release = busy_pool(client, admin, calls, clock)
    cache.get_secret_string("db")  # queued behind the two held refreshes
    assert cache.stats().in_flight == 3
    assert cache.invalidate("db") == 1
    assert (cache.stats().in_flight, len(cache._store._flights.background)) == (2, 0)
    release.set()
    wait_until(lambda: cache.stats().in_flight == 0 and cache.stats().refreshes == 2)
    assert calls["GetSecretValue"] == 3 + 2  # the queued job ran no fetch
    assert cache.stats().size == 2


def test_a_job_whose_refresh_a_reader_took_over_runs_the_next_one_queued(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Pool jobs run the queued refreshes oldest first, whichever read queued them: none twice, none lost."""
    cache, release = busy_pool(client, admin, calls, clock, more=("api",))
    cache.get_secret_string("db")  # db's refresh queued first: its job waits for a thread
    cache.get_secret_string("api")  # then api's
    rotate(admin, "db", "db-2")
    rotate(admin, "api", "api-2")
    assert within_watchdog(lambda: cache.get_secret_string("db", force_refresh=True)) == "db-2"  # taken over
    assert len(cache._store._flights.background) == 1  # api's, waiting for a thread
    release.set()
    quiescent(cache)
    assert cache.get_secret_string("api") == "api-2"  # refreshed by a job (db's or its own), once
    assert len(cache._store._flights.background) == 0
    assert calls.counts["GetSecretValue"] == 4 + 2 + 1 + 1  # warm-up; s1 and s2 held; db forced; api refreshed
    assert cache.stats().background_refreshes == 4  # four jobs, one of which found nothing left to run


def test_refreshes_the_pool_refuses_leave_nothing_queued(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A background refresh the pool refuses leaves the queue its threads read: refused ones pin no entry."""
    cache = warm_cache(client, admin, clock, make=ahead_cache)
    cache._pool.close()  # every submission is refused from now on
    for _ in range(50):
        clock.advance(85)
        assert cache.get_secret_string("db") == "pw-1"
        clock.advance(20)  # past the TTL: the next read fetches in the foreground
        assert cache.get_secret_string("db") == "pw-1"
    assert (cache.stats().in_flight, len(cache._store._flights.background)) == (0, 0)
    assert calls["GetSecretValue"] == 1 + 50


def test_queued_refreshes_run_in_the_order_their_reads_queued_them(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A free refresh thread runs the queued refreshes oldest first; one a reader took over is skipped."""
    names = ("s1", "s2", "a", "b", "c", "d")
    for name in names:
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = ahead_cache(client, clock)
    for name in names:
        cache.get_secret_string(name)
    held = {"s1": threading.Event(), "s2": threading.Event()}
    fetched: list[str] = []

    def note(_op: str, params: dict[str, Any]) -> None:
        fetched.append(params["SecretId"])
        if params["SecretId"] in held:
            held[params["SecretId"]].wait(WATCHDOG)

    calls.add_fault(note)
    clock.advance(85)  # past the refresh point of all six
    try:
        cache.get_secret_string("s1")
        cache.get_secret_string("s2")
        wait_until(lambda: len(fetched) == 2)  # both refresh threads are busy
        for name in ("d", "a", "c", "b"):  # four refreshes queued, in this order
            assert cache.get_secret_string(name) == f"{name}-1"
        assert within_watchdog(lambda: cache.refresh("c").secret_string) == "c-1"  # taken over
        held["s1"].set()  # one thread free: it runs the rest, one after the other
        wait_until(lambda: len(fetched) == 2 + 1 + 3)
        assert fetched[2:] == ["c", "d", "a", "b"]
    finally:
        for event in held.values():
            event.set()
    quiescent(cache)
    assert (calls["GetSecretValue"], cache.stats().refreshes) == (6 + 2 + 1 + 3, 6)


# -- refresh threads that cannot start --------------------------------------------------------


def test_a_refresh_thread_that_cannot_start_costs_no_read_and_no_later_refresh(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads due for a refresh while no thread can start return their value; once threads start, refreshes run.

    The pool listed a thread before starting it: the read raised ``RuntimeError``, its refresh
    stayed queued, and two such failures left the pool with two dead threads and no live one.
    """
    for name in ("s1", "s2", "db"):
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = ahead_cache(client, clock)
    for name in ("s1", "s2", "db"):
        cache.get_secret_string(name)
    refuse_thread_starts(monkeypatch, "secretcache-refresh")
    clock.advance(85)  # past the refresh point of all three
    assert cache.get_secret_string("s1") == "s1-1"
    assert cache.get_secret_string("s2") == "s2-1"
    assert cache.get_secret_string("s1") == "s1-1"  # its refresh point was restored: tried again
    assert (cache.stats().in_flight, cache._pool.threads) == (0, [])
    monkeypatch.undo()
    rotate(admin, "db", "db-2")
    assert cache.get_secret_string("db") == "db-1"  # queues its refresh: a thread starts now
    wait_until(lambda: cache.stats().refreshes == 1)
    assert cache.get_secret_string("db") == "db-2"
    cache._pool.close(timeout=WATCHDOG)  # joins only threads that started
    assert calls["GetSecretValue"] == 3 + 1
