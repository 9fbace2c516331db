"""The official adapter as a drop-in: stacked decorators, bad arguments and missing labels, side by side on moto.

Each case runs the same code with the official library and with the adapter and compares what the
caller observes (issue 22 items 2 and 3).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, cast

import botocore.session
import pytest
from botocore.exceptions import BotoCoreError, ParamValidationError
from botocore.stub import Stubber

from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.compat_official import BOTH, MODULES, OFFICIAL, build, new_client
from tests.compat_official import official_sleeps as official_sleeps  # autouse: the original never sleeps
from tests.conftest import WATCHDOG, Calls, inside, wait_until

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-T0KEN-value"


def logged(calls: list[tuple[Any, ...]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A ``functools.wraps`` decorator that records the arguments it is called with."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return func(*args, **kwargs)

        return wrapper

    return decorate


def service(lib: ModuleType, cache: Any, log: list[tuple[Any, ...]]) -> Any:
    """An instance of a class whose methods have another decorator stacked over the injection."""

    class Service:
        @logged(log)
        @lib.InjectSecretString("token", cache)
        def wrapped(self: Any, secret: str, text: str) -> tuple[Any, str, str]:
            return self, secret, text

        @functools.lru_cache(maxsize=16)  # noqa: B019 - the instance lives for one test
        @lib.InjectSecretString("token", cache)
        def cached(self: Any, secret: str, text: str) -> tuple[Any, str, str]:
            return self, secret, text

        @property
        @lib.InjectSecretString("token", cache)
        def prop(self: Any, secret: str) -> tuple[Any, str]:
            return self, secret

    return Service()


@BOTH
def test_a_decorator_stacked_over_injection_still_gets_self_first(lib: ModuleType, admin: Any, client: Any) -> None:
    """functools.wraps, lru_cache and property over InjectSecretString: self first, then the secret, as the original."""
    admin.create_secret(Name="token", SecretString=SECRET)
    log: list[tuple[Any, ...]] = []
    obj = service(lib, build(lib, client), log)
    assert obj.wrapped("a") == (obj, SECRET, "a")
    assert obj.cached("b") == (obj, SECRET, "b")
    assert obj.prop == (obj, SECRET)
    assert log == [(obj, "a")]  # the logging wrapper never saw the secret
    assert all(SECRET not in repr(args) for args in log)


def test_a_same_named_attribute_alone_does_not_make_a_method(admin: Any, client: Any) -> None:
    """Only a class attribute that leads down to this very function counts, not any attribute of that name."""
    admin.create_secret(Name="token", SecretString=SECRET)
    cache = build(adapter, client)

    @adapter.InjectSecretString("token", cache)
    def upper(secret: str, text: str) -> tuple[str, str]:
        return secret, text

    class Other:
        @adapter.InjectSecretString("token", cache)
        def upper(self: Any, secret: str) -> str:  # the same name, another function
            return secret

    other = Other()
    assert upper(other) == (SECRET, other)
    assert upper("abc") == (SECRET, "abc")  # str has an attribute "upper" too


@BOTH
@pytest.mark.parametrize("secret_id", [None, 123, ""], ids=["None", "int", "empty"])
def test_a_bad_secret_id_raises_botocores_param_validation_error(lib: ModuleType, client: Any, secret_id: Any) -> None:
    """get_secret_string(None / 123 / ""): botocore's ParamValidationError (a BotoCoreError), before any call."""
    calls = Calls(client)
    cache = build(lib, client)
    for read in (cache.get_secret_string, cache.get_secret_binary):
        with pytest.raises(ParamValidationError) as caught:
            read(secret_id)
        assert isinstance(caught.value, BotoCoreError)
        assert "SecretId" in str(caught.value)
    assert calls.total == 0


@BOTH
@pytest.mark.parametrize("secret_id", [None, 123, ""], ids=["None", "int", "empty"])
def test_refresh_secret_now_of_a_bad_id_returns_false(lib: ModuleType, client: Any, secret_id: Any) -> None:
    """refresh_secret_now(None) reports a failed refresh, as the original, instead of raising."""
    assert build(lib, client).refresh_secret_now(secret_id) is False


