"""Bad arguments fail before any API call, with a message that says what is wrong."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from secretcache import AsyncSecretCache, InvalidSecretRequestError, RetryPolicy, SecretCache
from tests.conftest import Calls, FakeClock
from tests.test_cache import make_cache


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"secret_id": ""}, InvalidSecretRequestError, "non-empty"),
        ({"secret_id": "   "}, InvalidSecretRequestError, "non-empty"),
        ({"secret_id": "x" * 2049}, InvalidSecretRequestError, "at most 2048"),
        ({"secret_id": "db\r\nINFO forged"}, InvalidSecretRequestError, "control character at position 2"),
        ({"secret_id": "db\x7f"}, InvalidSecretRequestError, "control character"),
        ({"secret_id": None}, TypeError, "secret_id must be a str"),
        ({"secret_id": 42}, TypeError, "secret_id must be a str"),
        ({"secret_id": ["db"]}, TypeError, "secret_id must be a str"),
        ({"secret_id": b"db"}, TypeError, "secret_id must be a str"),
        ({"secret_id": "db", "version_stage": 1}, TypeError, "version_stage must be a str"),
        ({"secret_id": "db", "version_stage": ""}, InvalidSecretRequestError, "version_stage"),
        ({"secret_id": "db", "version_id": "v" * 65}, InvalidSecretRequestError, "version_id"),
        ({"secret_id": "db", "version_id": "v1"}, InvalidSecretRequestError, "32 to 64 characters"),
        ({"secret_id": "db", "version_id": 7}, TypeError, "version_id must be a str"),
        ({"secret_id": "db", "force_refresh": "yes"}, TypeError, "force_refresh must be a bool"),
    ],
)
@pytest.mark.parametrize("method", ["get_secret_string", "get_secret_binary", "get_secret_json", "get_secret"])
def test_bad_read_arguments_fail_before_any_call(
    client: Any, calls: Calls, clock: FakeClock, method: str, kwargs: dict[str, Any], error: type, message: str
) -> None:
    """Every read refuses bad arguments with a clear error and no API call."""
    cache = make_cache(client, clock)
    arguments = dict(kwargs)
    secret_id = arguments.pop("secret_id")
    with pytest.raises(error, match=message):
        getattr(cache, method)(secret_id, **arguments)
    assert calls.total == 0


def test_bad_argument_errors_are_value_errors(client: Any, clock: FakeClock) -> None:
    """InvalidSecretRequestError is also a ValueError, as bad-argument errors are in Python."""
    with pytest.raises(ValueError, match="non-empty"):
        make_cache(client, clock).get_secret_string("")


def test_unknown_options_are_refused(client: Any, clock: FakeClock) -> None:
    """Options are real keyword-only parameters: a typo is a TypeError, never ignored."""
    cache = make_cache(client, clock)
    with pytest.raises(TypeError):
        cache.get_secret_string("db", versionstage="AWSPENDING")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cache.get_secret_string("db", "AWSPENDING")  # type: ignore[misc]
    with pytest.raises(TypeError):
        SecretCache(client, time_to_live=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ttl": -1}, ValueError, "ttl must be a duration >= 0"),
        ({"ttl": float("nan")}, ValueError, "ttl"),
        ({"ttl": "300"}, TypeError, "ttl must be seconds"),
        ({"ttl": True}, TypeError, "ttl must be seconds"),
        ({"ttl": timedelta(seconds=-1)}, ValueError, "ttl"),
        ({"max_size": 0}, ValueError, "max_size must be >= 1"),
        ({"max_size": 1.5}, TypeError, "max_size must be an int"),
        ({"max_stale": -0.5}, ValueError, "max_stale"),
        ({"ttl_jitter": 1.0}, ValueError, "ttl_jitter must be >= 0 and < 1"),
        ({"ttl_jitter": -0.1}, ValueError, "ttl_jitter"),
        ({"ttl_jitter": "0.1"}, TypeError, "ttl_jitter must be a number"),
        ({"retry": {"attempts": 3}}, TypeError, "retry must be a RetryPolicy"),
        ({"clock": 5}, TypeError, "clock must be"),
        ({"sleep": None}, TypeError, "sleep must be a function"),
        ({"sleep": 0.5}, TypeError, "sleep must be a function"),
    ],
)
def test_bad_cache_settings(kwargs: dict[str, Any], error: type, message: str) -> None:
    """Out-of-range or mistyped settings fail at construction with the setting's name."""
    with pytest.raises(error, match=message):
        SecretCache(None, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attempts": 0}, ValueError, "attempts must be >= 1"),
        ({"attempts": 2.0}, TypeError, "attempts must be an int"),
        ({"initial_delay": -1}, ValueError, "initial_delay"),
        ({"max_delay": float("inf")}, ValueError, "max_delay must be finite"),
        ({"initial_delay": 3.0, "max_delay": 1.0}, ValueError, "max_delay .* must be >= initial_delay"),
        ({"deadline": "10"}, TypeError, "deadline"),
        ({"failure_backoff": 5.0, "max_failure_backoff": 1.0}, ValueError, "max_failure_backoff"),
    ],
)
def test_bad_retry_policy(kwargs: dict[str, Any], error: type, message: str) -> None:
    """RetryPolicy checks its fields when built."""
    with pytest.raises(error, match=message):
        RetryPolicy(**kwargs)


