"""The adapter's ``SecretCacheConfig``: the original's fields and defaults, and what is refused.

How each field maps to a secretcache setting, the fields without an equivalent (a warning), bad
values, and an adapter wrapping an existing ``secretcache.SecretCache``.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

import secretcache
from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.compat_official import BOTH, OFFICIAL, build
from tests.compat_official import official_sleeps as official_sleeps  # autouse: the original never sleeps
from tests.conftest import Calls, FakeClock
from tests.test_cache import rotate

pytestmark = pytest.mark.timeout(60)  # a hang fails the test instead of the run


# -- configuration ----------------------------------------------------------------------------------


@BOTH
def test_config_refuses_unknown_fields(lib: ModuleType) -> None:
    """An unknown field name raises TypeError, and the defaults are the original's."""
    with pytest.raises(TypeError, match="max_size"):
        lib.SecretCacheConfig(max_size=10)
    assert dict(lib.SecretCacheConfig.OPTION_DEFAULTS) == OFFICIAL.SecretCacheConfig.OPTION_DEFAULTS
    config = lib.SecretCacheConfig()
    if lib is adapter:
        assert repr(config).startswith("SecretCacheConfig(max_cache_size=1024, exception_retry_delay_base=1,")
    assert {name: getattr(config, name) for name in OFFICIAL.SecretCacheConfig.OPTION_DEFAULTS} == dict(
        OFFICIAL.SecretCacheConfig.OPTION_DEFAULTS
    )


def test_each_field_maps_to_a_secretcache_setting(admin: Any, client: Any, calls: Calls, clock: FakeClock) -> None:
    """Size, TTL and failure backoff land in the cache underneath; the TTL and the backoff act as set."""
    admin.create_secret(Name="db", SecretString="v1")
    fields = {
        "max_cache_size": 7,
        "exception_retry_delay_base": 5,
        "exception_retry_delay_max": 50,
        "secret_refresh_interval": 120,
    }
    cache = build(adapter, client, clock, **fields)
    settings = repr(cache.cache)
    assert "ttl=120.0, max_size=7," in settings
    assert repr(secretcache.RetryPolicy(failure_backoff=5, max_failure_backoff=50)) in settings
    assert repr(cache).startswith("SecretCache(default_version_stage='AWSCURRENT', cache=SecretCache(ttl=120.0")
    defaults = repr(secretcache.RetryPolicy(failure_backoff=1, max_failure_backoff=3600))
    assert "ttl=3600.0, max_size=1024," in repr(build(adapter, client).cache)  # the original's defaults
    assert defaults in repr(build(adapter, client).cache)
    assert "failure_backoff=2.0, max_failure_backoff=2.0" in repr(
        build(adapter, client, exception_retry_delay_base=9, exception_retry_delay_max=2).cache
    )  # the original caps the first pause at the maximum too

    cache.get_secret_string("db")
    clock.advance(120 * 0.7)  # before the refresh-ahead point of any jittered TTL
    cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 1
    clock.advance(121)
    rotate(admin, "db", "v2")
    assert cache.get_secret_string("db") == "v2"
    for _ in range(3):  # a missing secret: one call, then none for 5 s (exception_retry_delay_base)
        with pytest.raises(ClientError):
            cache.get_secret_string("missing")
    clock.advance(5)
    with pytest.raises(ClientError):
        cache.get_secret_string("missing")
    assert calls["GetSecretValue"] == 4


@pytest.mark.parametrize(
    ("fields", "warned"),
    [({"secret_cache_hook": object()}, "secret_cache_hook"), ({"exception_retry_growth_factor": 3}, "growth_factor")],
)
def test_a_field_without_equivalent_warns(fields: dict[str, Any], warned: str) -> None:
    """A hook or a growth factor other than 2 warns once, at the caller's line, and is ignored."""
    with pytest.warns(adapter.CompatWarning, match=warned) as caught:
        adapter.SecretCache(config=adapter.SecretCacheConfig(**fields))
    assert [warning.filename for warning in caught] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter.SecretCache(config=adapter.SecretCacheConfig(exception_retry_growth_factor=2.0))


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"max_cache_size": "10"}, TypeError, "max_cache_size must be an int"),
        ({"secret_refresh_interval": -1}, ValueError, "secret_refresh_interval must be a duration"),
        ({"exception_retry_delay_base": "1"}, TypeError, "exception_retry_delay_base must be seconds"),
        ({"exception_retry_growth_factor": None}, TypeError, "exception_retry_growth_factor must be a number"),
        ({"default_version_stage": None}, TypeError, "default_version_stage must be a str"),
        ({"default_version_stage": ""}, ValueError, "default_version_stage must be a staging label"),
    ],
)
def test_bad_field_values_fail_at_construction(fields: dict[str, Any], error: type[Exception], message: str) -> None:
    """A wrong value fails when the cache is built, naming the original field."""
    with pytest.raises(error, match=message):
        adapter.SecretCache(config=adapter.SecretCacheConfig(**fields))
    with pytest.raises(TypeError, match="config must be a SecretCacheConfig"):
        adapter.SecretCache(config=fields)  # type: ignore[arg-type]


def test_wrapping_an_existing_cache(admin: Any, client: Any, calls: Calls) -> None:
    """Old call sites and new code can share one secretcache.SecretCache; settings it fixes are refused."""
    admin.create_secret(Name="db", SecretString="v1")
    core = secretcache.SecretCache(client)
    legacy = adapter.SecretCache(cache=core)
    assert legacy.cache is core
    assert legacy.get_secret_string("db") == core.get_secret_string("db") == "v1"
    assert calls["GetSecretValue"] == 1
    with pytest.raises(ValueError, match="secret_refresh_interval would be ignored"):
        adapter.SecretCache(adapter.SecretCacheConfig(secret_refresh_interval=60), cache=core)
    with pytest.raises(ValueError, match="pass client and clock"):
        adapter.SecretCache(client=client, cache=core)
    with pytest.raises(TypeError, match=r"cache must be a secretcache\.SecretCache"):
        adapter.SecretCache(cache=cast(Any, legacy))
