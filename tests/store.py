"""Set-up shared by the read-protocol tests (``test_store_*.py``) and ``test_refresh_ahead.py``."""

from __future__ import annotations

import threading
from typing import Any

from secretcache import SecretCache
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.test_cache import make_cache


def ahead_cache(client: Any, clock: FakeClock, **options: Any) -> SecretCache:
    """A cache of the tests' defaults (no jitter, ``FAST_RETRY``) with a 100 s TTL, refreshed ahead at 80 s."""
    settings: dict[str, Any] = {"ttl": 100.0, "refresh_ahead": 0.8}
    settings.update(options)
    return make_cache(client, clock, **settings)


def busy_pool(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, *, more: tuple[str, ...] = ()
) -> tuple[SecretCache, threading.Event]:
    """A cache holding s1, s2, db and ``more`` past their refresh point, both refresh threads held in s1's and s2's."""
    names = ("s1", "s2", "db", *more)
    for name in names:
        admin.create_secret(Name=name, SecretString=f"{name}-1")
    cache = ahead_cache(client, clock)
    for name in names:
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


def _deny(operation: str, denied: str) -> None:
    from botocore.exceptions import ClientError

    if operation == denied:
        error: Any = {"Error": {"Code": "AccessDeniedException", "Message": "no"}, "ResponseMetadata": {}}
        raise ClientError(error, operation)
