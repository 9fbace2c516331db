"""The one-import switch: Powertools' own test shapes for secrets, run on Powertools and on secretcache.

Each shape is written once against a ``parameters`` namespace and runs twice: with
``aws_lambda_powertools.utilities.parameters`` and with ``secretcache.compat.powertools.parameters``
(whose ``SecretsProvider`` is ``SecretCacheProvider``). The shapes follow Powertools' functional
tests of secrets (``tests/functional/parameters``): a ``Stubber`` on ``provider.client`` expecting
exactly the parameters Powertools sends, Powertools' constructor arguments, ``get_secret``,
``get_secrets_by_name``, ``set_secret`` and ``clear_caches``. Shapes secretcache does not follow
are listed in ``GAPS`` with the reason, as strict xfails: if one starts passing, the list is wrong.
"""

from __future__ import annotations

import ast
import base64
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters as powertools_parameters
from aws_lambda_powertools.utilities.parameters.base import ExpirableValue
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.exceptions import GetSecretError
from aws_lambda_powertools.warnings import PowertoolsDeprecationWarning
from botocore.config import Config
from botocore.stub import Stubber

import secretcache.compat.powertools
from secretcache import SecretCache
from secretcache.compat.powertools import SecretCacheProvider
from secretcache.compat.powertools import parameters as our_parameters
from tests.compat_powertools import fresh_globals as fresh_globals  # autouse: Powertools' globals start empty
from tests.conftest import REGION, WATCHDOG, Calls, wait_until
from tests.leaks import assert_value_absent

NAME = "app/db-pass_1.x"
VALUE = "s3cr3t-value-7f2e"
VERSION = "7a9155b8-2dc9-466e-b4f6-5bc46516c84d"
ARN = f"arn:aws:secretsmanager:{REGION}:132456789012:secret:{NAME}-AbCdEf"
BINARY_AS_STR = "ZXlKaGJHY2lPaUpJVXpJMU5pSjkK"
NAMESPACES = {"powertools": powertools_parameters, "secretcache": our_parameters}

pytestmark = pytest.mark.usefixtures("aws")  # moto answers every call the stubs do not


def answer(value: str = VALUE, **fields: Any) -> dict[str, Any]:
    """A full GetSecretValue answer, as Powertools' tests stub it."""
    return {"ARN": ARN, "Name": NAME, "VersionId": VERSION, "SecretString": value, "CreatedDate": datetime(2015, 1, 1)}


def stubbed_get(provider: Any, expected: dict[str, Any], response: dict[str, Any] | None = None) -> Stubber:
    stubber = Stubber(provider.client)
    stubber.add_response("get_secret_value", response or answer(), expected)
    stubber.activate()
    return stubber


# -- the shapes ----------------------------------------------------------------------------------


def get_with_config(ns: ModuleType) -> None:
    """SecretsProvider(config=...) warns as deprecated; a get sends exactly {"SecretId": name}."""
    with pytest.warns(PowertoolsDeprecationWarning, match="boto_config"):
        provider = ns.SecretsProvider(config=Config(region_name=REGION))
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_with_boto_config(ns: ModuleType) -> None:
    """SecretsProvider(boto_config=...): the client is built with it."""
    provider = ns.SecretsProvider(boto_config=Config(region_name="eu-west-1"))
    assert provider.client.meta.region_name == "eu-west-1"
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_with_custom_client(ns: ModuleType) -> None:
    """SecretsProvider(boto3_client=client) calls that very client."""
    client = boto3.client("secretsmanager", region_name=REGION)
    provider = ns.SecretsProvider(boto3_client=client)
    assert provider.client is client
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_with_session(ns: ModuleType) -> None:
    """SecretsProvider(boto3_session=...) builds its client from the session."""
    provider = ns.SecretsProvider(boto3_session=boto3.session.Session(region_name="eu-central-1"))
    assert provider.client.meta.region_name == "eu-central-1"
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_default_config(ns: ModuleType) -> None:
    """SecretsProvider() with a Stubber on its client expecting exactly {"SecretId": name}."""
    provider = ns.SecretsProvider()
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_binary_secret_given_as_str(ns: ModuleType) -> None:
    """A stub's SecretBinary given as str comes back as that str."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    response = {"ARN": ARN, "Name": NAME, "VersionId": VERSION, "SecretBinary": BINARY_AS_STR}
    with stubbed_get(provider, {"SecretId": NAME}, response) as stubber:
        assert provider.get(NAME) == BINARY_AS_STR
        stubber.assert_no_pending_responses()


def get_binary_secret_given_as_str_decoded(ns: ModuleType) -> None:
    """A stub's SecretBinary given as str, read with transform="binary", is its base64 decoding."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    response = {"ARN": ARN, "Name": NAME, "VersionId": VERSION, "SecretBinary": BINARY_AS_STR}
    with stubbed_get(provider, {"SecretId": NAME}, response) as stubber:
        assert provider.get(NAME, transform="binary") == base64.b64decode(BINARY_AS_STR)
        stubber.assert_no_pending_responses()


