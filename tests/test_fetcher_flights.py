"""The fetcher's retries and flights: full-jitter waits on the cache's clock and sleep, and what a failed flight gives.

The owner and the waiters of a flight each get the right error when it fails; reprs hold no value.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from secretcache import (
    AsyncSecretCache,
    RetryPolicy,
    SecretCache,
    SecretUnavailableError,
)
from secretcache._entry import Entry, Failure
from secretcache._fetcher import Fetcher
from secretcache._stats import Counters
from secretcache._store import Flight
from tests.conftest import Calls, FakeClock
from tests.test_cache import make_cache
from tests.threads import waiting_readers


def test_retry_waits_are_full_jitter_within_policy(client: Any, calls: Calls) -> None:
    """Attempt n waits a random time in [0, min(max_delay, initial_delay * 2**(n-1))]."""
    calls.fail_with("ThrottlingException")
    waits: list[float] = []
    policy = RetryPolicy(attempts=6, initial_delay=0.5, max_delay=3.0, deadline=1000.0)
    fetcher = Fetcher(client, policy, Counters(), sleep=waits.append)
    for _ in range(20):
        with pytest.raises(SecretUnavailableError):
            fetcher.fetch_value("db", None, None)
    assert len(waits) == 20 * 5
    bounds = [0.5, 1.0, 2.0, 3.0, 3.0]
    for index, wait in enumerate(waits):
        assert 0.0 <= wait <= bounds[index % 5]
    assert len(set(waits)) > 50  # random, not fixed
    assert calls["GetSecretValue"] == 20 * 6


def test_waiters_of_a_flight_see_an_unexpected_error(client: Any, calls: Calls, clock: FakeClock) -> None:
    """A non-botocore failure reaches every reader that was waiting on the fetch."""
    gate = threading.Event()

    def fail_after_gate(_op: str, _params: dict[str, Any]) -> None:
        gate.wait(20)
        raise RuntimeError("handler bug")

    calls.add_fault(fail_after_gate)
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = waiting_readers(pool, cache, "db", 4)
        gate.set()
        for future in futures:
            with pytest.raises(RuntimeError, match="handler bug"):
                future.result(timeout=20)
    assert calls["GetSecretValue"] == 1


def test_interrupted_fetch_reaches_owner_as_is_and_waiters_typed(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """KeyboardInterrupt stays on the fetching thread; waiters get SecretUnavailableError; nothing is kept."""
    admin.create_secret(Name="db", SecretString="pw")
    gate = threading.Event()
    first = [True]

    def interrupt_first(_op: str, _params: dict[str, Any]) -> None:
        if first[0]:
            first[0] = False
            gate.wait(20)
            raise KeyboardInterrupt

    calls.add_fault(interrupt_first)
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = waiting_readers(pool, cache, "db", 4)
        gate.set()
        errors = [type(future.exception(timeout=20)).__name__ for future in futures]
    assert sorted(errors) == ["KeyboardInterrupt"] + ["SecretUnavailableError"] * 3
    assert cache.get_secret_string("db") == "pw"


def test_flight_and_entry_reprs_hold_no_value() -> None:
    """Internal objects describe state, never the value."""
    entry = Entry(None, failure=Failure(SecretUnavailableError("down", secret_id="db"), retry_at=0.0, count=2))
    assert "SecretUnavailableError" in repr(entry)
    assert "failures=2" in repr(entry)
    flight = Flight("db", entry, None, "running", "foreground")
    assert "down" not in repr(flight)


# -- the cache's clock and sleep ---------------------------------------------------------------


def test_a_cache_waits_between_retries_through_the_sleep_it_is_given(
    client: Any, calls: Calls, clock: FakeClock
) -> None:
    """``SecretCache(sleep=...)`` takes every retry wait: the fake clock moves by them, nothing is patched."""
    calls.fail_with("ThrottlingException")
    policy = RetryPolicy(attempts=4, initial_delay=1.0, max_delay=2.0, deadline=1000.0)
    cache = SecretCache(client, retry=policy, refresh_ahead=None, clock=clock, sleep=clock.sleep)
    started = clock.now
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 4
    assert len(clock.sleeps) == 3
    assert all(0.0 <= wait <= 2.0 for wait in clock.sleeps)
    assert clock.now - started == pytest.approx(sum(clock.sleeps))


def test_the_retry_deadline_is_measured_on_the_cache_clock(client: Any, calls: Calls, clock: FakeClock) -> None:
    """Attempts that take fake time end the retries at the deadline: the stop rule reads the injected clock."""
    calls.add_fault(lambda _operation, _params: clock.advance(3.0))  # each attempt takes 3 fake seconds
    calls.fail_with("ThrottlingException")
    policy = RetryPolicy(attempts=10, initial_delay=0.0, max_delay=0.0, deadline=5.0)
    cache = SecretCache(client, retry=policy, refresh_ahead=None, clock=clock, sleep=clock.sleep)
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 2  # started at 0 s and 3 s; a third would start at 6 s, past the deadline


def test_an_attempt_longer_than_its_clients_timeouts_allow_does_not_spend_the_deadline(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """An attempt that outlasted the client's connect and read timeouts was stopped (a Lambda freeze): retried."""
    admin.create_secret(Name="db", SecretString="pw")
    frozen = [1000.0]  # the first attempt: far beyond the test client's 60 s + 60 s of botocore timeouts
    calls.add_fault(lambda _operation, _params: clock.advance(frozen.pop()) if frozen else None)
    calls.fail_with("ThrottlingException", times=1)
    policy = RetryPolicy(attempts=10, initial_delay=0.0, max_delay=0.0, deadline=5.0)
    cache = SecretCache(client, retry=policy, refresh_ahead=None, clock=clock, sleep=clock.sleep)
    assert cache.get_secret_string("db") == "pw"
    assert calls["GetSecretValue"] == 2


def test_a_value_lives_its_ttl_from_the_start_of_the_fetch_that_read_it(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Retries that took 15 s shorten the value's life: fetched again at 60 s from the fetch's start, not 75 s."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.add_fault(lambda _operation, _params: clock.advance(5.0))  # each attempt takes 5 fake seconds
    calls.fail_with("ThrottlingException", times=2)
    cache = make_cache(client, clock, ttl=60.0)
    started = clock.now
    assert cache.get_secret_string("db") == "pw"
    assert (calls["GetSecretValue"], clock.now - started) == (3, 15.0)
    clock.advance(44.0)  # 59 s after the fetch began: fresh
    cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 3
    clock.advance(1.0)  # 60 s after it began, 45 s after it returned: past its TTL
    cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 4


def test_an_async_cache_waits_between_retries_through_the_sleep_it_is_given(
    client: Any, calls: Calls, clock: FakeClock
) -> None:
    """``AsyncSecretCache(sleep=...)`` passes the (blocking) sleep to the fetch's thread."""
    calls.fail_with("ThrottlingException")
    policy = RetryPolicy(attempts=3, initial_delay=1.0, max_delay=1.0, deadline=1000.0)

    async def main() -> None:
        async with AsyncSecretCache(client, retry=policy, refresh_ahead=None, clock=clock, sleep=clock.sleep) as cache:
            with pytest.raises(SecretUnavailableError):
                await cache.get_secret_string("db")

    asyncio.run(main())
    assert calls["GetSecretValue"] == 3
    assert len(clock.sleeps) == 2
