"""Reads, TTL, staging labels, version ids, JSON, invalidation, listeners, stats and eviction."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from secretcache import (
    InvalidSecretRequestError,
    SecretCache,
    SecretChange,
    SecretFormatError,
    SecretNotFoundError,
    SecretValue,
)
from tests.conftest import FAST_RETRY, Calls, FakeClock


def make_cache(client: Any, clock: FakeClock, **options: Any) -> SecretCache:
    settings: dict[str, Any] = {
        "ttl": 60.0,
        "ttl_jitter": 0.0,
        "refresh_ahead": None,
        "retry": FAST_RETRY,
        "clock": clock,
    }
    settings.update(options)
    return SecretCache(client, **settings)


def warm_cache(
    client: Any,
    admin: Any,
    clock: FakeClock,
    *,
    value: str = "pw-1",
    make: Callable[..., SecretCache] = make_cache,
    **options: Any,
) -> SecretCache:
    """Secret ``db`` created with ``value``, and ``make(client, clock, **options)`` after one read of it."""
    admin.create_secret(Name="db", SecretString=value)
    cache = make(client, clock, **options)
    cache.get_secret_string("db")
    return cache


def rotate(admin: Any, secret_id: str, value: str) -> tuple[str, str]:
    """Stage a new version as AWSPENDING, then move AWSCURRENT to it, as rotation does."""
    old = admin.describe_secret(SecretId=secret_id)
    current = next(v for v, stages in old["VersionIdsToStages"].items() if "AWSCURRENT" in stages)
    new = admin.put_secret_value(SecretId=secret_id, SecretString=value, VersionStages=["AWSPENDING"])["VersionId"]
    admin.update_secret_version_stage(
        SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=current
    )
    return current, new


class TestReadsOnEveryBackend:
    """Behaviour every backend shows: in-process moto and moto's server over HTTP."""

    def test_repeated_reads_within_ttl_make_one_call(self, backend: Any, clock: FakeClock) -> None:
        """Reads within the TTL are served from the cache after a single GetSecretValue."""
        client = backend()
        client.create_secret(Name="db", SecretString="pw-1")
        calls = Calls(client)
        cache = make_cache(client, clock)
        assert [cache.get_secret_string("db") for _ in range(50)] == ["pw-1"] * 50
        assert calls["GetSecretValue"] == 1
        stats = cache.stats()
        assert (stats.hits, stats.misses, dict(stats.api_calls)) == (49, 1, {"GetSecretValue": 1})

    def test_expired_value_is_refetched_and_picks_up_rotation(self, backend: Any, clock: FakeClock) -> None:
        """After the TTL the next read fetches again and returns the rotated value."""
        client = backend()
        client.create_secret(Name="db", SecretString="pw-1")
        calls = Calls(client)
        cache = make_cache(client, clock)
        assert cache.get_secret_string("db") == "pw-1"
        rotate(backend(), "db", "pw-2")
        clock.advance(59.9)
        assert cache.get_secret_string("db") == "pw-1"
        clock.advance(0.2)
        assert cache.get_secret_string("db") == "pw-2"
        assert calls["GetSecretValue"] == 2
        assert cache.stats().refreshes == 1

    def test_not_found_is_typed_with_cause(self, backend: Any, clock: FakeClock) -> None:
        """A missing secret raises SecretNotFoundError chaining botocore's error."""
        cache = make_cache(backend(), clock)
        with pytest.raises(SecretNotFoundError, match="'missing'") as info:
            cache.get_secret_string("missing")
        assert type(info.value.__cause__).__name__ == "ResourceNotFoundException"
        assert info.value.secret_id == "missing"


def test_get_secret_returns_metadata(client: Any, admin: Any, clock: FakeClock) -> None:
    """get_secret returns name, ARN, version id, stages and creation date with the value."""
    created = admin.create_secret(Name="db", SecretString="pw")
    value = make_cache(client, clock).get_secret("db")
    assert isinstance(value, SecretValue)
    assert (value.name, value.arn, value.version_id) == ("db", created["ARN"], created["VersionId"])
    assert value.version_stages == ("AWSCURRENT",)
    assert value.created_date is not None
    assert (value.secret_string, value.secret_binary) == ("pw", None)


