"""secretcache.compat.aws_secretsmanager_caching against the official library: the README's examples and reads.

Each example runs on both modules, side by side on moto, and must give the same result; the
README's snippets run unchanged apart from the import. The official library's ``time.sleep()`` is
replaced (``tests/compat_official.py``), so nothing waits.
"""

from __future__ import annotations

import contextlib
import json
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import secretcache
from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.compat_official import BOTH, MODULES, build, new_client, same
from tests.compat_official import official_sleeps as official_sleeps  # autouse: the original never sleeps
from tests.conftest import Calls
from tests.test_cache import rotate

pytestmark = pytest.mark.timeout(60)  # a hang fails the test instead of the run


# -- the README, unchanged apart from the import --------------------------------------------------


README_USAGE = """
import botocore
import botocore.session
from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

client = botocore.session.get_session().create_client('secretsmanager')
cache_config = SecretCacheConfig() # See below for defaults
cache = SecretCache(config=cache_config, client=client)

secret = cache.get_secret_string('mysecret')
"""


README_REFRESH = """
refreshed = cache.refresh_secret_now('mysecret')  # bool
secret = cache.get_secret_string('mysecret')
"""


README_KEYWORDED = """
from aws_secretsmanager_caching import SecretCache
from aws_secretsmanager_caching import InjectKeywordedSecretString, InjectSecretString

cache = SecretCache()

@InjectKeywordedSecretString(secret_id='mysecret', cache=cache, func_username='username', func_password='password')
def function_to_be_decorated(func_username, func_password):
    print('Something cool is being done with the func_username and func_password arguments here')
    ...
"""


# The README's second function has only comments for a body, which is not Python: the last line
# is the one addition.


README_POSITIONAL = """
@InjectSecretString('mysimplesecret', cache)
def function_to_be_decorated(arg1, arg2, arg3):
    # arg1 contains the cache lookup result of the 'mysimplesecret' secret.
    # arg2 and arg3, in this example, must still be passed when calling function_to_be_decorated().
    return arg1, arg2, arg3
"""


def run(snippet: str, lib: ModuleType, namespace: dict[str, Any]) -> dict[str, Any]:
    """Run a README snippet with ``lib`` imported in place of the official module."""
    exec(snippet.replace("aws_secretsmanager_caching", lib.__name__), namespace)  # noqa: S102 - the README's code
    return namespace


def fresh_secret(admin: Any, name: str, value: str) -> None:
    """Create the secret ``name`` anew, dropping any earlier one (each module starts from the same state)."""
    with contextlib.suppress(admin.exceptions.ResourceNotFoundException):
        admin.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    admin.create_secret(Name=name, SecretString=value)


def test_readme_usage_and_forced_refresh(admin: Any) -> None:
    """The README's usage example reads the secret; its refresh example picks up a rotation at once."""

    def example(lib: ModuleType) -> tuple[Any, ...]:
        fresh_secret(admin, "mysecret", "pw-1")
        namespace = run(README_USAGE, lib, {})
        first = namespace["secret"]
        rotate(admin, "mysecret", "pw-2")
        run(README_REFRESH, lib, namespace)
        return first, namespace["refreshed"], namespace["secret"]

    assert same(example) == ("pw-1", True, "pw-2")


