"""CacheStats: how a snapshot prints, compares, hashes and travels between processes."""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

import pytest

from secretcache import CacheStats, SecretNotFoundError
from secretcache._flight import Flight
from secretcache._stats import Counters
from secretcache.testing import seeded_cache
from tests.conftest import WATCHDOG, Calls, FakeClock, inside, wait_until
from tests.test_cache import make_cache


def test_stats_print_as_a_plain_dataclass() -> None:
    """repr() and str() of CacheStats show the API calls as a dict, not a mappingproxy, and no id or value."""
    cache = seeded_cache({"prod/key": "value-abc"})
    cache.get_secret_string("prod/key")
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("prod/other")
    stats = cache.stats()
    expected = (
        "CacheStats(hits=1, misses=1, api_calls={'GetSecretValue': 1}, refreshes=0, background_refreshes=0, "
        "stale_served=0, errors=1, evictions=0, size=2, in_flight=0, api_errors={'ResourceNotFoundException': 1}, "
        "read_errors=1, changes=0, failovers=0)"
    )
    assert repr(stats) == expected
    assert str(stats) == expected
    assert f"{stats}" == expected
    assert "mappingproxy" not in repr(CacheStats())
    assert repr(CacheStats()).startswith("CacheStats(hits=0, misses=0, api_calls={}, ")


def test_stats_pickle_copy_hash_and_stay_read_only() -> None:
    """A snapshot survives pickle and copy equal to itself, hashes, and its api_calls cannot be changed."""
    cache = seeded_cache({"prod/key": "value-abc"})
    cache.get_secret_string("prod/key")
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("prod/other")
    stats = cache.stats()
    pickled = pickle.loads(pickle.dumps(stats))  # noqa: S301 - our own bytes
    for other in (pickled, copy.copy(stats), copy.deepcopy(stats)):
        assert other == stats
        assert hash(other) == hash(stats)
        assert other.api_calls == {"GetSecretValue": 1}
        assert other.api_errors == {"ResourceNotFoundException": 1}
        with pytest.raises(TypeError):
            other.api_calls["GetSecretValue"] = 0  # type: ignore[index]
        with pytest.raises(TypeError):
            other.api_errors["ResourceNotFoundException"] = 0  # type: ignore[index]
    built = CacheStats(hits=1, api_calls={"GetSecretValue": 2}, api_errors={"ThrottlingException": 1})
    with pytest.raises(TypeError):
        built.api_calls["GetSecretValue"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        built.api_errors["ThrottlingException"] = 0  # type: ignore[index]
    assert built.total_api_calls == 2


def test_a_read_that_waited_for_a_fetch_sees_it_counted(
    client: Any, calls: Calls, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that joined another thread's fetch returns only once that fetch's counts are in (docs: Statistics).

    The fetching thread is paused as it counts the failed fetch; the joined reader must still be
    waiting then, not reading ``stats()`` without the count (asyncio: tests/test_aio.py).
    """
    counting, proceed = threading.Event(), threading.Event()
    real_add = Counters.add

    def add(self: Counters, name: str, amount: int = 1) -> None:
        if name == "errors":
            counting.set()
            assert proceed.wait(WATCHDOG), "the joined reader was never seen waiting or done"
        real_add(self, name, amount)

    monkeypatch.setattr(Counters, "add", add)
    gate = calls.hold()
    cache = make_cache(client, clock)
    seen: list[int] = []

    def read() -> None:
        with pytest.raises(SecretNotFoundError):
            cache.get_secret_string("missing")
        seen.append(cache.stats().errors)

    fetching, joined = threading.Thread(target=read), threading.Thread(target=read)
    fetching.start()
    wait_until(lambda: calls.total == 1)
    joined.start()
    wait_until(lambda: cache.stats().misses == 2)
    gate.set()
    wait_until(counting.is_set)
    wait_until(lambda: not joined.is_alive() or inside(joined, Flight.wait))
    proceed.set()
    fetching.join(WATCHDOG)
    joined.join(WATCHDOG)
    assert seen == [1, 1]
