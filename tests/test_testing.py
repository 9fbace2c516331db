"""secretcache.testing: helpers for users' own test suites."""

from __future__ import annotations

from pathlib import Path
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
    assert "secret 'prod/one' is not seeded" in str(failures["prod/one"])  # each id on its own, as the service
    assert "BatchGetSecretValue" in str(failures["prod/one"].__cause__)


def test_seeded_values_survive_refresh_and_prefetch() -> None:
    """refresh(), try_refresh() and a prefetch() that also names an unseeded id read the same seeded version again."""
    cache = seeded_cache({"prod/key": "abc", "prod/db": {"password": "pw"}})
    changes: list[Any] = []
    cache.on_change(changes.append)
    version = cache.get_secret("prod/key").version_id
    assert cache.refresh("prod/key").version_id == version
    assert cache.get_secret_string("prod/key") == "abc"
    assert cache.try_refresh("prod/db").stale is False
    assert cache.get_secret_json("prod/db", "password") == "pw"
    failures = cache.prefetch(["prod/key", "prod/db", "prod/other"])
    assert sorted(failures) == ["prod/other"]
    assert cache.get_secret_string("prod/key", force_refresh=True) == "abc"
    assert cache.get_secret("prod/key").version_id == version
    assert changes == []


def test_seeded_secret_is_read_by_every_spelling() -> None:
    """A secret seeded under a name, a full or a partial ARN is read by its name, its reported ARN, the id given."""
    full = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/full-AbCdEf"
    partial = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/partial"
    cache = seeded_cache({"prod/name": "n", full: "f", partial: "p"})
    for seeded_id, name, value in (
        ("prod/name", "prod/name", "n"),
        (full, "prod/full", "f"),
        (partial, "prod/partial", "p"),
    ):
        secret = cache.get_secret(seeded_id)
        assert (secret.name, secret.secret_string) == (name, value)
        assert cache.get_secret_string(name) == value
        assert cache.get_secret_string(secret.arn) == value
        assert cache.get_secret_string(secret.arn[: -len("-XXXXXX")]) == value  # the partial ARN
    assert cache.get_secret(full).arn == full
    assert cache.get_secret(partial).arn == partial + "-SEEDED"
    with pytest.raises(ValueError, match="name the same secret"):
        seeded_cache({"prod/x": "1", "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/x": "2"})


def test_seeded_cache_needs_no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An unknown AWS_PROFILE, a broken config file, bad botocore settings or an endpoint URL change nothing."""
    (tmp_path / "config").write_text("[default\nregion = us-east-1\n")
    for name, value in {
        "AWS_PROFILE": "missing",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "config"),
        "AWS_DEFAULTS_MODE": "bogus",
        "AWS_USE_FIPS_ENDPOINT": "bogus",
        "AWS_MAX_ATTEMPTS": "abc",
        "AWS_RETRY_MODE": "bogus",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    }.items():
        monkeypatch.setenv(name, value)
    cache = seeded_cache({"prod/key": "abc"})
    assert cache.get_secret_string("prod/key") == "abc"
    assert cache.refresh("prod/key").secret_string == "abc"
    with pytest.raises(SecretNotFoundError, match="not seeded"):
        cache.get_secret_string("prod/other")


def test_seeded_mappings_of_any_kind_are_json_and_unjsonable_values_name_the_secret() -> None:
    """Any Mapping (a mappingproxy, a UserDict, nested) is seeded as JSON; bytes or a set inside one is
    a TypeError naming the secret and the type, never json's message alone."""
    from collections import UserDict
    from types import MappingProxyType

    cache = seeded_cache(
        {
            "proxy": MappingProxyType({"user": "app"}),
            "userdict": UserDict({"user": "app", "pool": MappingProxyType({"size": 5})}),
        }
    )
    assert cache.get_secret_json("proxy") == {"user": "app"}
    assert cache.get_secret_json("userdict") == {"user": "app", "pool": {"size": 5}}
    with pytest.raises(TypeError, match="seeded value of 'db' holds a bytes, which JSON cannot hold"):
        seeded_cache({"db": {"password": b"hunter2"}})
    with pytest.raises(TypeError, match="seeded value of 'db' holds a set"):
        seeded_cache({"db": [{"hunter2"}]})
