"""The Powertools provider installed: ``parameters`` functions read through the cache.

A Powertools handler's cold stampede then makes one call.

The shared set-up is in ``tests/compat_powertools.py``.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters import BaseProvider, SecretsProvider
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from secretcache import SecretCache
from secretcache.aws_lambda import default_cache, reset_default_cache
from secretcache.compat.powertools import SecretCacheProvider, install, uninstall
from tests.compat_powertools import DB
from tests.compat_powertools import cache as cache  # a fixture
from tests.compat_powertools import fresh_globals as fresh_globals  # autouse
from tests.compat_powertools import ours as ours  # a fixture
from tests.compat_powertools import secrets as secrets  # a fixture
from tests.compat_powertools import theirs_client as theirs_client  # a fixture
from tests.conftest import WATCHDOG, Calls, wait_until


def test_install_makes_parameters_use_the_cache(
    cache: SecretCache, calls: Calls, admin: Any, theirs_client: Any, secrets: None
) -> None:
    """After install(), get_secret, get_secrets_by_name and set_secret go through the cache; uninstall() undoes it."""
    provider = install(cache)
    assert DEFAULT_PROVIDERS["secrets"] is provider
    for _ in range(3):
        assert parameters.get_secret("db", transform="json") == DB
    assert parameters.get_secrets_by_name(["db", "plain"]) == {"db": json.dumps(DB), "plain": "text-9d2a"}
    assert calls.counts == {"GetSecretValue": 1, "BatchGetSecretValue": 1}
    parameters.set_secret("plain", "written")
    assert admin.get_secret_value(SecretId="plain")["SecretString"] == "written"
    assert parameters.get_secret("plain") == "written"  # the write dropped the cached value
    parameters.set_secret("new-secret", '{"created": true}')  # not found: created, as Powertools does
    assert parameters.get_secret("new-secret", transform="json") == {"created": True}
    assert uninstall() is True
    assert uninstall() is False
    assert "secrets" not in DEFAULT_PROVIDERS
    assert parameters.get_secret("plain") == "written"
    restored = DEFAULT_PROVIDERS["secrets"]
    assert isinstance(restored, SecretsProvider)
    assert not isinstance(restored, SecretCacheProvider)


def test_install_without_a_cache_follows_the_default_cache(admin: Any, secrets: None) -> None:
    """install() reads through default_cache(), and keeps doing so after reset_default_cache()."""
    provider = install()
    assert provider.cache is default_cache()
    assert parameters.get_secret("plain") == "text-9d2a"
    reset_default_cache()
    assert provider.cache is default_cache()
    assert parameters.get_secret("plain") == "text-9d2a"
    assert "default_cache()" in repr(provider)
    assert "text-9d2a" not in repr(provider)


def test_clear_cache_and_base_provider_paths_use_the_cache(
    ours: SecretCacheProvider, admin: Any, calls: Calls, secrets: None
) -> None:
    """clear_cache() empties our cache; Powertools' own BaseProvider.get reads through it, storing nothing."""
    ours.get("plain")
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    ours.clear_cache()
    assert ours.get("plain") == "rotated"
    assert BaseProvider.get(ours, "plain") == "rotated"
    assert BaseProvider.get(ours, "db", transform="json") == DB
    assert ours._get_multiple(["plain", "missing"]) == {"plain": "rotated"}  # Powertools' hook, raw values
    assert ours.store == {}
    assert calls["GetSecretValue"] == 3


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Lambda handler written for Powertools, unaware of secretcache."""
    return {"api_key": parameters.get_secret("prod/api-key")}


def _stampede(threads: int, release: Any) -> list[Any]:
    """Invoke ``handler`` from ``threads`` threads released together; ``release()`` runs once all started."""
    barrier = threading.Barrier(threads)

    def invoke() -> Any:
        barrier.wait(timeout=WATCHDOG)
        return handler({}, None)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(invoke) for _ in range(threads)]
        release()
        return [future.result(timeout=WATCHDOG) for future in futures]


def test_powertools_handler_cold_stampede_makes_one_call(
    cache: SecretCache, calls: Calls, admin: Any, theirs_client: Any
) -> None:
    """32 concurrent cold invocations: 1 GetSecretValue through secretcache, 32 through Powertools alone."""
    admin.create_secret(Name="prod/api-key", SecretString="key-123")

    # Powertools alone: each call waits in the hook until all 32 are inside it, so none can be
    # answered from Powertools' store; with single flight the barrier would break instead.
    DEFAULT_PROVIDERS["secrets"] = SecretsProvider(boto3_client=theirs_client)
    inside = threading.Barrier(32)
    theirs_calls = Calls(theirs_client)

    def wait_for_all(_operation: str, _params: dict[str, Any]) -> None:
        inside.wait(timeout=WATCHDOG)

    theirs_calls.add_fault(wait_for_all)
    assert _stampede(32, lambda: None) == [{"api_key": "key-123"}] * 32
    assert theirs_calls["GetSecretValue"] == 32

    # One line later: the one fetch is held until every reader has joined it.
    install(cache)
    gate = calls.hold()

    def release() -> None:
        wait_until(lambda: cache.stats().misses == 32)
        gate.set()

    assert _stampede(32, release) == [{"api_key": "key-123"}] * 32
    assert calls["GetSecretValue"] == 1


def test_provider_validates_its_cache_argument() -> None:
    """A cache that is not a SecretCache is refused at construction."""
    with pytest.raises(TypeError, match="SecretCache"):
        SecretCacheProvider("not a cache")  # type: ignore[arg-type]
