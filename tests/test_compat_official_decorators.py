"""The adapter's decorators against the official library's: calling conventions, errors, pickling.

Each case runs on both modules, side by side on moto; where the original misbehaves, the
difference is asserted.
"""

from __future__ import annotations

import json
import pickle
from types import ModuleType
from typing import Any, cast

import pytest

from secretcache.compat import aws_secretsmanager_caching as adapter
from tests.compat_official import BOTH, OFFICIAL, build
from tests.compat_official import official_sleeps as official_sleeps  # autouse: the original never sleeps

pytestmark = pytest.mark.timeout(60)  # a hang fails the test instead of the run


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


@BOTH
def test_a_static_method_under_the_decorator_gets_the_secret_first(lib: ModuleType, admin: Any, client: Any) -> None:
    """Over a staticmethod: the secret comes first, called on the class (as the original) or on an instance."""
    admin.create_secret(Name="token", SecretString="t0k3n")
    cache = build(lib, client)

    class Client:
        @lib.InjectSecretString("token", cache)
        @staticmethod
        def connect(secret: Any, host: Any = "default") -> tuple[Any, Any]:
            return secret, host

    assert Client.connect() == ("t0k3n", "default")
    assert Client.connect("h") == ("t0k3n", "h")
    instance = Client()
    if lib is OFFICIAL:  # its guess injects the instance in the secret's place
        assert instance.connect() == (instance, "t0k3n")
    else:
        assert instance.connect() == ("t0k3n", "default")
        assert Client.connect(instance) == ("t0k3n", instance)


def _module_level(secret: str) -> str:
    return secret


_module_level = adapter.InjectSecretString("id", cast(Any, None))(_module_level)  # type: ignore[assignment]


def test_decorated_function_pickles_by_name() -> None:
    """A decorated module-level function pickles by reference, as a function does."""
    assert pickle.loads(pickle.dumps(_module_level)) is _module_level  # noqa: S301 - our own bytes


@BOTH
def test_a_function_kept_in_a_class_and_called_through_it_gets_the_secret_first(
    lib: ModuleType, admin: Any, client: Any
) -> None:
    """A function without self, called through its class, gets the secret first, as the original; a method
    called through its class with its instance (a subclass's too) gets it after that instance."""
    admin.create_secret(Name="token", SecretString="t0k3n")
    cache = build(lib, client)

    class Util:
        @lib.InjectSecretString("token", cache)
        def helper(secret: str, text: str) -> tuple[str, str]:
            return secret, text

    class Base:
        @lib.InjectSecretString("token", cache)
        def connect(self, secret: str, host: str) -> tuple[Any, str, str]:
            return self, secret, host

    class Child(Base):
        def connect(self, host: str) -> tuple[Any, str, str]:  # type: ignore[override]
            return Base.connect(self, host)  # type: ignore[call-arg]

    child = Child()
    assert Util.helper("a") == ("t0k3n", "a")
    assert child.connect("h") == (child, "t0k3n", "h")
    assert Base.connect(child, "h") == (child, "t0k3n", "h")  # type: ignore[call-arg]


def test_a_class_method_over_the_decorator_gets_the_class_first(admin: Any, client: Any) -> None:
    """A classmethod stacked over InjectSecretString gets cls, then the secret, on every Python (3.13 no longer
    lets classmethod call the decorator's __get__); the original injects the secret in cls's place."""
    admin.create_secret(Name="token", SecretString="t0k3n")
    results = {}
    for lib in (OFFICIAL, adapter):
        cache = build(lib, client)

        class Factory:
            @classmethod
            @lib.InjectSecretString("token", cache)
            def make(cls, secret: str, host: str = "default") -> tuple[Any, str, str]:
                return cls, secret, host

        results[lib] = [Factory.make("h"), Factory().make()], Factory
    (official, official_class), (ours, our_class) = results[OFFICIAL], results[adapter]
    assert official[0] == ("t0k3n", official_class, "h")  # cls gets the secret, the secret cls
    assert ours == [(our_class, "t0k3n", "h"), (our_class, "t0k3n", "default")]


def test_keyword_injection_of_a_label_no_version_carries_says_so(admin: Any, client: Any) -> None:
    """A default_version_stage no version carries reads None: the RuntimeError names that cause, not only binary."""
    admin.create_secret(Name="db", SecretString=json.dumps({"username": "app"}))
    cache = build(adapter, client, default_version_stage="AWSPENDING")
    read = adapter.InjectKeywordedSecretString("db", cache, user="username")(lambda user: user)
    with pytest.raises(RuntimeError, match=r"has no string value .*no version carries the staging label"):
        read()
