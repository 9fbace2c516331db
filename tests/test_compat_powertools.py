"""The Powertools provider: Powertools' API and errors, secretcache's single flight and outages.

Where it makes sense, each test runs Powertools' own ``SecretsProvider`` on the same secrets (with
its own client, counted separately) and compares.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters import BaseProvider, SecretsProvider
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.exceptions import (
    GetParameterError,
    GetSecretError,
    TransformParameterError,
)

from secretcache import SecretCache, SecretNotFoundError, SecretUnavailableError
from secretcache.aws_lambda import default_cache, reset_default_cache
from secretcache.compat.powertools import SecretCacheProvider, install, uninstall
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock, wait_until
from tests.leaks import assert_value_absent, leaks_of
from tests.test_cache import make_cache

DB = {"username": "app", "password": "pw-6c1f"}


@pytest.fixture(autouse=True)
def _fresh_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
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


def test_get_returns_what_powertools_returns(ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None) -> None:
    """Strings come back as str and binary secrets as the SecretBinary bytes, as with SecretsProvider."""
    for name in ("db", "plain", "blob", "not-utf8"):
        assert ours.get(name) == theirs.get(name)
        assert type(ours.get(name)) is type(theirs.get(name))
    assert ours.get("blob") == b"\x00\x01raw"
    assert isinstance(ours, BaseProvider)


def test_repeated_gets_make_one_call_and_leave_powertools_store_empty(
    ours: SecretCacheProvider, calls: Calls, secrets: None
) -> None:
    """Gets within the TTL are hits of the cache; Powertools' per-provider store is never filled."""
    for _ in range(5):
        assert ours.get("plain") == "text-9d2a"
    assert calls["GetSecretValue"] == 1
    assert ours.store == {}


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("db", "json"),
        ("cfg.json", "json"),
        ("b64", "binary"),
        ("blob64.binary", "binary"),
        ("cfg.json", "auto"),
        ("blob64.binary", "auto"),
        ("plain", "auto"),
        ("blob64.binary", None),
    ],
)
def test_transforms_match_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None, name: str, transform: Any
) -> None:
    """json, binary and auto give what Powertools gives, of the same type."""
    expected = theirs.get(name, transform=transform)
    got = ours.get(name, transform=transform)
    assert got == expected
    assert type(got) is type(expected)


def test_binary_secrets_are_decoded_as_utf8_before_a_transform_like_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, admin: Any
) -> None:
    """Powertools decodes binary values as UTF-8 before any transform, "auto" without a suffix included."""
    admin.create_secret(Name="utf8-blob", SecretBinary=b"caf\xc3\xa9")
    admin.create_secret(Name="json-blob", SecretBinary=b'{"a": [1, 2]}')
    assert ours.get("utf8-blob", transform="auto") == theirs.get("utf8-blob", transform="auto") == "café"
    assert ours.get("json-blob", transform="json") == theirs.get("json-blob", transform="json") == {"a": [1, 2]}


def test_json_is_a_private_copy_and_one_fetch_serves_every_transform(
    ours: SecretCacheProvider, theirs: SecretsProvider, calls: Calls, theirs_client: Any, secrets: None
) -> None:
    """Raw and JSON reads share one fetch, and changing a returned dict changes no later read."""
    theirs_calls = Calls(theirs_client)
    providers: list[Any] = [ours, theirs]  # Powertools types get() as a union
    for provider in providers:
        provider.get("db")
        provider.get("db", transform="json")["password"] = "changed"
    assert ours.get("db", transform="json") == DB
    assert calls["GetSecretValue"] == 1
    assert providers[1].get("db", transform="json")["password"] == "changed"  # Powertools hands out its cached dict
    assert theirs_calls["GetSecretValue"] == 2  # one per transform


def test_force_fetch_refreshes_now(ours: SecretCacheProvider, admin: Any, calls: Calls, secrets: None) -> None:
    """force_fetch=True fetches a fresh value even within the TTL; other reads keep the cached one."""
    assert ours.get("plain") == "text-9d2a"
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    assert ours.get("plain") == "text-9d2a"
    assert ours.get("plain", force_fetch=True) == "rotated"
    assert ours.get("plain") == "rotated"
    assert calls["GetSecretValue"] == 2


def test_max_age_is_the_ttl_of_what_a_read_fetches(
    ours: SecretCacheProvider, admin: Any, calls: Calls, clock: FakeClock, secrets: None
) -> None:
    """max_age=10 fetched value lives 10 s (the cache's own TTL is 60 s), and its refreshes keep it."""
    assert ours.get("plain", max_age=10) == "text-9d2a"
    clock.advance(9)
    assert ours.get("plain", max_age=10) == "text-9d2a"
    assert calls["GetSecretValue"] == 1
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    clock.advance(2)
    assert ours.get("plain", max_age=10) == "rotated"
    assert calls["GetSecretValue"] == 2
    clock.advance(11)
    assert ours.get("plain") == "rotated"  # max_age=None resolves to 300 s, but only for a fetch
    assert calls["GetSecretValue"] == 3