def get_cached_in_the_provider_store(ns: ModuleType) -> None:
    """A value put in the provider's own store with add_to_cache is served without a call."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    provider.add_to_cache(key=provider._build_cache_key(name=NAME), value=VALUE, max_age=60)
    with Stubber(provider.client) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_expired_store_entry_fetches(ns: ModuleType) -> None:
    """An expired entry in the provider's store is fetched again."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    provider.store[(NAME, None)] = ExpirableValue("old", datetime.now() - timedelta(seconds=60))
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()


def get_version_id_option(ns: ModuleType) -> None:
    """get(name, VersionId=...) sends exactly {"SecretId": name, "VersionId": ...}."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    with stubbed_get(provider, {"SecretId": NAME, "VersionId": VERSION}) as stubber:
        assert provider.get(NAME, VersionId=VERSION) == VALUE
        stubber.assert_no_pending_responses()


def get_secret_id_option_is_overwritten(ns: ModuleType) -> None:
    """A SecretId option loses to the name."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME, SecretId="THIS_SHOULD_BE_OVERWRITTEN") == VALUE
        stubber.assert_no_pending_responses()


def second_get_is_served_from_cache(ns: ModuleType) -> None:
    """Within max_age, a second get makes no call (one stubbed answer serves both)."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        assert provider.get(NAME, max_age=60) == provider.get(NAME, max_age=60) == VALUE
        stubber.assert_no_pending_responses()


def get_not_found_raises_get_parameter_error(ns: ModuleType) -> None:
    """A ResourceNotFoundException becomes GetParameterError."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    with Stubber(provider.client) as stubber:
        stubber.add_client_error("get_secret_value", "ResourceNotFoundException", "not here", 400)
        with pytest.raises(ns.GetParameterError):
            provider.get(NAME)


def get_secret_uses_the_provider_in_the_slot(ns: ModuleType) -> None:
    """get_secret reads through the provider in DEFAULT_PROVIDERS["secrets"], positional args in Powertools' order."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    DEFAULT_PROVIDERS["secrets"] = provider
    with stubbed_get(provider, {"SecretId": NAME}, answer(json.dumps({"user": "app"}))) as stubber:
        assert ns.get_secret(NAME, "json", False, 60) == {"user": "app"}
        stubber.assert_no_pending_responses()


def get_secret_after_clear_caches_fetches_again(ns: ModuleType) -> None:
    """After clear_caches() the next get_secret fetches the new value, through the namespace's own provider."""
    admin = boto3.client("secretsmanager", region_name=REGION)
    admin.create_secret(Name=NAME, SecretString="v1")
    assert ns.get_secret(NAME) == "v1"
    admin.put_secret_value(SecretId=NAME, SecretString="v2")
    assert ns.get_secret(NAME) == "v1"  # cached
    ns.clear_caches()
    assert "secrets" not in DEFAULT_PROVIDERS
    assert ns.get_secret(NAME) == "v2"
    assert type(DEFAULT_PROVIDERS["secrets"]) is ns.SecretsProvider


def get_secrets_by_name_reads_each(ns: ModuleType) -> None:
    """get_secrets_by_name returns each name's transformed value."""
    admin = boto3.client("secretsmanager", region_name=REGION)
    admin.create_secret(Name="cfg-a", SecretString='{"a": 1}')
    admin.create_secret(Name="cfg-b", SecretString='{"b": 2}')
    assert ns.get_secrets_by_name(["cfg-a", "cfg-b"], transform="json") == {"cfg-a": {"a": 1}, "cfg-b": {"b": 2}}


