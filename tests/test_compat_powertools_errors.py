"""The Powertools provider's errors: Powertools' exception types, never a secret value.

Also the stale value served in an outage, where Powertools raises.

Each test runs Powertools' own ``SecretsProvider`` on the same secrets where it makes sense and
compares. The shared set-up is in ``tests/compat_powertools.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import (
    GetParameterError,
    GetSecretError,
    TransformParameterError,
)

from secretcache import SecretCache, SecretNotFoundError
from secretcache.compat.powertools import SecretCacheProvider
from tests.compat_powertools import DB
from tests.compat_powertools import cache as cache  # a fixture
from tests.compat_powertools import fresh_globals as fresh_globals  # autouse
from tests.compat_powertools import ours as ours  # a fixture
from tests.compat_powertools import secrets as secrets  # a fixture
from tests.compat_powertools import theirs as theirs  # a fixture
from tests.compat_powertools import theirs_client as theirs_client  # a fixture
from tests.conftest import Calls, FakeClock
from tests.leaks import assert_value_absent, leaks_of

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


def test_binary_json_nested_too_deeply_fails_as_a_transform_error(
    ours: SecretCacheProvider, theirs: SecretsProvider, admin: Any
) -> None:
    """Binary JSON too deep to parse is a TransformParameterError, as in Powertools (get and get_multiple)."""
    deep = "[" * 100_000 + '"deep-5e0a"' + "]" * 100_000
    admin.create_secret(Name="deep.json", SecretBinary=deep.encode())
    admin.create_secret(Name="flat", SecretString='{"a": 1}')
    for transform in ("json", "auto"):
        with pytest.raises(TransformParameterError, match="Unable to transform value"):
            theirs.get("deep.json", transform=transform)
        with pytest.raises(TransformParameterError, match=r"Unable to transform value .* too deeply") as got:
            ours.get("deep.json", transform=transform)
        assert_value_absent(got.value, "deep-5e0a")
    names = ["deep.json", "flat"]
    expected = {"deep.json": None, "flat": {"a": 1}}
    assert ours.get_multiple(names, transform="json") == theirs.get_multiple(names, transform="json") == expected
    for provider in (theirs, ours):
        with pytest.raises(TransformParameterError):
            provider.get_multiple(names, transform="json", raise_on_transform_error=True, force_fetch=True)


def test_get_multiple_binary_that_is_not_utf8_is_none_where_powertools_raises(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """Powertools' batch lets UnicodeDecodeError (holding the bytes) escape; ours gives None or a transform error."""
    with pytest.raises(UnicodeDecodeError):
        theirs.get_multiple(["db", "not-utf8"], transform="json")
    assert ours.get_multiple(["db", "not-utf8"], transform="json") == {"db": DB, "not-utf8": None}
    with pytest.raises(TransformParameterError, match="not UTF-8") as got:
        ours.get_multiple(["not-utf8"], transform="json", raise_on_transform_error=True)
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