def test_readme_decorator_examples(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's decorators inject JSON keys by keyword and a plain secret as the first argument."""
    admin = new_client()
    admin.create_secret(Name="mysecret", SecretString=json.dumps({"username": "app", "password": "pw"}))
    admin.create_secret(Name="mysimplesecret", SecretString="token")

    def example(lib: ModuleType) -> tuple[Any, ...]:
        namespace = run(README_KEYWORDED, lib, {})
        printed = namespace["function_to_be_decorated"]()
        run(README_POSITIONAL, lib, namespace)
        return printed, namespace["function_to_be_decorated"]("b", "c")

    assert same(example) == (None, ("token", "b", "c"))
    assert capsys.readouterr().out.count("Something cool") == 2


# -- reads ------------------------------------------------------------------------------------------


@BOTH
def test_string_and_binary_secrets(lib: ModuleType, admin: Any, client: Any) -> None:
    """Each getter returns its own kind of value and None for the other kind, like the original."""
    admin.create_secret(Name="text", SecretString="pw")
    admin.create_secret(Name="blob", SecretBinary=b"\x00\x01")
    cache = build(lib, client)
    assert cache.get_secret_string("text") == "pw"
    assert cache.get_secret_binary("text") is None
    assert cache.get_secret_binary("blob") == b"\x00\x01"
    assert cache.get_secret_string("blob") is None
    assert cache.get_secret_string("text", "AWSCURRENT") == "pw"


def test_a_label_no_version_can_carry_is_not_refreshed(admin: Any) -> None:
    """A label too long to exist reads None, as the original; refresh_secret_now then still succeeds
    (the adapter does not remember it among the labels to refresh, which would fail every time)."""

    def example(lib: ModuleType) -> list[Any]:
        fresh_secret(admin, "db", "v1")
        cache = build(lib, new_client())
        return [
            cache.get_secret_string("db", "X" * 300),
            cache.refresh_secret_now("db"),
            cache.refresh_secret_now("db"),
        ]

    assert same(example) == [None, True, True]


def test_staging_labels_through_rotations(admin: Any) -> None:
    """AWSCURRENT, AWSPENDING and AWSPREVIOUS follow two rotations once refresh_secret_now is called."""

    def example(lib: ModuleType) -> list[Any]:
        fresh_secret(admin, "db", "v1")
        cache = build(lib, new_client())
        seen = [cache.get_secret_string("db")]
        rotate(admin, "db", "v2")
        seen += [cache.refresh_secret_now("db"), cache.get_secret_string("db")]
        seen += [cache.get_secret_string("db", version_stage=stage) for stage in ("AWSPENDING", "AWSPREVIOUS")]
        rotate(admin, "db", "v3")  # the labels read above have moved: the refresh must see to them too
        seen += [cache.refresh_secret_now("db")]
        seen += [cache.get_secret_string("db", stage) for stage in ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS")]
        return seen

    assert same(example) == ["v1", True, "v2", "v2", "v1", True, "v3", "v3", "v2"]


@BOTH
def test_default_version_stage_applies_to_reads_without_one(lib: ModuleType, admin: Any, client: Any) -> None:
    """default_version_stage is the label of reads that name none; an explicit label still wins."""
    admin.create_secret(Name="db", SecretString="v1")
    rotate(admin, "db", "v2")
    cache = build(lib, client, default_version_stage="AWSPREVIOUS")
    assert cache.get_secret_string("db") == "v1"
    assert cache.get_secret_string("db", "AWSCURRENT") == "v2"
    assert cache.refresh_secret_now("db") is True


def test_refresh_secret_now_of_a_missing_default_label_succeeds(admin: Any) -> None:
    """A default_version_stage no version carries reads None and refresh_secret_now says True, as the original
    (the secret exists); a missing secret still says False."""

    def example(lib: ModuleType) -> list[Any]:
        fresh_secret(admin, "db", "v1")
        cache = build(lib, new_client(), default_version_stage="AWSPENDING")
        return [
            cache.refresh_secret_now("db"),
            cache.get_secret_string("db"),
            cache.refresh_secret_now("db"),
            cache.refresh_secret_now("missing"),
        ]

    assert same(example) == [True, None, True, False]


@BOTH
def test_missing_secret_raises_the_botocore_error(lib: ModuleType, client: Any) -> None:
    """A missing secret raises the client's ResourceNotFoundException, and refresh_secret_now says False."""
    cache = build(lib, client)
    for _ in range(2):  # the second read gets the remembered error, without a call
        with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
            cache.get_secret_binary("missing")
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert cache.refresh_secret_now("missing") is False
    if lib is adapter:
        assert isinstance(caught.value.__cause__, secretcache.SecretNotFoundError)


def test_connection_errors_raise_the_botocore_error(client: Any, calls: Calls) -> None:
    """A connection failure on a cold key raises botocore's EndpointConnectionError from both libraries."""
    calls.raise_error(EndpointConnectionError(endpoint_url="https://secretsmanager.invalid"))
    for lib in MODULES:
        with pytest.raises(EndpointConnectionError, match=r"secretsmanager\.invalid"):
            build(lib, client).get_secret_string("db")


def test_errors_without_a_copyable_botocore_error_stay_typed(client: Any, calls: Calls) -> None:
    """Without a botocore error to copy (bad input, an unusual ClientError subclass) the typed error is raised."""

    class OddError(ClientError):
        def __init__(self, code: str) -> None:
            super().__init__({"Error": {"Code": code, "Message": "odd"}}, "GetSecretValue")

    cache = build(adapter, client)
    with pytest.raises(secretcache.InvalidSecretRequestError):
        cache.get_secret_string(" ")  # botocore passes a blank id on; secretcache refuses it before a call
    calls.raise_error(OddError("ResourceNotFoundException"))
    with pytest.raises(secretcache.SecretNotFoundError) as caught:
        cache.get_secret_string("db")
    assert isinstance(caught.value.__cause__, OddError)


def test_labels_remembered_for_refresh_are_bounded(admin: Any, client: Any, calls: Calls) -> None:
    """refresh_secret_now refetches the default label and the last max_cache_size other labels first read."""
    admin.create_secret(Name="db", SecretString="v1")
    old, _new = rotate(admin, "db", "v2")
    admin.update_secret_version_stage(SecretId="db", VersionStage="BLUE", MoveToVersionId=old)
    cache = build(adapter, client, max_cache_size=2)
    for label in ("AWSPENDING", "AWSPREVIOUS", "AWSCURRENT", "BLUE", "AWSPREVIOUS"):
        cache.get_secret_string("db", label)
    before = calls["GetSecretValue"]
    assert cache.refresh_secret_now("db") is True
    assert calls["GetSecretValue"] - before == 3  # AWSCURRENT, AWSPREVIOUS and BLUE: AWSPENDING was forgotten
