"""Configuration: SECRETCACHE_* environment variables and per-secret TTLs."""

from __future__ import annotations

from typing import Any

import pytest

from secretcache import RetryPolicy, SecretCache
from tests.conftest import Calls, FakeClock
from tests.test_cache import make_cache


def test_from_env_reads_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each SECRETCACHE_* variable reaches the matching setting."""
    for name, value in {
        "SECRETCACHE_TTL": "120",
        "SECRETCACHE_MAX_SIZE": "50",
        "SECRETCACHE_MAX_STALE": "30.5",
        "SECRETCACHE_STALE_WHILE_REVALIDATE": "1.5",
        "SECRETCACHE_REFRESH_AHEAD": "0.5",
        "SECRETCACHE_TTL_JITTER": "0",
        "SECRETCACHE_TTL_OVERRIDES": '{"prod/db/": 10, "prod/": 20}',
        "SECRETCACHE_RETRY_ATTEMPTS": "5",
        "SECRETCACHE_RETRY_INITIAL_DELAY": "0.2",
        "SECRETCACHE_RETRY_MAX_DELAY": "4",
        "SECRETCACHE_RETRY_DEADLINE": "6",
        "SECRETCACHE_RETRY_FAILURE_BACKOFF": "2",
        "SECRETCACHE_RETRY_MAX_FAILURE_BACKOFF": "30",
        "SECRETCACHE_REPLICA_REGIONS": " us-west-2, eu-west-1 ",
        "SECRETCACHE_REPLICA_TTL": "15",
    }.items():
        monkeypatch.setenv(name, value)
    cache = SecretCache.from_env()
    policy = RetryPolicy(
        attempts=5, initial_delay=0.2, max_delay=4.0, deadline=6.0, failure_backoff=2.0, max_failure_backoff=30.0
    )
    assert repr(cache).startswith(
        "SecretCache(ttl=120.0, max_size=50, refresh_ahead=0.5, max_stale=30.5, stale_while_revalidate=1.5, "
        "ttl_jitter=0.0, "
        f"retry={policy!r}, ttl_overrides={{'prod/db/': 10.0, 'prod/': 20.0}}, "
        "replica_regions=('us-west-2', 'eu-west-1'), replica_ttl=15.0, "
    )


def test_from_env_defaults_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset variables keep defaults; a custom prefix reads other variables; 'off' disables refresh-ahead."""
    monkeypatch.setenv("SECRETCACHE_BOTOCORE_LOG_REDACTION", "on")  # known, read by secretcache.redaction
    assert repr(SecretCache.from_env()) == repr(SecretCache())
    monkeypatch.setenv("MYAPP_REFRESH_AHEAD", "off")
    monkeypatch.setenv("MYAPP_TTL", "7")
    assert "ttl=7.0, max_size=1024, refresh_ahead=None" in repr(SecretCache.from_env(prefix="MYAPP_"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SECRETCACHE_TTL", "five", "SECRETCACHE_TTL='five' is not a number"),
        ("SECRETCACHE_TTL", "-1", "SECRETCACHE_TTL must be a duration >= 0"),
        ("SECRETCACHE_MAX_SIZE", "1.5", "SECRETCACHE_MAX_SIZE='1.5' is not a whole number"),
        ("SECRETCACHE_MAX_SIZE", "0", "SECRETCACHE_MAX_SIZE must be >= 1"),
        ("SECRETCACHE_MAX_SIZE", "²", "SECRETCACHE_MAX_SIZE='²' is not a whole number"),  # isdigit(), not int()
        ("SECRETCACHE_MAX_SIZE", "9" * 5000, "SECRETCACHE_MAX_SIZE='9999"),  # more digits than int() converts
        ("SECRETCACHE_REFRESH_AHEAD", "1.5", "SECRETCACHE_REFRESH_AHEAD must be > 0 and <= 1"),
        ("SECRETCACHE_TTL_JITTER", "2", "SECRETCACHE_TTL_JITTER must be >= 0 and < 1"),
        ("SECRETCACHE_RETRY_ATTEMPTS", "2.5", "SECRETCACHE_RETRY_ATTEMPTS='2.5' is not a whole number"),
        ("SECRETCACHE_RETRY_DEADLINE", "inf", "SECRETCACHE_RETRY_DEADLINE must be finite"),
        ("SECRETCACHE_RETRY_MAX_DELAY", "0.01", "SECRETCACHE_RETRY_\\* settings are inconsistent"),
        ("SECRETCACHE_TTL_OVERRIDES", "[1]", "SECRETCACHE_TTL_OVERRIDES='\\[1\\]' is not a JSON object"),
        ("SECRETCACHE_TTL_OVERRIDES", '{"a": -1}', "SECRETCACHE_TTL_OVERRIDES="),
        ("SECRETCACHE_TTL_OVERRIDES", '{"a": -1' + "0" * 400 + "}", "SECRETCACHE_TTL_OVERRIDES="),
        ("SECRETCACHE_TTL_OVERRIDES", "[" * 100_000, "SECRETCACHE_TTL_OVERRIDES is nested too deeply"),
        ("SECRETCACHE_TTL_OVERRIDES", '{"a": ' * 100_000, "SECRETCACHE_TTL_OVERRIDES is nested too deeply"),
        ("SECRETCACHE_TLL", "5", "unknown setting SECRETCACHE_TLL"),
        ("SECRETCACHE_REPLICA_REGIONS", "us-west-2,,eu-west-1", "holds an empty Region name"),
        ("SECRETCACHE_REPLICA_TTL", "-1", "SECRETCACHE_REPLICA_TTL must be a duration >= 0"),
    ],
)
def test_from_env_names_the_bad_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    """An invalid or misspelt variable raises ValueError naming the variable and its value."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        SecretCache.from_env()


def test_per_read_ttl_applies_from_the_fetch_it_causes(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """ttl= on a read sets that secret's lifetime from the fetch it causes on, and keeps it."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock, ttl=60)
    cache.get_secret_string("db", ttl=10)
    cache.get_secret_string("db", ttl=1000)  # a hit: no fetch, the lifetime stays 10 s
    clock.advance(9)
    cache.get_secret_string("db")
    assert calls.total == 1
    clock.advance(2)
    cache.get_secret_string("db")  # refetched after 10 s, and still on the 10 s TTL
    clock.advance(11)
    cache.get_secret_string("db")
    assert calls.total == 3
    with pytest.raises(ValueError, match="ttl"):
        cache.get_secret_string("db", ttl=-5)


