"""The TTL is a bound while Secrets Manager answers, with refresh-ahead on (the default)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from secretcache import SecretCache
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock
from tests.test_cache import rotate
from tests.threads import waiting_readers

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
        futures = waiting_readers(pool, cache, "db", 8, misses_before=2)
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
