"""The suite's own wait for a cache's background fetches (``tests.conftest.quiescent``) waits for all of it.

A fetch leaves the store's table under its lock; its thread then counts, logs and calls the
listeners. Tests that read logs, stats or changes right after ``quiescent`` rely on that tail.
"""

from __future__ import annotations

import threading
from typing import Any

from secretcache import SecretChange
from tests.conftest import WATCHDOG, FakeClock, _running, quiescent
from tests.store import ahead_cache
from tests.test_cache import rotate


def test_quiescent_waits_for_the_fetch_thread_to_call_its_listeners(client: Any, admin: Any, clock: FakeClock) -> None:
    """A background refresh out of the table but still in its listener keeps ``quiescent`` waiting."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = ahead_cache(client, clock)
    cache.get_secret_string("db")
    entered, release = threading.Event(), threading.Event()

    def listener(_change: SecretChange) -> None:
        entered.set()
        release.wait(WATCHDOG)

    cache.on_change(listener)
    rotate(admin, "db", "pw-2")
    clock.advance(85)  # past the refresh point: the read queues a background refresh
    assert cache.get_secret_string("db") == "pw-1"
    assert entered.wait(WATCHDOG)  # the refresh completed and its thread is calling the listener
    assert cache._store.hits_size_flying()[2] == 0  # nothing in flight any more: the old signal
    assert _running(cache._runner)  # but its thread has not finished: quiescent() keeps waiting
    release.set()
    quiescent(cache)
    assert not _running(cache._runner)
    cache.close()
