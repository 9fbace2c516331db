"""SecretCache.try_refresh: what a forced fetch found (a new version, the same, or a stale one), and max_size."""

from __future__ import annotations

from typing import Any

import pytest

from secretcache import AsyncSecretCache, RefreshResult, SecretCache, SecretNotFoundError
from tests.conftest import Calls, FakeClock
from tests.test_cache import make_cache, rotate

SECRET = "pw-1-VALUE-never-shown"


def test_a_refresh_reports_the_same_version_then_a_new_one(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Each try_refresh fetches; `changed` says whether the version moved since the value cached before it."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = make_cache(client, clock)
    first = cache.try_refresh("db")
    assert (first.previous_version_id, first.stale, first.changed) == (None, False, False)  # nothing cached before
    same = cache.try_refresh("db")
    assert (same.previous_version_id, same.stale, same.changed) == (first.value.version_id, False, False)
    old, new = rotate(admin, "db", "pw-2")
    moved = cache.try_refresh("db")
    assert (moved.previous_version_id, moved.value.version_id, moved.changed) == (old, new, True)
    assert cache.get_secret_string("db") == "pw-2"
    assert calls["GetSecretValue"] == 3
    assert SECRET not in repr(first)
    assert "pw-2" not in repr(moved)


def test_a_failed_refresh_reports_the_stale_value(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A transient failure with a servable value: the last good value, marked stale, not changed."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = make_cache(client, clock)
    version = cache.get_secret("db").version_id
    calls.fail_with("InternalServiceError", status=500)
    result = cache.try_refresh("db")
    assert isinstance(result, RefreshResult)
    assert (result.stale, result.changed, result.value.version_id) == (True, False, version)
    assert result.value.secret_string == SECRET


def test_a_definite_error_raises(client: Any, clock: FakeClock) -> None:
    """Nothing to serve: try_refresh raises the typed error, like refresh()."""
    with pytest.raises(SecretNotFoundError):
        make_cache(client, clock).try_refresh("nosuch", version_stage="AWSPENDING")


def test_max_size_reads_the_setting(client: Any) -> None:
    """max_size is the constructor's setting, read-only."""
    cache = SecretCache(client, max_size=7)
    assert cache.max_size == 7
    with pytest.raises(AttributeError):
        cache.max_size = 8  # type: ignore[misc]


async def test_the_async_twin_reports_the_same(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """AsyncSecretCache.try_refresh and max_size behave as the thread-safe cache's."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = AsyncSecretCache(cache=make_cache(client, clock, max_size=5))
    assert cache.max_size == 5
    first = await cache.try_refresh("db")
    old, new = rotate(admin, "db", "pw-2")
    moved = await cache.try_refresh("db")
    assert (first.previous_version_id, first.value.version_id) == (None, old)
    assert (moved.previous_version_id, moved.value.version_id, moved.changed, moved.stale) == (old, new, True, False)
    calls.fail_with("InternalServiceError", status=500)
    failed = await cache.try_refresh("db")
    assert (failed.stale, failed.changed, failed.value.version_id) == (True, False, new)
