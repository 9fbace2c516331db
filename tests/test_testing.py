"""secretcache.testing: helpers for users' own test suites."""

from __future__ import annotations

from typing import Any

import pytest

from secretcache import SecretFormatError, SecretNotFoundError
from secretcache.aws_lambda import default_cache, inject_secrets
from secretcache.testing import deterministic_cache, reset_default_cache, seeded_cache
from tests.conftest import Calls, FakeClock


def test_seeded_cache_serves_values_without_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded strings, bytes and JSON are served forever; anything else is not found; nothing leaves."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    cache = seeded_cache({"prod/key": "abc", "prod/cert": b"\x00", "prod/db": {"username": "app", "password": "pw"}})
    assert cache.get_secret_string("prod/key") == "abc"
    assert cache.get_secret_binary("prod/cert") == b"\x00"
    assert cache.get_secret_json("prod/db", "username") == "app"
    assert cache.get_secret("prod/db").version_stages == ("AWSCURRENT",)
    with pytest.raises(SecretNotFoundError, match="not seeded"):
        cache.get_secret_string("prod/other")
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("prod/key", version_stage="AWSPENDING")
    with pytest.raises(SecretFormatError):
        cache.get_secret_string("prod/cert")
    with pytest.raises(TypeError, match="must be str, bytes"):
        seeded_cache({"x": 5})  # type: ignore[dict-item]
    assert cache.stats().api_calls == {"GetSecretValue": 2}  # attempted, refused in-process


def test_deterministic_cache_counts_every_miss(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """No backoff, no jitter, no background work: a failed key is simply fetched again next read."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = deterministic_cache(client, ttl=10, clock=clock)
    remove = calls.fail_with("ThrottlingException")
    for _ in range(3):
        with pytest.raises(Exception, match="Throttling"):
            cache.get_secret_string("db")
    remove()
    assert cache.get_secret_string("db") == "pw"
    assert calls.total == 4
    clock.advance(10)
    cache.get_secret_string("db")
    assert calls.total == 5
    assert not cache._pool.threads


def test_reset_default_cache_with_lambda_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler under test reads from a seeded cache; reset_default_cache() forgets the global one."""
    cache = seeded_cache({"prod/key": "abc"})

    @inject_secrets(cache, api_key="prod/key")
    def handler(event: Any, context: Any, *, api_key: str) -> str:
        return api_key

    assert handler({}, None) == "abc"
    first = default_cache()
    reset_default_cache()
    assert default_cache() is not first
    reset_default_cache()


def test_seeded_cache_errors_name_the_secret_not_the_request() -> None:
    """Reading an unseeded secret raises a message naming its id, label and operation, never the raw request body."""
    cache = seeded_cache({"prod/key": "abc"})
    with pytest.raises(SecretNotFoundError) as caught:
        cache.get_secret_string("prod/other", version_stage="AWSPENDING")
    failures = cache.prefetch(["prod/one", "prod/two"])
    for err in [caught.value, *failures.values()]:
        texts = [str(err), repr(err), str(err.__cause__)]
        for text in texts:
            assert "b'" not in text
            assert 'b"' not in text
            assert "SecretId" not in text  # no request parameters or body, serialised or not
            assert "{" not in text
    assert "'prod/other' (version stage 'AWSPENDING') is not seeded" in str(caught.value)
    assert "GetSecretValue" in str(caught.value.__cause__)
    assert sorted(failures) == ["prod/one", "prod/two"]
    assert "secrets 'prod/one', 'prod/two' are not seeded" in str(failures["prod/one"])
    assert "BatchGetSecretValue" in str(failures["prod/one"].__cause__)