def get_secrets_by_name_needs_names(ns: ModuleType) -> None:
    """An empty list raises GetSecretError before any call."""
    with pytest.raises(GetSecretError, match="at least one"):
        ns.get_secrets_by_name([])


def get_multiple_from_a_stubbed_batch(ns: ModuleType) -> None:
    """A provider's get_multiple makes one BatchGetSecretValue call (stubbed) for the names."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    items = [
        {"ARN": f"{ARN[: -len(NAME) - 7]}{name}-AbCdEf", "Name": name, "VersionId": VERSION, "SecretString": name * 2}
        for name in ("one", "two")
    ]
    with Stubber(provider.client) as stubber:
        stubber.add_response("batch_get_secret_value", {"SecretValues": items, "Errors": []})
        assert provider.get_multiple(["one", "two"]) == {"one": "oneone", "two": "twotwo"}
        stubber.assert_no_pending_responses()


def set_secret_updates_or_creates(ns: ModuleType) -> None:
    """set_secret puts a new value, and creates the secret when it does not exist."""
    provider = ns.SecretsProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    DEFAULT_PROVIDERS["secrets"] = provider
    with Stubber(provider.client) as stubber:
        written = {"ARN": ARN, "Name": NAME, "VersionId": VERSION}
        stubber.add_response("put_secret_value", written, {"SecretId": NAME, "SecretString": "x"})
        stubber.add_client_error("put_secret_value", "ResourceNotFoundException", "no such secret", 400)
        stubber.add_response(
            "create_secret", {"ARN": ARN, "Name": "new", "VersionId": VERSION}, {"Name": "new", "SecretString": "y"}
        )
        assert ns.set_secret(NAME, "x")["VersionId"] == VERSION
        assert ns.set_secret("new", "y")["Name"] == "new"
        stubber.assert_no_pending_responses()


SHAPES: list[Callable[[ModuleType], None]] = [
    get_with_config,
    get_with_boto_config,
    get_with_custom_client,
    get_with_session,
    get_default_config,
    get_binary_secret_given_as_str,
    get_binary_secret_given_as_str_decoded,
    get_cached_in_the_provider_store,
    get_expired_store_entry_fetches,
    get_version_id_option,
    get_secret_id_option_is_overwritten,
    second_get_is_served_from_cache,
    get_not_found_raises_get_parameter_error,
    get_secret_uses_the_provider_in_the_slot,
    get_secret_after_clear_caches_fetches_again,
    get_secrets_by_name_reads_each,
    get_secrets_by_name_needs_names,
    get_multiple_from_a_stubbed_batch,
    set_secret_updates_or_creates,
]

GAPS = {
    get_default_config: "SecretsProvider() reads the process-wide default_cache(), which sends VersionStage",
    get_binary_secret_given_as_str: "the cache holds SecretBinary as bytes: a stub's str comes back as its UTF-8 bytes",
    get_cached_in_the_provider_store: "Powertools' per-provider store is bypassed: the cache is the only copy",
}


@pytest.mark.parametrize("kind", sorted(NAMESPACES))
@pytest.mark.parametrize("shape", SHAPES, ids=[shape.__name__ for shape in SHAPES])
def test_powertools_shape(shape: Callable[[ModuleType], None], kind: str, request: pytest.FixtureRequest) -> None:
    """Each of Powertools' secrets test shapes passes on Powertools and, outside GAPS, on secretcache."""
    if kind == "secretcache" and shape in GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=GAPS[shape]))
    shape(NAMESPACES[kind])


# -- what the switch itself promises -------------------------------------------------------------


def test_other_names_are_powertools_own() -> None:
    """Names that are not about secrets resolve to Powertools' own objects."""
    assert our_parameters.get_parameter is powertools_parameters.get_parameter
    assert our_parameters.SSMProvider is powertools_parameters.SSMProvider
    assert our_parameters.exceptions is powertools_parameters.exceptions
    assert our_parameters.SecretsProvider is SecretCacheProvider
    assert {"get_secret", "get_parameter", "SecretsProvider"} <= set(dir(our_parameters))
    with pytest.raises(AttributeError):
        our_parameters.no_such_name  # noqa: B018 - the lookup is the test