@BOTH
@pytest.mark.parametrize("stage", [5, 1.5, object()], ids=["int", "float", "object"])
def test_a_stage_that_is_not_a_string_reads_none(lib: ModuleType, admin: Any, client: Any, stage: Any) -> None:
    """get_secret_string("x", 5): no version carries such a label, so None, as the original."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = build(lib, client)
    assert cache.get_secret_string("db", stage) is None
    assert cache.get_secret_binary("db", stage) is None
    assert cache.get_secret_string("db", 0) == SECRET  # a falsy stage means the default, in both
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        cache.get_secret_string("nosuch", stage)  # the secret itself is still looked up


def test_a_missing_label_reads_none_and_a_missing_secret_raises(admin: Any) -> None:
    """A label no version carries returns None (the original's answer); a missing secret still raises."""
    admin.create_secret(Name="db", SecretString=SECRET)
    seen = {}
    for lib in MODULES:
        client = new_client()
        cache = build(lib, client)
        seen[lib] = [cache.get_secret_string("db", "AWSPENDING"), cache.get_secret_binary("db", "NOSUCHLABEL")]
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            cache.get_secret_string("nosuch", "AWSPENDING")
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            cache.get_secret_string("nosuch")
    assert seen == {OFFICIAL: [None, None], adapter: [None, None]}


def test_a_missing_label_costs_one_describe_per_fetch(admin: Any, client: Any, calls: Calls) -> None:
    """DescribeSecret tells a missing label from a missing secret once per fetch, not once per read."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = build(adapter, client)
    for _ in range(5):
        assert cache.get_secret_string("db", "AWSPENDING") is None
    assert (calls["GetSecretValue"], calls["DescribeSecret"]) == (1, 1)  # the not-found is remembered meanwhile

    def refuse_describe(operation: str, _params: dict[str, Any]) -> None:
        if operation == "DescribeSecret":
            raise client.exceptions.ClientError({"Error": {"Code": "AccessDeniedException"}}, operation)

    remove = calls.add_fault(refuse_describe)  # DescribeSecret not allowed: the GetSecretValue error stands
    other = build(adapter, client)
    for _ in range(2):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            other.get_secret_string("db", "AWSPENDING")
    remove()  # allowed again: that answer was not kept, the next read asks again
    assert other.get_secret_string("db", "AWSPENDING") is None


def test_concurrent_readers_of_a_missing_label_share_one_describe(admin: Any, client: Any, calls: Calls) -> None:
    """16 readers meeting one ResourceNotFoundException at once: one GetSecretValue and one DescribeSecret."""
    admin.create_secret(Name="db", SecretString=SECRET)
    cache = build(adapter, client)
    gate = threading.Event()
    calls.add_fault(lambda operation, _params: operation == "DescribeSecret" and gate.wait(timeout=WATCHDOG))
    barrier = threading.Barrier(16)

    def read() -> str | None:
        barrier.wait(timeout=WATCHDOG)
        return cast("str | None", cache.get_secret_string("db", "AWSPENDING"))

    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="reader") as pool:
        futures = [pool.submit(read) for _ in range(16)]
        readers = lambda: [thread for thread in threading.enumerate() if thread.name.startswith("reader")]  # noqa: E731
        wait_until(  # every reader is in _exists, asking or waiting for the one who asks
            lambda: (
                len(readers()) == 16
                and all(inside(t, adapter.SecretCache._exists) and inside(t, threading.Event.wait) for t in readers())
            )
        )
        gate.set()
        assert [future.result(timeout=WATCHDOG) for future in futures] == [None] * 16
    assert (calls["GetSecretValue"], calls["DescribeSecret"]) == (1, 1)


def test_reads_name_the_staging_label_even_for_awscurrent() -> None:
    """The adapter always sends VersionStage (AWSCURRENT too): a Stubber must expect exactly that."""
    client = botocore.session.get_session().create_client("secretsmanager", region_name="us-west-2")
    stubber = Stubber(client)
    for label in ("AWSCURRENT", "AWSPREVIOUS"):
        stubber.add_response("get_secret_value", {"SecretString": SECRET}, {"SecretId": "db", "VersionStage": label})
    with stubber:
        cache = adapter.SecretCache(client=client)
        assert [cache.get_secret_string("db") for _ in range(3)] == [SECRET] * 3
        assert cache.get_secret_string("db", "AWSPREVIOUS") == SECRET
        stubber.assert_no_pending_responses()
