"""secretcache.compat.aws_secretsmanager_caching against the official library, side by side on moto.

Each example runs on both modules and must give the same result; the documented differences are
asserted one by one. The official library reads ``datetime.now()`` and calls ``time.sleep()``
from its ``cache.items`` module: both are replaced there, so nothing waits and time moves only
when a test says so.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import linecache
import pickle
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import ModuleType, SimpleNamespace
from typing import Any, TypeVar, cast

import boto3
import pytest
from aws_secretsmanager_caching.cache import items as official_items
from botocore.exceptions import ClientError, EndpointConnectionError

import secretcache
from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock, wait_until
from tests.test_cache import rotate

pytestmark = pytest.mark.timeout(60)  # a hang fails the test instead of the run

OFFICIAL = importlib.import_module("aws_secretsmanager_caching")
MODULES = [OFFICIAL, adapter]
BOTH = pytest.mark.parametrize("lib", MODULES, ids=["official", "adapter"])

_T = TypeVar("_T")


class Clocks:
    """Moves the adapter's FakeClock and the official library's ``datetime.now()`` together."""

    def __init__(self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = clock
        self.offset = timedelta(0)
        start = datetime(2030, 1, 1, tzinfo=timezone.utc)
        clocks = self

        class FrozenDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return start + clocks.offset

        monkeypatch.setattr(official_items, "datetime", FrozenDatetime)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clocks(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Clocks:
    return Clocks(clock, monkeypatch)


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


# -- decorators -------------------------------------------------------------------------------------


@BOTH
def test_decorators_keep_the_original_calling_conventions(lib: ModuleType, admin: Any, client: Any) -> None:
    """Keyword injection with extra positional and keyword arguments, and injection first or after self."""
    admin.create_secret(Name="db", SecretString=json.dumps({"username": "app", "password": "pw", "port": 5432}))
    admin.create_secret(Name="token", SecretString="t0k3n")
    cache = build(lib, client)

    @lib.InjectKeywordedSecretString(secret_id="db", cache=cache, func_username="username", func_password="password")
    def login(func_username: str, func_password: str, keyworded_argument: str = "foo") -> tuple[str, ...]:
        """Log in."""
        return func_username, func_password, keyworded_argument

    @lib.InjectKeywordedSecretString("db", cache, arg2="username", arg3="port")
    def mixed(arg1: str, arg2: str, arg3: int, arg4: str = "bar") -> tuple[Any, ...]:
        return arg1, arg2, arg3, arg4

    @lib.InjectSecretString("token", cache)
    def call(arg1: str, arg2: str, arg3: str) -> tuple[str, ...]:
        return arg1, arg2, arg3

    class Client:
        @lib.InjectSecretString("token", cache)
        def connect(self, secret: str, host: str) -> tuple[Any, ...]:
            return self, secret, host

    client_object = Client()
    assert login() == ("app", "pw", "foo")
    assert login(keyworded_argument="x") == ("app", "pw", "x")
    assert (login.__name__, login.__doc__) == ("login", "Log in.")
    assert mixed("foo") == ("foo", "app", 5432, "bar")
    assert call("foo", "bar") == ("t0k3n", "foo", "bar")
    assert call(arg2="foo", arg3="bar") == ("t0k3n", "foo", "bar")
    assert client_object.connect("h") == (client_object, "t0k3n", "h")
    assert Client.connect(client_object, "h") == (client_object, "t0k3n", "h")
    assert Client.connect.__name__ == client_object.connect.__name__ == "connect"


@BOTH
def test_decorator_errors_match_the_original(lib: ModuleType, admin: Any, client: Any) -> None:
    """A missing JSON key and a secret that is not JSON both raise RuntimeError with the original's words."""
    admin.create_secret(Name="db", SecretString=json.dumps({"username": "app"}))
    admin.create_secret(Name="plain", SecretString="not json")
    cache = build(lib, client)

    @lib.InjectKeywordedSecretString("db", cache, user="username", password="password")
    def missing_key(user: str, password: str) -> None:
        raise AssertionError("not called")

    @lib.InjectKeywordedSecretString("plain", cache, user="username")
    def not_json(user: str) -> None:
        raise AssertionError("not called")

    with pytest.raises(RuntimeError, match=r"^Cached secret does not contain key password") as caught:
        missing_key()
    assert "app" not in str(caught.value)
    with pytest.raises(RuntimeError, match=r"^Cached secret is not valid JSON") as caught:
        not_json()
    assert caught.value.__cause__ is None  # json's error would carry the value
    assert "not json" not in str(caught.value)


