"""Exercise every public call under ``mypy --strict``; never run, only type-checked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3

from secretcache import (
    CacheStats,
    RefreshResult,
    RetryPolicy,
    SecretCache,
    SecretCacheError,
    SecretChange,
    SecretValue,
)


def use_cache() -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    cache = SecretCache(
        client,
        ttl=timedelta(minutes=5),
        max_size=100,
        max_stale=600.0,
        stale_while_revalidate=timedelta(seconds=30),
        ttl_jitter=0.2,
        retry=RetryPolicy(attempts=5, initial_delay=0.2, max_delay=3.0, deadline=8.0),
        clock=lambda: 0.0,
    )
    text: str = cache.get_secret_string("db", version_stage="AWSPENDING", force_refresh=True)
    blob: bytes = cache.get_secret_binary("key", version_id="v1")
    document: Any = cache.get_secret_json("db", "password")
    value: SecretValue = cache.get_secret("db")
    refreshed: SecretValue = cache.refresh("db", version_stage="AWSPREVIOUS")
    dropped: int = cache.invalidate("db") + cache.invalidate()
    result: RefreshResult = cache.try_refresh("db", version_stage="AWSPENDING")
    found: tuple[SecretValue, bool, bool, str | None] = (
        result.value,
        result.stale or result.changed,
        cache.max_size > 0,
        result.previous_version_id,
    )
    print(found)

    def listener(change: SecretChange) -> None:
        print(change.name, change.version_stage, change.old_version_id, change.new_version_id)

    unsubscribe = cache.on_change(listener)
    unsubscribe()
    stats: CacheStats = cache.stats()
    calls: int = stats.api_calls["GetSecretValue"] + stats.total_api_calls
    ratio: float = stats.hit_ratio
    flying: int = stats.in_flight
    now: float = cache.clock()
    closed: bool = cache.closed
    print(text, blob, document, value.version_stages, refreshed.arn, dropped, calls, ratio, flying, now, closed)
    with SecretCache() as lazy:
        try:
            lazy.get_secret_string("db")
        except SecretCacheError as err:
            print(err.secret_id)


async def use_async_cache() -> None:
    from secretcache import AsyncSecretCache

    cache = AsyncSecretCache(ttl=60.0, refresh_ahead=None, stale_while_revalidate=5.0, ttl_overrides={"prod/db/": 30.0})
    text: str = await cache.get_secret_string("db", ttl=10.0)
    blob: bytes = await cache.get_secret_binary("key")
    document: Any = await cache.get_secret_json("db", "user")
    value: SecretValue = await cache.refresh("db")
    result: RefreshResult = await cache.try_refresh("db", version_id="v1")
    size: int = cache.max_size
    print(result.changed, size)
    failures: dict[str, SecretCacheError] = await cache.prefetch(["a", "b"])
    dropped: int = cache.invalidate()
    stats: CacheStats = cache.stats()
    sync: SecretCache = cache.cache
    closed: bool = cache.closed
    async with AsyncSecretCache.from_env(prefix="APP_") as other:
        print(text, blob, document, value, failures, dropped, stats, sync, other, closed)


def use_settings() -> None:
    cache = SecretCache.from_env(prefix="SECRETCACHE_")
    warmed: dict[str, SecretCacheError] = cache.prefetch(["a", "b"])
    pending: str = cache.get_secret_string("db", ttl=timedelta(seconds=5))
    print(warmed, pending)


def use_listener(cache: SecretCache, other: SecretCache) -> None:
    from secretcache.events import SqsInvalidationListener, invalidate_from_event, secret_ids_from_event

    sqs = boto3.client("sqs", region_name="us-east-1")
    listener = SqsInvalidationListener(
        cache, "https://sqs.us-east-1.amazonaws.com/1/q", client=sqs, wait_time_seconds=20, max_messages=1, refresh=True
    )
    listener.add(other)
    listener.remove(other)
    listener.stop_timeout = 0.5
    with listener:
        handled: int = listener.poll_once()
        running: bool = listener.running
    stopped: bool = listener.stop()
    ids: list[str] = secret_ids_from_event({"detail": {}}) + invalidate_from_event(cache, "{}")
    print(handled, running, stopped, ids)


async def use_async_db(cache: SecretCache) -> None:
    from secretcache import AsyncSecretCache
    from secretcache.db import (
        AsyncConnectionFactory,
        Failure,
        RedactedConnectError,
        async_connection_factory,
        async_credentials,
        classify,
        connection_factory,
    )

    async def connect(*args: Any, **kwargs: Any) -> str:
        return "connection"

    async def nap(seconds: float) -> None:
        print(seconds)

    async_cache = AsyncSecretCache(cache=cache)
    factory: AsyncConnectionFactory[str] = async_connection_factory(
        async_cache, "db", connect, mapping="asyncpg", rotation_grace=5.0, sleep=nap
    )
    connection: str = await factory("dsn", timeout=5)
    creds = await async_credentials(async_cache, "db", version_stage="AWSPENDING")
    blocking = connection_factory(cache, "db", lambda **kwargs: "sync", mapping="pymysql", rotation_grace=0)
    print(connection, creds.username, blocking(), async_cache.clock())
    try:
        blocking()
    except RedactedConnectError as error:
        code: int | str | None = error.code
        failure: Failure = classify(error)
        print(error.driver_error, code, failure is error.failure, error.secret_id)


def use_observability_regions_and_compat(cache: SecretCache) -> None:
    from aws_lambda_powertools.utilities import parameters

    from secretcache.compat.aws_secretsmanager_caching import (
        InjectKeywordedSecretString,
        InjectSecretString,
        SecretCacheConfig,
    )
    from secretcache.compat.aws_secretsmanager_caching import SecretCache as OfficialShapedCache
    from secretcache.compat.powertools import SecretCacheProvider, install, uninstall
    from secretcache.compat.powertools import parameters as our_parameters
    from secretcache.otel import instrument

    uninstrument = instrument(cache, secret_names=False)
    uninstrument()
    regional = SecretCache(replica_regions=["us-west-2"], replica_ttl=30)
    value = regional.get_secret("db")
    region: str | None = value.region
    failovers: int = regional.stats().failovers
    official = OfficialShapedCache(config=SecretCacheConfig(max_cache_size=10, secret_refresh_interval=60))
    text: str | None = official.get_secret_string("db", "AWSPENDING")
    refreshed: bool = official.refresh_secret_now("db")

    @InjectSecretString("db", official)
    def positional(secret: str) -> str:
        return secret

    @InjectKeywordedSecretString("db", official, user="username")
    def keyworded(user: str) -> str:
        return user

    provider: SecretCacheProvider = install(cache)
    raw = parameters.get_secret("db", transform="json")
    removed: bool = uninstall()
    stubbable = SecretCacheProvider(boto3_client=cache.client).client
    by_name: dict[str, Any] = our_parameters.get_secrets_by_name(["db"], transform="json", max_age=60)
    one = our_parameters.get_secret("db", "json", False, 60, VersionStage="AWSPENDING")
    our_parameters.clear_caches()
    plain = SecretCache(send_current_stage=False)
    print(region, failovers, text, refreshed, positional, keyworded, provider.cache, raw, removed, stubbable)
    print(by_name, one, plain)


def use_agent_client() -> None:
    from secretcache.agent import AgentClient

    with AgentClient("http://127.0.0.1:2773", "token", connect_timeout=1, read_timeout=timedelta(seconds=5)) as agent:
        response: dict[str, Any] = agent.get_secret_value(SecretId="db", VersionStage="AWSPENDING", RefreshNow=True)
        cache = SecretCache(client=agent, ttl=30)  # the facades accept any SecretsClient
        print(response, cache, AgentClient(max_connections=4))