def test_get_secret_replaces_the_provider_powertools_built_for_itself() -> None:
    """A SecretsProvider Powertools put in the slot lazily is replaced; an application's own provider is kept."""
    admin = boto3.client("secretsmanager", region_name=REGION)
    admin.create_secret(Name=NAME, SecretString=VALUE)
    assert powertools_parameters.get_secret(NAME) == VALUE  # Powertools fills the slot with its own
    assert our_parameters.get_secret(NAME) == VALUE
    assert type(DEFAULT_PROVIDERS["secrets"]) is SecretCacheProvider
    mine = SecretCacheProvider(SecretCache(boto3.client("secretsmanager", region_name=REGION)))
    DEFAULT_PROVIDERS["secrets"] = mine
    assert our_parameters.get_secret(NAME) == VALUE
    assert DEFAULT_PROVIDERS["secrets"] is mine


def test_provider_refuses_a_cache_with_client_arguments() -> None:
    """cache= and Powertools' client arguments exclude each other; a Config given positionally is named."""
    client = boto3.client("secretsmanager", region_name=REGION)
    with pytest.raises(TypeError, match="cannot be combined with boto3_client"):
        SecretCacheProvider(SecretCache(client), boto3_client=client)
    with pytest.raises(TypeError, match="by keyword"):
        SecretCacheProvider(Config(region_name=REGION))  # type: ignore[arg-type]


def test_provider_with_a_client_sends_only_the_secret_id_and_keeps_one_flight() -> None:
    """The cache a provider builds over boto3_client serves many gets from one stubbed call."""
    provider = SecretCacheProvider(boto3_client=boto3.client("secretsmanager", region_name=REGION))
    with stubbed_get(provider, {"SecretId": NAME}) as stubber:
        for _ in range(5):
            assert provider.get(NAME) == VALUE
        stubber.assert_no_pending_responses()
    assert provider.cache.stats().api_calls["GetSecretValue"] == 1


def test_adapter_uses_only_the_public_api() -> None:
    """The adapter imports from secretcache's public modules only (no store, entry or key helpers)."""
    package = Path(secretcache.compat.powertools.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("secretcache"):
                parts = (node.module or "").split(".")
                inside = parts[:3] == ["secretcache", "compat", "powertools"]
                assert inside or not any(part.startswith("_") for part in parts), f"{path.name}: {node.module}"


def test_transform_errors_through_the_switch_hold_no_value() -> None:
    """Binary data that is not JSON, and text that is not base64, fail as TransformParameterError with no value."""
    admin = boto3.client("secretsmanager", region_name=REGION)
    admin.create_secret(Name="blob.json", SecretBinary=b"{not json: 9c3d")
    admin.create_secret(Name="text", SecretString="not base64 9c3d!")
    for name, transform in (("blob.json", "json"), ("blob.json", "auto"), ("text", "binary")):
        with pytest.raises(our_parameters.TransformParameterError) as got:
            our_parameters.get_secret(name, transform=transform)
        assert_value_absent(got.value, "9c3d")
    assert our_parameters.get_secrets_by_name(["blob.json", "text"], transform="json") == {
        "blob.json": None,
        "text": None,
    }


def test_cold_stampede_through_the_switch_makes_one_call() -> None:
    """16 threads calling get_secret on a cold secret through a boto3_client provider share one GetSecretValue."""
    client = boto3.client("secretsmanager", region_name=REGION)
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=NAME, SecretString=VALUE)
    provider = our_parameters.SecretsProvider(boto3_client=client)
    DEFAULT_PROVIDERS["secrets"] = provider
    calls = Calls(client)
    gate = calls.hold()
    barrier = threading.Barrier(16)

    def read() -> Any:
        barrier.wait(timeout=WATCHDOG)
        return our_parameters.get_secret(NAME)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(read) for _ in range(16)]
        wait_until(lambda: provider.cache.stats().misses == 16)
        gate.set()
        assert [future.result(timeout=WATCHDOG) for future in futures] == [VALUE] * 16
    assert calls["GetSecretValue"] == 1