def test_json_that_is_not_an_object_raises_runtime_error(admin: Any, client: Any) -> None:
    """A JSON array or a binary secret raise RuntimeError where the original leaks a TypeError."""
    admin.create_secret(Name="list", SecretString='["a"]')
    admin.create_secret(Name="blob", SecretBinary=b"\x00")
    for name, message in (("list", "not a JSON object"), ("blob", "holds binary data")):
        for lib, error in ((OFFICIAL, TypeError), (adapter, RuntimeError)):
            read = lib.InjectKeywordedSecretString(name, build(lib, client), user="username")(lambda user: user)
            with pytest.raises(error) as caught:
                read()
            assert lib is OFFICIAL or message in str(caught.value)


def _module_level(secret: str) -> str:
    return secret


_module_level = adapter.InjectSecretString("id", cast(Any, None))(_module_level)  # type: ignore[assignment]


def test_decorated_function_pickles_by_name() -> None:
    """A decorated module-level function pickles by reference, as a function does."""
    assert pickle.loads(pickle.dumps(_module_level)) is _module_level  # noqa: S301 - our own bytes


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


# -- documented differences -------------------------------------------------------------------------


def test_cold_stampede_of_32_threads_makes_one_call(admin: Any) -> None:
    """32 threads on a cold key: one GetSecretValue with the adapter; the original's lock serialises its two calls."""
    admin.create_secret(Name="db", SecretString="pw")
    counts = {}
    for lib in MODULES:
        client = new_client()
        calls = Calls(client)
        gate = calls.hold()
        cache = build(lib, client)
        barrier = threading.Barrier(32)

        def read(cache: Any = cache, barrier: threading.Barrier = barrier) -> str:
            barrier.wait(timeout=WATCHDOG)
            return cast(str, cache.get_secret_string("db"))

        with ThreadPoolExecutor(max_workers=32) as pool:
            futures = [pool.submit(read) for _ in range(32)]
            if lib is adapter:
                wait_until(lambda cache=cache: cache.cache.stats().misses == 32)  # all wait on one fetch
            else:
                wait_until(lambda calls=calls: calls.total == 1)
            gate.set()
            assert [future.result(timeout=WATCHDOG) for future in futures] == ["pw"] * 32
        counts[lib.__name__] = dict(calls.counts)
    assert counts == {
        OFFICIAL.__name__: {"DescribeSecret": 1, "GetSecretValue": 1},
        adapter.__name__: {"GetSecretValue": 1},
    }


def _waits_on_official_lock(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked entering the official library's per-secret lock (its innermost frame)."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None or frame.f_code.co_filename != official_items.__file__:
        return False
    return "with self._lock" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)


def test_reads_never_wait_for_a_refresh(admin: Any, clocks: Clocks) -> None:
    """During a slow refresh the adapter serves the cached value; the original blocks readers on its lock."""
    admin.create_secret(Name="db", SecretString="pw")
    # The original refreshes at a random point between 50 and 100 s; the adapter's refresh-ahead
    # point is between 72 and 80 s (0.8 of a TTL jittered down by up to 10 %), its TTL at least 90 s.
    for lib, age in ((OFFICIAL, 100), (adapter, 85)):
        client = new_client()
        calls = Calls(client)
        cache = build(lib, client, clocks.clock, secret_refresh_interval=100)
        assert cache.get_secret_string("db") == "pw"
        clocks.advance(age)
        before = calls.total
        gate = calls.hold()
        if lib is adapter:
            assert cache.get_secret_string("db") == "pw"  # and starts one background refresh
            wait_until(lambda calls=calls, before=before: calls.total == before + 1)  # held in the call
            assert [cache.get_secret_string("db") for _ in range(100)] == ["pw"] * 100
            gate.set()
            wait_until(lambda cache=cache: cache.cache.stats().in_flight == 0)  # done before moto stops
            continue
        with ThreadPoolExecutor(max_workers=2) as pool:
            refreshing = pool.submit(cache.get_secret_string, "db")
            wait_until(lambda calls=calls, before=before: calls.total == before + 1)  # held in the call
            reading = pool.submit(cache.get_secret_string, "db")
            wait_until(lambda: any(_waits_on_official_lock(thread) for thread in threading.enumerate()))
            gate.set()
            assert [refreshing.result(timeout=WATCHDOG), reading.result(timeout=WATCHDOG)] == ["pw", "pw"]