def test_invalidate_validates_its_argument(client: Any, clock: FakeClock) -> None:
    """invalidate() takes a secret id or nothing."""
    cache = make_cache(client, clock)
    with pytest.raises(TypeError):
        cache.invalidate(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidSecretRequestError):
        cache.invalidate("")
    assert cache.invalidate("never-read") == 0


def test_retry_policy_backoff_doubles_to_its_cap() -> None:
    """backoff_after grows exponentially with consecutive failures, capped."""
    policy = RetryPolicy(failure_backoff=0.5, max_failure_backoff=3.0)
    assert [policy.backoff_after(n) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff_after(10_000) == 3.0
    assert RetryPolicy(deadline=timedelta(seconds=4)).deadline == 4.0  # type: ignore[arg-type]


class _Instrumented:
    """A wrapper that counts the calls it passes on to a real client, as tracing wrappers do."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.passed_on = 0

    def __getattr__(self, name: str) -> Any:
        self.passed_on += 1
        return getattr(self._client, name)


@pytest.mark.parametrize("owner", [SecretCache, AsyncSecretCache])
@pytest.mark.parametrize(
    ("argument", "shown"),
    [(300, "(300)"), (0.5, "(0.5)"), (True, "(...)"), ("hunter2", "(...)"), ({"ttl": 300}, "(...)"), (b"x", "(...)")],
)
def test_a_setting_given_as_the_client_is_refused_at_construction(owner: type, argument: object, shown: str) -> None:
    """SecretCache(300) is a TypeError naming client and keyword-only settings, not a failure on first read."""
    name = owner.__name__
    with pytest.raises(TypeError) as caught:
        owner(argument)
    message = str(caught.value)
    assert message.startswith(f"{name}{shown}: client must be a Secrets Manager client")
    assert f"not {type(argument).__name__};" in message
    assert "settings such as ttl are keyword-only" in message
    if isinstance(argument, str):
        assert argument not in message  # a string given by mistake may be sensitive: never echoed
    if argument == 300:
        assert message.endswith(f"{name}(ttl=300)")


def test_from_env_refuses_a_setting_given_as_the_client() -> None:
    """from_env checks its client like the constructor."""
    with pytest.raises(TypeError, match="client must be a Secrets Manager client"):
        SecretCache.from_env(300)  # type: ignore[arg-type]


def test_real_wrapped_and_absent_clients_are_accepted(client: Any, admin: Any, clock: FakeClock) -> None:
    """A botocore client, a wrapper with a callable get_secret_value, and None are all accepted."""
    admin.create_secret(Name="db", SecretString="pw")
    assert make_cache(client, clock).get_secret_string("db") == "pw"
    wrapped = _Instrumented(client)
    assert make_cache(wrapped, clock).get_secret_string("db") == "pw"
    assert wrapped.passed_on > 0
    assert make_cache(None, clock).get_secret_string("db") == "pw"  # built lazily (moto is active)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SecretCache(ttl=-(10**400)), "ttl must be a duration >= 0 seconds"),
        (lambda: SecretCache(ttl=-(10**5000)), "ttl must be a duration >= 0 seconds, got an int of 16610 bits"),
        (lambda: SecretCache(max_stale=-(10**400)), "max_stale must be a duration >= 0"),
        (lambda: SecretCache(ttl_overrides={"prod/": -(10**400)}), "ttl_overrides\\['prod/'\\] must be a duration"),
        (lambda: SecretCache(stale_while_revalidate=10**400), "stale_while_revalidate \\(inf s\\) must be <= "),
        (lambda: SecretCache(refresh_ahead=10**5000), "refresh_ahead must be > 0 and <= 1"),
        (lambda: SecretCache(ttl_jitter=-(10**5000)), "ttl_jitter must be >= 0 and < 1"),
        (lambda: SecretCache(max_size=-(10**5000)), "max_size must be >= 1"),
        (lambda: RetryPolicy(initial_delay=10**400), "RetryPolicy.initial_delay must be finite"),
        (lambda: RetryPolicy(deadline=10**5000), "RetryPolicy.deadline must be finite, got an int of 16610 bits"),
    ],
)
def test_ints_past_floats_range_are_refused_naming_the_setting(build: Any, message: str) -> None:
    """An int too large for a float (or to print) is a ValueError naming its setting, not an OverflowError."""
    with pytest.raises(ValueError, match=message):
        build()


def test_ints_past_floats_range_are_infinite_durations(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """ttl=10**400 is a TTL longer than any float: infinite, as ttl=float('inf'), here and per read."""
    assert repr(SecretCache(ttl=10**400, max_stale=10**400, replica_ttl=10**400)).startswith(
        "SecretCache(ttl=inf, max_size=1024, refresh_ahead=0.8, max_stale=inf, "
    )
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock)
    assert cache.get_secret_string("db", ttl=10**400) == "pw"
    clock.advance(10**9)
    assert cache.get_secret_string("db") == "pw"
    assert calls.total == 1
