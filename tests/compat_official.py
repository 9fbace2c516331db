"""Set-up shared by the tests that run the official library and the adapter side by side.

``test_compat_official_*.py`` and ``test_compat_official_dropin.py`` import from here. The official
library calls ``time.sleep()`` from its ``cache.items`` module: the autouse fixture
``official_sleeps`` (imported by each of those modules) replaces it there, so nothing waits.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any, TypeVar

import boto3
import pytest
from aws_secretsmanager_caching.cache import items as official_items

from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.conftest import REGION, FakeClock

OFFICIAL = importlib.import_module("aws_secretsmanager_caching")
MODULES = [OFFICIAL, adapter]
BOTH = pytest.mark.parametrize("lib", MODULES, ids=["official", "adapter"])

_T = TypeVar("_T")


@pytest.fixture(autouse=True)
def official_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds the official library asked to sleep; it does not actually sleep."""
    sleeps: list[float] = []
    monkeypatch.setattr(official_items, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


def new_client() -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def build(lib: ModuleType, client: Any = None, clock: FakeClock | None = None, **fields: Any) -> Any:
    """A ``SecretCache`` of ``lib`` configured with ``fields``; the adapter's runs on ``clock``."""
    config = lib.SecretCacheConfig(**fields)
    if lib is adapter and clock is not None:
        return adapter.SecretCache(config=config, client=client, clock=clock)
    return lib.SecretCache(config=config, client=client)


def same(example: Callable[[ModuleType], _T]) -> _T:
    """Run ``example`` with each module; both must return the same result, which is returned."""
    official, ours = (example(lib) for lib in MODULES)
    assert ours == official
    return official