def test_values_are_not_served_stale_without_bound(admin: Any, clocks: Clocks) -> None:
    """Through an outage the original serves the old value forever; the adapter stops after max_stale."""
    admin.create_secret(Name="db", SecretString="pw")
    caches = {}
    for lib in MODULES:
        client = new_client()
        caches[lib] = build(lib, client, clocks.clock, secret_refresh_interval=60)
        assert caches[lib].get_secret_string("db") == "pw"
        Calls(client).fail_with("ServiceUnavailable", status=503)
    clocks.advance(600)  # past the TTL, within max_stale: both serve the last value
    assert [caches[lib].get_secret_string("db") for lib in MODULES] == ["pw", "pw"]
    clocks.advance(3600)  # past max_stale (3600 s after the TTL)
    with pytest.raises(ClientError, match="ServiceUnavailable") as caught:
        caches[adapter].get_secret_string("db")
    assert isinstance(caught.value.__cause__, secretcache.SecretUnavailableError)
    clocks.advance(365 * 86400)
    assert caches[OFFICIAL].get_secret_string("db") == "pw"


def test_a_deleted_secret_is_not_served(admin: Any, clocks: Clocks) -> None:
    """After the secret is deleted the original keeps serving it; the adapter raises at its next fetch."""
    admin.create_secret(Name="db", SecretString="pw")
    clients = {lib: new_client() for lib in MODULES}
    caches = {lib: build(lib, clients[lib], clocks.clock, secret_refresh_interval=60) for lib in MODULES}
    assert [caches[lib].get_secret_string("db") for lib in MODULES] == ["pw", "pw"]
    admin.delete_secret(SecretId="db", ForceDeleteWithoutRecovery=True)
    clocks.advance(86400)
    assert caches[OFFICIAL].get_secret_string("db") == "pw"
    assert caches[OFFICIAL].refresh_secret_now("db") is False
    assert caches[OFFICIAL].get_secret_string("db") == "pw"
    with pytest.raises(clients[adapter].exceptions.ResourceNotFoundException):
        caches[adapter].get_secret_string("db")


def test_forced_refresh_does_not_sleep(
    admin: Any, official_sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """refresh_secret_now: the original sleeps 2.5-5 s, then 10 s after a failure; the adapter fetches at once."""
    admin.create_secret(Name="db", SecretString="pw")
    our_sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", our_sleeps.append)  # the official module's time is replaced already
    outcomes = {}
    for lib in MODULES:
        client = new_client()
        calls = Calls(client)
        cache = build(lib, client, exception_retry_delay_base=60)
        cache.get_secret_string("db")
        calls.fail_with("AccessDeniedException", times=1)
        outcomes[lib] = [cache.refresh_secret_now("db"), cache.refresh_secret_now("db"), calls.total]
    assert outcomes[OFFICIAL] == [False, True, 4]  # DescribeSecret and GetSecretValue, then one DescribeSecret each
    assert outcomes[adapter] == [False, True, 3]  # one GetSecretValue each, the second despite the backoff
    assert len(official_sleeps) == 2
    assert 2.5 <= official_sleeps[0] <= 5.001
    assert official_sleeps[1] == 10.0  # the pending 60 s backoff, capped at 10 s
    assert our_sleeps == []


def test_injection_does_not_guess_at_self(admin: Any, client: Any) -> None:
    """The original swaps the arguments when the first one's class has an attribute named like the function."""
    admin.create_secret(Name="token", SecretString="t0k3n")
    results = {}
    for lib in MODULES:

        @lib.InjectSecretString("token", build(lib, client))
        def upper(secret: str, text: str) -> tuple[str, str]:
            return secret, text

        results[lib] = upper("abc")
    assert results == {OFFICIAL: ("abc", "t0k3n"), adapter: ("t0k3n", "abc")}