def test_jitter_shortens_ttl_within_bounds(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """With jitter, each value lives between ttl*(1-jitter) and ttl."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock, ttl=100.0, ttl_jitter=0.5)
    for _ in range(20):
        cache.get_secret_string("db")
        before = calls["GetSecretValue"]
        clock.advance(49.9)
        cache.get_secret_string("db")
        assert calls["GetSecretValue"] == before
        clock.advance(50.2)
        cache.get_secret_string("db")
        assert calls["GetSecretValue"] == before + 1
        cache.invalidate()


def test_ttl_accepts_timedelta_and_zero(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """ttl takes a timedelta; ttl=0 fetches on every read."""
    admin.create_secret(Name="db", SecretString="pw")
    assert "ttl=120.0" in repr(make_cache(client, clock, ttl=timedelta(minutes=2)))
    cache = make_cache(client, clock, ttl=0)
    for _ in range(3):
        cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 3


class TestStagesAndVersions:
    def test_default_and_explicit_awscurrent_share_one_entry(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock
    ) -> None:
        """version_stage='AWSCURRENT' is the default lookup, not a second entry."""
        cache = warm_cache(client, admin, clock, value="pw")
        assert cache.get_secret_string("db", version_stage="AWSCURRENT") == "pw"
        assert calls["GetSecretValue"] == 1

    def test_pending_and_previous_labels(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """AWSPENDING and AWSPREVIOUS are read on request, each cached under its label."""
        admin.create_secret(Name="db", SecretString="pw-1")
        admin.put_secret_value(SecretId="db", SecretString="pw-2", VersionStages=["AWSPENDING"])
        cache = make_cache(client, clock)
        assert cache.get_secret_string("db") == "pw-1"
        assert cache.get_secret_string("db", version_stage="AWSPENDING") == "pw-2"
        rotate(admin, "db", "pw-3")
        clock.advance(61)
        assert cache.get_secret_string("db") == "pw-3"
        assert cache.get_secret_string("db", version_stage="AWSPREVIOUS") == "pw-1"
        with pytest.raises(SecretNotFoundError):
            cache.get_secret_string("db", version_stage="NO-SUCH-LABEL")

    def test_version_id_lookup_is_never_refetched_for_age(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock
    ) -> None:
        """A lookup by version id stays cached however much time passes."""
        version = admin.create_secret(Name="db", SecretString="pw-1")["VersionId"]
        rotate(admin, "db", "pw-2")
        cache = make_cache(client, clock)
        assert cache.get_secret_string("db", version_id=version) == "pw-1"
        clock.advance(10 * 86400)
        assert cache.get_secret_string("db", version_id=version) == "pw-1"
        assert calls["GetSecretValue"] == 1

    def test_stage_and_version_must_agree(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """version_stage with version_id works when they agree and is refused when not."""
        first = admin.create_secret(Name="db", SecretString="pw-1")["VersionId"]
        _, second = rotate(admin, "db", "pw-2")
        cache = make_cache(client, clock)
        assert cache.get_secret_string("db", version_stage="AWSCURRENT", version_id=second) == "pw-2"
        with pytest.raises(InvalidSecretRequestError):
            cache.get_secret_string("db", version_stage="AWSCURRENT", version_id=first)


class TestFormats:
    def test_binary_secret(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """Binary secrets come back as bytes; reading one as a string is a format error."""
        admin.create_secret(Name="key", SecretBinary=b"\x00\xffkey")
        admin.create_secret(Name="text", SecretString="pw")
        cache = make_cache(client, clock)
        assert cache.get_secret_binary("key") == b"\x00\xffkey"
        with pytest.raises(SecretFormatError, match="binary"):
            cache.get_secret_string("key")
        with pytest.raises(SecretFormatError, match="string"):
            cache.get_secret_binary("text")
        with pytest.raises(SecretFormatError, match="binary"):
            cache.get_secret_json("key")

    def test_json_parsed_once_per_version_and_copied(
        self, client: Any, admin: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """JSON is parsed once per fetched version and callers get private copies."""
        document = json.dumps({"username": "app", "hosts": ["a", "b"]})
        admin.create_secret(Name="db", SecretString=document)
        parses = []
        real_loads = json.loads

        def counting_loads(text: Any, **kwargs: Any) -> Any:
            if text in (document, '{"username": "app2"}'):  # botocore parses responses with json too
                parses.append(text)
            return real_loads(text, **kwargs)

        monkeypatch.setattr(json, "loads", counting_loads)
        cache = make_cache(client, clock)
        first = cache.get_secret_json("db")
        first["username"] = "mallory"
        first["hosts"].append("evil")
        assert cache.get_secret_json("db") == {"username": "app", "hosts": ["a", "b"]}
        assert cache.get_secret_json("db", "username") == "app"
        cache.get_secret_json("db", "hosts").clear()
        assert cache.get_secret_json("db", "hosts") == ["a", "b"]
        assert len(parses) == 1
        rotate(admin, "db", json.dumps({"username": "app2"}))
        clock.advance(61)
        assert cache.get_secret_json("db", "username") == "app2"
        assert len(parses) == 2

    def test_json_errors_name_the_problem_not_the_value(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """Invalid JSON, a missing key and a non-object document are format errors without the value."""
        admin.create_secret(Name="plain", SecretString="hunter2-not-json")
        admin.create_secret(Name="list", SecretString='["hunter2"]')
        admin.create_secret(Name="obj", SecretString='{"password": "hunter2"}')
        cache = make_cache(client, clock)
        failures = []
        for secret_id, key in [("plain", None), ("list", "password"), ("obj", "username")]:
            with pytest.raises(SecretFormatError) as info:
                cache.get_secret_json(secret_id, key)
            failures.append(info.value)
        assert "no JSON key 'username'" in str(failures[2])
        for error in failures:
            assert "hunter2" not in str(error)
            assert error.__cause__ is None or "hunter2" not in str(error.__cause__)
        with pytest.raises(TypeError, match="key must be a str"):
            cache.get_secret_json("obj", 1)  # type: ignore[arg-type]


class TestInvalidation:
    def test_name_full_and_partial_arn_drop_every_spelling(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """invalidate() by name, full ARN or partial ARN drops entries however they were requested."""
        arn = admin.create_secret(Name="team/db", SecretString="pw")["ARN"]
        admin.create_secret(Name="other", SecretString="x")
        partial = arn[:-7]
        cache = make_cache(client, clock)
        for target in ["team/db", arn, partial]:
            for spelling in ["team/db", arn, partial]:
                cache.get_secret_string(spelling)
            cache.get_secret_string("other")
            assert cache.invalidate(target) == 3, target
            assert cache.stats().size == 1
        assert cache.invalidate() == 1
        assert cache.stats().size == 0

    def test_a_partial_arn_that_looks_like_another_secrets_full_arn_is_not_dropped_with_it(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock
    ) -> None:
        """invalidate("a") (or an event naming it) keeps ``a-bcdefg`` read by its partial ARN.

        ``...:secret:a-bcdefg`` reads like the full ARN of ``a`` with suffix ``bcdefg``; once an
        entry holds a value its ARN says which it is. Dropping it threw away a fresh value of a
        secret that never changed: with Secrets Manager failing, its next read raised.
        """
        admin.create_secret(Name="a", SecretString="a-1")
        created = admin.create_secret(Name="a-bcdefg", SecretString="other-1")
        partial = created["ARN"][:-7]
        cache = make_cache(client, clock)
        assert cache.get_secret_string(partial) == "other-1"
        assert cache.get_secret_string(partial, version_id=created["VersionId"]) == "other-1"
        cache.get_secret_string("a")
        assert cache.invalidate("a") == 1
        outage = calls.fail_with("ThrottlingException")
        try:  # both entries still cached: no call
            assert cache.get_secret_string(partial) == "other-1"
            assert cache.get_secret_string(partial, version_id=created["VersionId"]) == "other-1"
        finally:
            outage()
        assert cache.invalidate("a-bcdefg") == 2  # its own name still drops them

    def test_invalidate_forces_next_read_to_fetch(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock
    ) -> None:
        """After invalidate() the next read fetches the current value even within the TTL."""
        cache = warm_cache(client, admin, clock)
        rotate(admin, "db", "pw-2")
        cache.invalidate("db")
        assert cache.get_secret_string("db") == "pw-2"
        assert calls["GetSecretValue"] == 2

    def test_invalidate_drops_every_stage_and_version(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """All labels and version ids of the secret go, not just AWSCURRENT."""
        version = admin.create_secret(Name="db", SecretString="pw-1")["VersionId"]
        rotate(admin, "db", "pw-2")
        cache = make_cache(client, clock)
        cache.get_secret_string("db")
        cache.get_secret_string("db", version_stage="AWSPREVIOUS")
        cache.get_secret_string("db", version_id=version)
        assert cache.invalidate("db") == 3


class TestListeners:
    def test_change_reported_once_with_ids_only(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """A refresh that finds a new AWSCURRENT version calls each listener once."""
        first = admin.create_secret(Name="db", SecretString="pw-1")
        cache = make_cache(client, clock)
        seen: list[SecretChange] = []
        cache.on_change(seen.append)
        cache.get_secret_string("db")
        clock.advance(61)
        cache.get_secret_string("db")
        assert seen == []  # the first fetch and an unchanged refresh are not changes
        _, new = rotate(admin, "db", "pw-2")
        clock.advance(61)
        cache.get_secret_string("db")
        cache.get_secret_string("db")
        assert seen == [SecretChange("db", first["ARN"], "AWSCURRENT", first["VersionId"], new)]

    def test_one_report_per_change_however_the_secret_is_spelled(
        self, client: Any, admin: Any, clock: FakeClock
    ) -> None:
        """Entries for a name and its ARN refreshing onto a new version report the change once."""
        arn = admin.create_secret(Name="db", SecretString="pw-1")["ARN"]
        cache = make_cache(client, clock)
        seen: list[SecretChange] = []
        cache.on_change(seen.append)
        for spelling in ("db", arn, arn[:-7]):
            cache.get_secret_string(spelling)
        rotate(admin, "db", "pw-2")
        clock.advance(61)
        for spelling in ("db", arn, arn[:-7]):
            assert cache.get_secret_string(spelling) == "pw-2"
        assert len(seen) == 1

    def test_change_after_invalidation_and_unsubscribe(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """A refetch after invalidate() still reports the change; unsubscribing stops reports."""
        admin.create_secret(Name="db", SecretString="pw-1")
        cache = make_cache(client, clock)
        seen: list[SecretChange] = []
        unsubscribe = cache.on_change(seen.append)
        cache.get_secret_string("db")
        rotate(admin, "db", "pw-2")
        cache.invalidate("db")
        cache.get_secret_string("db")
        assert len(seen) == 1
        unsubscribe()
        unsubscribe()
        rotate(admin, "db", "pw-3")
        cache.invalidate()
        assert cache.get_secret_string("db") == "pw-3"
        assert len(seen) == 1

    def test_failing_listener_is_logged_and_read_succeeds(
        self, client: Any, admin: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A listener that raises does not break the read nor the other listeners."""
        admin.create_secret(Name="db", SecretString="pw-1")
        cache = make_cache(client, clock)
        seen: list[SecretChange] = []

        def broken(change: SecretChange) -> None:
            raise RuntimeError("listener bug")

        cache.on_change(broken)
        cache.on_change(seen.append)
        cache.get_secret_string("db")
        rotate(admin, "db", "pw-2")
        clock.advance(61)
        with caplog.at_level(logging.ERROR, logger="secretcache"):
            assert cache.get_secret_string("db") == "pw-2"
        assert len(seen) == 1
        assert "listener" in caplog.text
        with pytest.raises(TypeError):
            cache.on_change("not callable")  # type: ignore[arg-type]


class TestEvictionAndLifecycle:
    def test_least_recently_used_is_evicted(self, client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
        """Past max_size the entry not read for longest goes first."""
        for name in "abc":
            admin.create_secret(Name=name, SecretString=name)
        cache = make_cache(client, clock, max_size=2)
        cache.get_secret_string("a")
        cache.get_secret_string("b")
        cache.get_secret_string("a")  # a is now more recently used than b
        cache.get_secret_string("c")  # evicts b
        assert cache.stats().evictions == 1
        before = calls["GetSecretValue"]
        cache.get_secret_string("a")
        cache.get_secret_string("c")
        assert calls["GetSecretValue"] == before
        cache.get_secret_string("b")
        assert calls["GetSecretValue"] == before + 1
        assert cache.stats().size == 2

    def test_size_stays_bounded_under_many_keys(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """However many secrets are read, at most max_size entries are held."""
        for index in range(30):
            admin.create_secret(Name=f"s{index}", SecretString="x")
        cache = make_cache(client, clock, max_size=8)
        for round_ in range(3):
            for index in range(30):
                cache.get_secret_string(f"s{(index * 7 + round_) % 30}")
                assert cache.stats().size <= 8
        assert cache.stats().evictions >= 30 * 3 - 8

    def test_force_refresh_and_refresh(self, client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
        """force_refresh and refresh() fetch now, whatever the TTL."""
        cache = warm_cache(client, admin, clock)
        rotate(admin, "db", "pw-2")
        assert cache.get_secret_string("db") == "pw-1"
        assert cache.get_secret_string("db", force_refresh=True) == "pw-2"
        rotate(admin, "db", "pw-3")
        assert cache.refresh("db").secret_string == "pw-3"
        assert cache.get_secret_string("db") == "pw-3"
        assert calls["GetSecretValue"] == 3

    def test_close_drops_values_and_refuses_reads(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """A closed cache holds nothing and refuses reads; the context manager closes it."""
        admin.create_secret(Name="db", SecretString="pw")
        with make_cache(client, clock) as cache:
            cache.get_secret_string("db")
            assert not cache.closed
        assert cache.closed
        assert cache.stats().size == 0
        assert "closed" in repr(cache)
        with pytest.raises(RuntimeError, match="closed"):
            cache.get_secret_string("db")
        cache.close()

    def test_lazy_client_has_retries_off_and_bounded_timeouts(self, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a client, one is built on first use with botocore retries off and timeouts set."""
        import boto3

        boto3.client("secretsmanager").create_secret(Name="db", SecretString="pw")
        cache = SecretCache(retry=FAST_RETRY)
        assert cache.get_secret_string("db") == "pw"
        config = cache.client.meta.config
        assert config.retries is not None
        assert config.retries["total_max_attempts"] == 1
        assert (config.connect_timeout, config.read_timeout) == (2.0, 5.0)
        assert cache.client is cache.client
