"""The read protocol at its seams: re-entrant callbacks, saturated and dying workers, asyncio
loops that end mid-read, bounded waits, the TTL bound, and counters that trail the state.

Each test runs the risky call under a watchdog, so a deadlock fails the test instead of
stalling the suite.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from secretcache import AsyncSecretCache, RetryPolicy, SecretCache, SecretChange, SecretUnavailableError
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock, wait_until
from tests.test_cache import make_cache, rotate

_T = TypeVar("_T")


def within_watchdog(call: Callable[[], _T]) -> _T:
    """Run ``call`` on a daemon thread; fail (never hang, not even at exit) if it does not return in time."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, name="watchdog", daemon=True)
    thread.start()
    thread.join(WATCHDOG)
    if thread.is_alive():
        raise AssertionError(f"no return within {WATCHDOG} s: a deadlock or a lost wake-up")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def ahead_cache(client: Any, clock: FakeClock, **options: Any) -> SecretCache:
    settings: dict[str, Any] = {"ttl": 100.0, "refresh_ahead": 0.8, "max_stale": 50.0}
    settings.update(options)
    return make_cache(client, clock, **settings)


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


def _deny(operation: str, denied: str) -> None:
    from botocore.exceptions import ClientError

    if operation == denied:
        error: Any = {"Error": {"Code": "AccessDeniedException", "Message": "no"}, "ResponseMetadata": {}}
        raise ClientError(error, operation)


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
    assert len(messages) >= 5
    assert not any(locked), [m for m, held in zip(messages, locked, strict=True) if held]


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
    wait_until(lambda: cache.stats().in_flight == 0)
    assert calls.counts["GetSecretValue"] == 3 + 2 + 2  # warm-up, the two held, two forced: the queued job ran none


def busy_pool(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> tuple[SecretCache, threading.Event]:
    """A cache holding s1, s2 and db past their refresh point, both refresh threads held in s1's and s2's refreshes."""
    for name in ("s1", "s2", "db"):
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = ahead_cache(client, clock)
    for name in ("s1", "s2", "db"):
        cache.get_secret_string(name)
    release = threading.Event()
    entered: list[str] = []
    calls.add_fault(lambda _op, params: _hold_if(params, {"s1", "s2"}, entered, release))
    clock.advance(85)  # past the refresh point of all three
    cache.get_secret_string("s1")
    cache.get_secret_string("s2")
    wait_until(lambda: len(entered) == 2)  # both refresh threads are busy
    return cache, release


def _hold_if(params: dict[str, Any], ids: set[str], entered: list[str], release: threading.Event) -> None:
    if params.get("SecretId") in ids:
        entered.append(params["SecretId"])
        release.wait(WATCHDOG)


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
    clock.advance(200)  # past TTL + max_stale of s1 and s2, whose refreshes died
    assert within_watchdog(lambda: cache.get_secret_string("s1")) == "s1-1"


# -- 6. the TTL is a bound while Secrets Manager answers --------------------------------------


def test_default_settings_never_serve_a_value_past_its_ttl_after_a_rotation(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """With the defaults, the first read after the TTL of a secret idle since its refresh point gets the new value."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = SecretCache(client, clock=clock, retry=FAST_RETRY)  # refresh_ahead=0.8, max_stale=3600
    assert cache.get_secret_string("db") == "pw-1"
    rotate(admin, "db", "pw-2")
    clock.advance(301)
    assert cache.get_secret_string("db") == "pw-2"
    assert cache.stats().stale_served == 0


def test_ttl_zero_fetches_on_every_read_but_concurrent_reads_share(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """ttl=0 with refresh-ahead on: each read fetches (no old value), yet 8 concurrent cold readers make one call."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = SecretCache(client, ttl=0, clock=clock, retry=FAST_RETRY)
    assert cache.get_secret_string("db") == "pw-1"
    rotate(admin, "db", "pw-2")
    assert cache.get_secret_string("db") == "pw-2"
    assert calls["GetSecretValue"] == 2
    gate = calls.hold()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(cache.get_secret_string, "db") for _ in range(8)]
        wait_until(lambda: cache.stats().misses == 2 + 8)
        gate.set()
        assert [future.result(timeout=WATCHDOG) for future in futures] == ["pw-2"] * 8
    assert calls["GetSecretValue"] == 3


def test_stale_while_revalidate_is_validated() -> None:
    """stale_while_revalidate is a duration no longer than max_stale."""
    with pytest.raises(ValueError, match=r"stale_while_revalidate \(20 s\) must be <= max_stale \(10 s\)"):
        SecretCache(stale_while_revalidate=20, max_stale=10)
    with pytest.raises(ValueError, match="stale_while_revalidate must be a duration >= 0"):
        SecretCache(stale_while_revalidate=-1)
    with pytest.raises(TypeError, match="stale_while_revalidate must be seconds"):
        SecretCache(stale_while_revalidate="5")  # type: ignore[arg-type]


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


# -- closing while fetching -------------------------------------------------------------------


def test_close_during_a_fetch_wakes_its_readers_and_refuses_new_reads(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Readers waiting on a fetch when the cache closes get its value; later reads get RuntimeError."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock)
    gate = calls.hold()
    with ThreadPoolExecutor(max_workers=3) as pool:
        readers = [pool.submit(cache.get_secret_string, "db") for _ in range(3)]
        wait_until(lambda: cache.stats().misses == 3)
        cache.close()
        gate.set()
        assert [reader.result(timeout=WATCHDOG) for reader in readers] == ["pw"] * 3
    with pytest.raises(RuntimeError, match="closed"):
        cache.get_secret_string("db")
    assert cache.stats().size == 0


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
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)
    cache.get_secret_string("db")
    read: list[tuple[SecretChange, str]] = []
    cache.on_change(lambda change: read.append((change, cache.get_secret_string("db"))))
    rotate(admin, "db", "pw-2")
    assert within_watchdog(lambda: cache.refresh("db").secret_string) == "pw-2"
    assert [value for _, value in read] == ["pw-2"]
    assert calls["GetSecretValue"] == 2


# -- queued refreshes that never start --------------------------------------------------------


def test_a_refresh_the_pool_refuses_is_forgotten_and_tried_again(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """When the refresh pool refuses a job (closed or full), nothing stays in flight and a later read retries."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = ahead_cache(client, clock)
    cache.get_secret_string("db")
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
    assert cache.stats().in_flight == 2
    release.set()
    wait_until(lambda: cache.stats().in_flight == 0 and cache.stats().refreshes == 2)
    assert calls["GetSecretValue"] == 3 + 2  # the queued job ran no fetch
    assert cache.stats().size == 2


def test_a_fetch_thread_that_cannot_start_completes_its_claim(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the thread of an asyncio read's fetch cannot start, the read fails and the key is not wedged."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = AsyncSecretCache(cache=make_cache(client, clock))

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        asyncio.run(cache.get_secret_string("db"))
    monkeypatch.undo()
    assert cache.stats().in_flight == 0
    assert within_watchdog(lambda: cache.cache.get_secret_string("db")) == "pw"
    assert calls["GetSecretValue"] == 1


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
