"""Exercise every public call under ``mypy --strict``; never run, only type-checked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3

from secretcache import (
    CacheStats,
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

    def listener(change: SecretChange) -> None:
        print(change.name, change.version_stage, change.old_version_id, change.new_version_id)

    unsubscribe = cache.on_change(listener)
    unsubscribe()
    stats: CacheStats = cache.stats()
    calls: int = stats.api_calls["GetSecretValue"] + stats.total_api_calls
    ratio: float = stats.hit_ratio
    print(text, blob, document, value.version_stages, refreshed.arn, dropped, calls, ratio)
    with SecretCache() as lazy:
        try:
            lazy.get_secret_string("db")
        except SecretCacheError as err:
            print(err.secret_id)