def test_ttl_overrides_by_id_or_longest_prefix(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """ttl_overrides gives secrets their own TTL; the longest matching prefix wins."""
    for name in ("prod/db/main", "prod/api-key", "dev/token"):
        admin.create_secret(Name=name, SecretString="x")
    cache = make_cache(client, clock, ttl=100, ttl_overrides={"prod/": 50, "prod/db/": 10})
    names = ["prod/db/main", "prod/api-key", "dev/token"]
    for name in names:
        cache.get_secret_string(name)
    fetched_at: dict[str, list[int]] = {name: [] for name in names}
    for second in range(1, 101):
        clock.advance(1)
        for name in names:
            before = calls.total
            cache.get_secret_string(name)
            if calls.total > before:
                fetched_at[name].append(second)
    assert fetched_at == {"prod/db/main": list(range(10, 101, 10)), "prod/api-key": [50, 100], "dev/token": [100]}


def test_ttl_overrides_match_the_id_as_spelled(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """concepts.md: a name's override does not apply to reads by ARN; the ARN prefix listed too does."""
    arn = admin.create_secret(Name="prod/db/main", SecretString="x")["ARN"]
    arn_prefix = arn.split(":secret:")[0] + ":secret:prod/db/"
    by_name = make_cache(client, clock, ttl=100, ttl_overrides={"prod/db/": 10})
    both = make_cache(client, clock, ttl=100, ttl_overrides={"prod/db/": 10, arn_prefix: 10})
    for cache in (by_name, both):
        cache.get_secret_string(arn)
    clock.advance(11)
    before = calls.total
    by_name.get_secret_string(arn)
    assert calls.total == before  # the name's prefix does not match the ARN: 100 s
    both.get_secret_string(arn)
    assert calls.total == before + 1  # the ARN prefix does: 10 s


def test_bad_ttl_overrides() -> None:
    """ttl_overrides must map non-empty ids to durations."""
    with pytest.raises(TypeError, match="mapping"):
        SecretCache(ttl_overrides=[("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty"):
        SecretCache(ttl_overrides={"": 1})
    with pytest.raises(ValueError, match="ttl_overrides"):
        SecretCache(ttl_overrides={"a": -1})
    with pytest.raises(ValueError, match="refresh_ahead must be > 0"):
        SecretCache(refresh_ahead=0)
    with pytest.raises(TypeError, match="refresh_ahead"):
        SecretCache(refresh_ahead="0.5")  # type: ignore[arg-type]


def test_from_env_reads_an_override_past_floats_range_as_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON integer too large for a float in SECRETCACHE_TTL_OVERRIDES is an infinite TTL, as 1e400 is."""
    monkeypatch.setenv("SECRETCACHE_TTL_OVERRIDES", '{"prod/": 1' + "0" * 400 + ', "dev/": 1e400}')
    assert "ttl_overrides={'prod/': inf, 'dev/': inf}" in repr(SecretCache.from_env())


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"SECRETCACHE_STALE_WHILE_REVALIDATE": "7200"},
            "SECRETCACHE_STALE_WHILE_REVALIDATE='7200' must be <= max_stale (3600 s)",
        ),
        (
            {"SECRETCACHE_STALE_WHILE_REVALIDATE": "70", "SECRETCACHE_MAX_STALE": "60"},
            "SECRETCACHE_STALE_WHILE_REVALIDATE='70' must be <= SECRETCACHE_MAX_STALE='60'",
        ),
    ],
)
def test_from_env_names_the_variables_of_a_window_past_max_stale(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    """SECRETCACHE_STALE_WHILE_REVALIDATE longer than max_stale is a ValueError naming the variables and values."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="must be <=") as caught:
        SecretCache.from_env()
    assert str(caught.value).startswith(message)
    monkeypatch.setenv("SECRETCACHE_MAX_STALE", variables["SECRETCACHE_STALE_WHILE_REVALIDATE"])  # equal is allowed
    SecretCache.from_env()