def test_max_age_none_reads_the_powertools_variable(
    ours: SecretCacheProvider, calls: Calls, clock: FakeClock, secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without max_age, POWERTOOLS_PARAMETERS_MAX_AGE sets the TTL, as in Powertools."""
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "5")
    ours.get("plain")
    clock.advance(4)
    ours.get("plain")
    assert calls["GetSecretValue"] == 1
    clock.advance(2)
    ours.get("plain")
    assert calls["GetSecretValue"] == 2


def test_max_age_zero_fetches_every_time(ours: SecretCacheProvider, calls: Calls, secrets: None) -> None:
    """max_age <= 0 caches nothing in Powertools: every read fetches."""
    for max_age in (0, 0, -1):
        ours.get("plain", max_age=max_age)
    assert calls["GetSecretValue"] == 3


def test_version_options_are_cached_per_version(
    ours: SecretCacheProvider, theirs: SecretsProvider, admin: Any, secrets: None
) -> None:
    """VersionStage reads that version; Powertools' store ignores SDK options and returns AWSCURRENT."""
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    for provider in (ours, theirs):
        assert provider.get("plain") == "rotated"
    assert ours.get("plain", VersionStage="AWSPREVIOUS") == "text-9d2a"
    assert theirs.get("plain", VersionStage="AWSPREVIOUS") == "rotated"  # Powertools' cache key is (name, transform)
    version_id = admin.describe_secret(SecretId="plain")["VersionIdsToStages"]
    previous = next(vid for vid, stages in version_id.items() if "AWSPREVIOUS" in stages)
    assert ours.get("plain", VersionId=previous) == "text-9d2a"


ERROR_CASES = [
    pytest.param("missing", {}, id="not-found"),
    pytest.param("bad-json", {"transform": "json"}, id="invalid-json"),
    pytest.param("bad-json", {"transform": "json", "force_fetch": True}, id="invalid-json-forced"),
    pytest.param("bad-b64", {"transform": "binary"}, id="invalid-base64"),
    pytest.param("db", {"transform": "binary"}, id="json-as-base64"),
    pytest.param("plain", {"transform": "yaml"}, id="unknown-transform"),
    pytest.param(123, {}, id="name-not-a-str"),
    pytest.param("", {}, id="empty-name"),
    pytest.param("plain", {"Foo": 1}, id="unknown-sdk-option"),
    pytest.param("plain", {"VersionStage": "NOPE"}, id="missing-stage"),
    pytest.param("plain", {"VersionId": "0" * 40}, id="missing-version"),
]


@pytest.mark.parametrize(("name", "options"), ERROR_CASES)
def test_errors_have_powertools_types_and_no_values(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None, name: Any, options: dict[str, Any]
) -> None:
    """On the same input both providers raise the same exception type; ours never carries a value."""
    with pytest.raises(Exception) as expected:  # noqa: PT011 - any type: compared below
        theirs.get(name, **options)
    with pytest.raises(type(expected.value)) as got:
        ours.get(name, **options)
    assert type(got.value) is type(expected.value)
    for value in ("{not json: 4e1b", "not base64!", "pw-6c1f", "text-9d2a"):
        assert_value_absent(got.value, value)


def test_powertools_json_error_drags_the_document_along_and_ours_does_not(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """Powertools chains json's error, whose ``doc`` is the secret; ours chains a message with a position."""
    with pytest.raises(TransformParameterError) as expected:
        theirs.get("bad-json", transform="json")
    assert list(leaks_of(expected.value, "{not json: 4e1b"))
    with pytest.raises(TransformParameterError, match=r"'json' transform: .*'bad-json' is not valid JSON") as got:
        ours.get("bad-json", transform="json")
    assert_value_absent(got.value, "{not json: 4e1b")


def test_binary_that_is_not_utf8_fails_as_a_transform_error(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """Powertools lets a raw UnicodeDecodeError (holding the bytes) escape; ours raises TransformParameterError."""
    for transform in ("json", "binary", "auto"):
        with pytest.raises(UnicodeDecodeError) as expected:
            theirs.get("not-utf8", transform=transform)
        assert list(leaks_of(expected.value, b"secret-b7"))
        with pytest.raises(TransformParameterError, match="not UTF-8") as got:
            ours.get("not-utf8", transform=transform)
        assert_value_absent(got.value, b"secret-b7")


def test_read_errors_chain_the_typed_secretcache_error(ours: SecretCacheProvider, secrets: None) -> None:
    """A GetParameterError names the secret and has the typed error as its cause."""
    with pytest.raises(GetParameterError, match="missing") as raised:
        ours.get("missing")
    assert isinstance(raised.value.__cause__, SecretNotFoundError)


def test_bad_arguments_fail_before_any_call(ours: SecretCacheProvider, calls: Calls, secrets: None) -> None:
    """An unknown transform, SDK option or a max_age that is not a number makes no call."""
    with pytest.raises(TransformParameterError, match="unknown transform"):
        ours.get("plain", transform="yaml")  # type: ignore[call-overload]
    with pytest.raises(GetParameterError, match="Foo"):
        ours.get("plain", Foo=1)
    with pytest.raises(TypeError, match="max_age"):
        ours.get("plain", max_age="60")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="NaN"):
        ours.get("plain", max_age=float("nan"))  # type: ignore[call-overload]
    with pytest.raises(GetSecretError, match="Filters"):
        ours.get_multiple(["plain"], Filters=[])
    with pytest.raises(GetSecretError, match="list of secret names"):
        ours.get_multiple("plain")  # type: ignore[arg-type]
    assert calls.total == 0


def test_a_closed_cache_fails_reads_with_powertools_errors(cache: SecretCache, secrets: None) -> None:
    """Reads through a closed cache raise GetParameterError or GetSecretError, not RuntimeError."""
    provider = SecretCacheProvider(cache)
    cache.close()
    with pytest.raises(GetParameterError, match="closed"):
        provider.get("plain")
    for force_fetch in (False, True):
        with pytest.raises(GetSecretError, match="closed"):
            provider.get_multiple(["plain"], force_fetch=force_fetch)


def test_get_multiple_reads_exactly_the_names_in_one_batch(
    ours: SecretCacheProvider, theirs: SecretsProvider, calls: Calls, secrets: None
) -> None:
    """One BatchGetSecretValue for cold names; missing names are left out; no prefix matches added."""
    got = ours.get_multiple(["db", "plain", "missing"])
    assert got == {"db": json.dumps(DB), "plain": "text-9d2a"}
    assert calls["BatchGetSecretValue"] == 1
    assert calls["GetSecretValue"] == 0
    assert ours.get("db") == json.dumps(DB)  # the batch warmed the same entries get() reads
    assert calls.total == 1
    expected = theirs.get_multiple(["db", "plain", "missing"])
    assert expected == {**got, "db-old": "prefix-of-db"}  # Powertools' name filter matches prefixes


def test_get_multiple_transforms_like_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """Transforms apply per value; a failed one is None unless raise_on_transform_error is set."""
    names = ["cfg.json", "blob64.binary", "plain", "bad-json"]
    got = ours.get_multiple(names, transform="auto")
    assert got == theirs.get_multiple(names, transform="auto")
    assert got == {
        "cfg.json": {"level": "debug"},
        "blob64.binary": b"bytes-inside",
        "plain": "text-9d2a",
        "bad-json": "{not json: 4e1b",
    }
    assert ours.get_multiple(["db", "bad-json"], transform="json") == {"db": DB, "bad-json": None}
    with pytest.raises(TransformParameterError):
        ours.get_multiple(["db", "bad-json"], transform="json", raise_on_transform_error=True)
    with pytest.raises(TransformParameterError):
        theirs.get_multiple(["db", "bad-json"], transform="json", raise_on_transform_error=True)


@pytest.mark.parametrize(
    "names", [[], ["missing"], ["missing", "also-missing"], "db"], ids=["empty", "one", "two", "a-str"]
)
def test_get_multiple_errors_match_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None, names: list[str]
) -> None:
    """No names, or nothing found: GetSecretError from both."""
    with pytest.raises(GetSecretError):
        theirs.get_multiple(names)
    with pytest.raises(GetSecretError):
        ours.get_multiple(names)


def test_get_multiple_raises_on_an_outage_with_nothing_cached(
    ours: SecretCacheProvider, calls: Calls, secrets: None
) -> None:
    """Throttling that outlives the retries is an error, not a silently missing secret."""
    calls.fail_with("ThrottlingException")
    with pytest.raises(GetSecretError, match="Failed to retrieve secrets") as raised:
        ours.get_multiple(["db", "plain"])
    assert isinstance(raised.value.__cause__, SecretUnavailableError)


def test_get_multiple_force_fetch_and_max_age_zero_read_one_by_one(
    ours: SecretCacheProvider, calls: Calls, secrets: None
) -> None:
    """A batch can neither force nor apply max_age: those reads use GetSecretValue per name."""
    for _ in range(2):
        assert ours.get_multiple(["db", "plain"], max_age=0) == {"db": json.dumps(DB), "plain": "text-9d2a"}
    ours.get_multiple(["db", "plain"], force_fetch=True)
    assert calls["BatchGetSecretValue"] == 0
    assert calls["GetSecretValue"] == 6


def test_stale_on_error_serves_the_cached_value_where_powertools_raises(
    ours: SecretCacheProvider,
    theirs: SecretsProvider,
    calls: Calls,
    theirs_client: Any,
    clock: FakeClock,
    secrets: None,
) -> None:
    """Throttling after warm-up: we serve the last good value (expired or forced); Powertools raises."""
    assert ours.get("plain", max_age=10) == theirs.get("plain") == "text-9d2a"
    calls.fail_with("ThrottlingException")
    Calls(theirs_client).fail_with("ThrottlingException")
    clock.advance(11)
    assert ours.get("plain", max_age=10) == "text-9d2a"
    assert ours.get("plain", force_fetch=True) == "text-9d2a"
    assert ours.cache.stats().stale_served >= 1
    with pytest.raises(GetParameterError, match="ThrottlingException"):
        theirs.get("plain", force_fetch=True)


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
