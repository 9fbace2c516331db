"""Set-up shared by the Powertools provider tests (``test_compat_powertools_*.py``).

Test modules import the fixtures they use (``from tests.compat_powertools import ours as ours``);
``fresh_globals`` is autouse in every module that imports it, ``test_compat_powertools_dropin.py``
included.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from secretcache import SecretCache
from secretcache.aws_lambda import reset_default_cache
from secretcache.compat.powertools import SecretCacheProvider
from tests.conftest import REGION, FakeClock
from tests.test_cache import make_cache

DB = {"username": "app", "password": "pw-6c1f"}


@pytest.fixture(autouse=True)
def fresh_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Powertools' default providers, the process-wide cache and POWERTOOLS_PARAMETERS_MAX_AGE start empty."""
    monkeypatch.delenv("POWERTOOLS_PARAMETERS_MAX_AGE", raising=False)
    saved = dict(DEFAULT_PROVIDERS)
    DEFAULT_PROVIDERS.clear()
    reset_default_cache()
    yield
    DEFAULT_PROVIDERS.clear()
    DEFAULT_PROVIDERS.update(saved)
    reset_default_cache()


@pytest.fixture
def secrets(admin: Any) -> None:
    admin.create_secret(Name="db", SecretString=json.dumps(DB))
    admin.create_secret(Name="db-old", SecretString="prefix-of-db")
    admin.create_secret(Name="plain", SecretString="text-9d2a")
    admin.create_secret(Name="b64", SecretString=base64.b64encode(b"hello").decode())
    admin.create_secret(Name="blob", SecretBinary=b"\x00\x01raw")
    admin.create_secret(Name="blob64.binary", SecretBinary=base64.b64encode(b"bytes-inside"))
    admin.create_secret(Name="cfg.json", SecretString='{"level": "debug"}')
    admin.create_secret(Name="bad-json", SecretString="{not json: 4e1b")
    admin.create_secret(Name="bad-b64", SecretString="not base64!")
    admin.create_secret(Name="not-utf8", SecretBinary=b"\xff\xfe\x00secret-b7")


@pytest.fixture
def cache(client: Any, clock: FakeClock) -> Iterator[SecretCache]:
    with make_cache(client, clock) as made:
        yield made


@pytest.fixture
def ours(cache: SecretCache) -> SecretCacheProvider:
    return SecretCacheProvider(cache)


@pytest.fixture
def theirs_client(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


@pytest.fixture
def theirs(theirs_client: Any) -> SecretsProvider:
    """Powertools' own provider, on a client of its own."""
    return SecretsProvider(boto3_client=theirs_client)
