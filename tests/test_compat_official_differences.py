"""The documented differences between the adapter and the official library, asserted one by one.

Both run side by side on moto. The official library reads ``datetime.now()`` and calls
``time.sleep()`` from its ``cache.items`` module: both are replaced there (``Clocks`` below and
``tests/compat_official.py``), so nothing waits and time moves only when a test says so.
"""

from __future__ import annotations

import linecache
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from aws_secretsmanager_caching.cache import items as official_items
from botocore.exceptions import ClientError

import secretcache
from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.compat_official import MODULES, OFFICIAL, build, new_client
from tests.compat_official import official_sleeps as official_sleeps  # autouse: the original never sleeps
from tests.conftest import WATCHDOG, Calls, FakeClock, quiescent, wait_until

pytestmark = pytest.mark.timeout(60)  # a hang fails the test instead of the run


class Clocks:
    """Moves the adapter's FakeClock and the official library's ``datetime.now()`` together."""

    def __init__(self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = clock
        self.offset = timedelta(0)
        start = datetime(2030, 1, 1, tzinfo=timezone.utc)
        clocks = self

        class FrozenDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return start + clocks.offset

        monkeypatch.setattr(official_items, "datetime", FrozenDatetime)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clocks(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Clocks:
    return Clocks(clock, monkeypatch)


# -- documented differences -------------------------------------------------------------------------


def test_cold_stampede_of_32_threads_makes_one_call(admin: Any) -> None:
    """32 threads on a cold key: one GetSecretValue with the adapter; the original's lock serialises its two calls."""
    admin.create_secret(Name="db", SecretString="pw")
    counts = {}
    for lib in MODULES:
        client = new_client()
        calls = Calls(client)
        gate = calls.hold()
        cache = build(lib, client)
        barrier = threading.Barrier(32)

        def read(cache: Any = cache, barrier: threading.Barrier = barrier) -> str:
            barrier.wait(timeout=WATCHDOG)
            return cast(str, cache.get_secret_string("db"))

        with ThreadPoolExecutor(max_workers=32) as pool:
            futures = [pool.submit(read) for _ in range(32)]
            if lib is adapter:
                wait_until(lambda cache=cache: cache.cache.stats().misses == 32)  # all wait on one fetch
            else:
                wait_until(lambda calls=calls: calls.total == 1)
            gate.set()
            assert [future.result(timeout=WATCHDOG) for future in futures] == ["pw"] * 32
        counts[lib.__name__] = dict(calls.counts)
    assert counts == {
        OFFICIAL.__name__: {"DescribeSecret": 1, "GetSecretValue": 1},
        adapter.__name__: {"GetSecretValue": 1},
    }


def _waits_on_official_lock(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked entering the official library's per-secret lock (its innermost frame)."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None or frame.f_code.co_filename != official_items.__file__:
        return False
    return "with self._lock" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)


def test_reads_never_wait_for_a_refresh(admin: Any, clocks: Clocks) -> None:
    """During a slow refresh the adapter serves the cached value; the original blocks readers on its lock."""
    admin.create_secret(Name="db", SecretString="pw")
    # The original refreshes at a random point between 50 and 100 s; the adapter's refresh-ahead
    # point is between 72 and 80 s (0.8 of a TTL jittered down by up to 10 %), its TTL at least 90 s.
    for lib, age in ((OFFICIAL, 100), (adapter, 85)):
        client = new_client()
        calls = Calls(client)
        cache = build(lib, client, clocks.clock, secret_refresh_interval=100)
        assert cache.get_secret_string("db") == "pw"
        clocks.advance(age)
        before = calls.total
        gate = calls.hold()
        if lib is adapter:
            assert cache.get_secret_string("db") == "pw"  # and starts one background refresh
            wait_until(lambda calls=calls, before=before: calls.total == before + 1)  # held in the call
            assert [cache.get_secret_string("db") for _ in range(100)] == ["pw"] * 100
            gate.set()
            wait_until(lambda cache=cache: cache.cache.stats().in_flight == 0)  # done before moto stops
            continue
        with ThreadPoolExecutor(max_workers=2) as pool:
            refreshing = pool.submit(cache.get_secret_string, "db")
            wait_until(lambda calls=calls, before=before: calls.total == before + 1)  # held in the call
            reading = pool.submit(cache.get_secret_string, "db")
            wait_until(lambda: any(_waits_on_official_lock(thread) for thread in threading.enumerate()))
            gate.set()
            assert [refreshing.result(timeout=WATCHDOG), reading.result(timeout=WATCHDOG)] == ["pw", "pw"]


def test_values_are_not_served_stale_without_bound(admin: Any, clocks: Clocks) -> None:
    """Through an outage the original serves the old value forever; the adapter stops after max_stale."""
    admin.create_secret(Name="db", SecretString="pw")
    caches = {}
    for lib in MODULES:
        client = new_client()
        caches[lib] = build(lib, client, clocks.clock, secret_refresh_interval=60)
        assert caches[lib].get_secret_string("db") == "pw"
        Calls(client).fail_with("ServiceUnavailable", status=503)
    clocks.advance(600)  # past the TTL, within max_stale: both serve the last value
    assert [caches[lib].get_secret_string("db") for lib in MODULES] == ["pw", "pw"]
    clocks.advance(3600)  # past max_stale (3600 s after the TTL)
    with pytest.raises(ClientError, match="ServiceUnavailable") as caught:
        caches[adapter].get_secret_string("db")
    assert isinstance(caught.value.__cause__, secretcache.SecretUnavailableError)
    clocks.advance(365 * 86400)
    assert caches[OFFICIAL].get_secret_string("db") == "pw"
    quiescent(caches[adapter])  # its retries, going on behind the stale reads, end (and log) in this test


def test_a_deleted_secret_is_not_served(admin: Any, clocks: Clocks) -> None:
    """After the secret is deleted the original keeps serving it; the adapter raises at its next fetch."""
    admin.create_secret(Name="db", SecretString="pw")
    clients = {lib: new_client() for lib in MODULES}
    caches = {lib: build(lib, clients[lib], clocks.clock, secret_refresh_interval=60) for lib in MODULES}
    assert [caches[lib].get_secret_string("db") for lib in MODULES] == ["pw", "pw"]
    admin.delete_secret(SecretId="db", ForceDeleteWithoutRecovery=True)
    clocks.advance(86400)
    assert caches[OFFICIAL].get_secret_string("db") == "pw"
    assert caches[OFFICIAL].refresh_secret_now("db") is False
    assert caches[OFFICIAL].get_secret_string("db") == "pw"
    with pytest.raises(clients[adapter].exceptions.ResourceNotFoundException):
        caches[adapter].get_secret_string("db")


def test_forced_refresh_does_not_sleep(
    admin: Any, official_sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """refresh_secret_now: the original sleeps 2.5-5 s, then 10 s after a failure; the adapter fetches at once."""
    admin.create_secret(Name="db", SecretString="pw")
    our_sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", our_sleeps.append)  # the official module's time is replaced already
    outcomes = {}
    for lib in MODULES:
        client = new_client()
        calls = Calls(client)
        cache = build(lib, client, exception_retry_delay_base=60)
        cache.get_secret_string("db")
        calls.fail_with("AccessDeniedException", times=1)
        outcomes[lib] = [cache.refresh_secret_now("db"), cache.refresh_secret_now("db"), calls.total]
    assert outcomes[OFFICIAL] == [False, True, 4]  # DescribeSecret and GetSecretValue, then one DescribeSecret each
    assert outcomes[adapter] == [False, True, 3]  # one GetSecretValue each, the second despite the backoff
    assert len(official_sleeps) == 2
    assert 2.5 <= official_sleeps[0] <= 5.001
    assert official_sleeps[1] == 10.0  # the pending 60 s backoff, capped at 10 s
    assert our_sleeps == []


def test_injection_does_not_guess_at_self(admin: Any, client: Any) -> None:
    """The original swaps the arguments when the first one's class has an attribute named like the function."""
    admin.create_secret(Name="token", SecretString="t0k3n")
    results = {}
    for lib in MODULES:

        @lib.InjectSecretString("token", build(lib, client))
        def upper(secret: str, text: str) -> tuple[str, str]:
            return secret, text

        results[lib] = upper("abc")
    assert results == {OFFICIAL: ("abc", "t0k3n"), adapter: ("t0k3n", "abc")}


def test_errors_are_the_get_secret_value_error_a_new_object_each_time(admin: Any) -> None:
    """The original raises its DescribeSecret error, one object for every read; the adapter the GetSecretValue one,
    a new object per read with the typed error as its cause."""
    admin.create_secret(Name="db", SecretString="pw")
    raised: dict[Any, list[ClientError]] = {}
    for lib in MODULES:
        client = new_client()
        Calls(client).fail_with("AccessDeniedException")
        cache = build(lib, client)
        raised[lib] = []
        for _ in range(2):  # the second read falls within the failure backoff: no call
            with pytest.raises(ClientError, match="AccessDeniedException") as caught:
                cache.get_secret_string("db")
            raised[lib].append(caught.value)
    official, ours = raised[OFFICIAL], raised[adapter]
    assert [err.operation_name for err in official] == ["DescribeSecret"] * 2
    assert official[0] is official[1]
    assert [err.operation_name for err in ours] == ["GetSecretValue"] * 2
    assert ours[0] is not ours[1]
    assert all(isinstance(err.__cause__, secretcache.SecretAccessDeniedError) for err in ours)


def _table_rows(text: str, header: str) -> list[str]:
    """The first cells of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


def test_docs_list_every_difference_the_module_lists() -> None:
    """docs/migrating.md's table of differences has every row of the adapter's docstring, in the same order."""
    docs = (Path(__file__).parent.parent / "docs" / "migrating.md").read_text()
    ours = adapter.__doc__ or ""
    assert _table_rows(docs, "| behaviour |") == _table_rows(ours, "| behaviour |")
