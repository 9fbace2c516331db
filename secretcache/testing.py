"""Helpers for testing applications that use secretcache.

- :func:`seeded_cache`: a real :class:`~secretcache.SecretCache` holding the values you give it,
  no AWS and no moto; reading anything else raises :class:`~secretcache.SecretNotFoundError`.
- :func:`deterministic_cache`: a cache with no retries delays, no failure backoff, no jitter and
  no background refreshes, for tests that count calls against moto or botocore's Stubber.
- :func:`reset_default_cache`: forget the process-wide Lambda cache between tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from secretcache._cache import SecretCache, store_of
from secretcache._entry import Entry
from secretcache._keys import CacheKey, check_secret_id
from secretcache._policy import Duration, RetryPolicy
from secretcache._value import SecretValue
from secretcache.aws_lambda import reset_default_cache

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["NO_DELAYS", "deterministic_cache", "reset_default_cache", "seeded_cache"]

NO_DELAYS = RetryPolicy(attempts=1, initial_delay=0.0, max_delay=0.0, failure_backoff=0.0, max_failure_backoff=0.0)
"""One attempt, no waits, no failure backoff: every read that misses calls the API."""

_ACCOUNT = "123456789012"


def seeded_cache(secrets: Mapping[str, str | bytes | Mapping[str, Any] | list[Any]]) -> SecretCache:
    """A cache that serves ``secrets`` (AWSCURRENT) forever and never calls AWS.

    Strings are served as ``SecretString``, bytes as ``SecretBinary``, dicts and lists as JSON
    strings (so ``get_secret_json`` works). Reading any other secret, label or version raises
    :class:`~secretcache.SecretNotFoundError` naming it. The cache's client is a real boto3
    client whose every call is refused before it leaves the process.

    Raises:
        TypeError: A value is not a str, bytes, dict or list.
    """
    cache = SecretCache(_refusing_client(), ttl=float("inf"), refresh_ahead=None, retry=NO_DELAYS)
    now = datetime.now(timezone.utc)
    for secret_id, value in secrets.items():
        check_secret_id(secret_id)
        if isinstance(value, (Mapping, list)):
            value = json.dumps(value)
        if not isinstance(value, (str, bytes)):
            raise TypeError(
                f"seeded value of {secret_id!r} must be str, bytes, dict or list, not {type(value).__name__}"
            )
        name = secret_id.split(":secret:", 1)[-1]
        secret = SecretValue(
            name=name,
            arn=f"arn:aws:secretsmanager:us-east-1:{_ACCOUNT}:secret:{name}-SEEDED",
            version_id=str(uuid.uuid4()),
            version_stages=("AWSCURRENT",),
            created_date=now,
            secret_string=value if isinstance(value, str) else None,
            secret_binary=value if isinstance(value, bytes) else None,
        )
        forever = float("inf")
        key = CacheKey(secret_id)
        store_of(cache).seed(key, Entry(secret, refresh_at=forever, fresh_until=forever, stale_until=forever))
    return cache


def deterministic_cache(
    client: SecretsManagerClient | None = None, *, ttl: Duration = 300.0, clock: Callable[[], float] | None = None
) -> SecretCache:
    """A cache whose behaviour depends only on the calls it makes: handy for counting them.

    No retry waits and a single attempt, no failure backoff (a failed key is fetched again on the
    next read), no TTL jitter, no refresh-ahead (so no background threads), and an optional
    fake ``clock``.
    """
    return SecretCache(client, ttl=ttl, ttl_jitter=0.0, refresh_ahead=None, retry=NO_DELAYS, clock=clock)


def _refusing_client() -> Any:
    import boto3
    from botocore.exceptions import ClientError

    fake = "seeded"  # credentials that never leave the process: every call is refused first
    client = boto3.session.Session(aws_access_key_id=fake, aws_secret_access_key=fake, region_name="us-east-1").client(
        "secretsmanager"
    )

    def refuse(params: Any, model: Any, **_: Any) -> None:
        # before-parameter-build sees the call's own arguments, before any request body exists.
        error: Any = {
            "Error": {"Code": "ResourceNotFoundException", "Message": _not_seeded(params)},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        raise ClientError(error, model.name)

    client.meta.events.register("before-parameter-build.secretsmanager.*", refuse)
    return client


def _not_seeded(params: Mapping[str, Any]) -> str:
    """Name the secrets, and label or version, an unseeded call asked for: never the raw request.

    The operation is named by the ``ClientError`` itself ("when calling the GetSecretValue operation").
    """
    ids = [str(secret_id) for secret_id in params.get("SecretIdList") or [params.get("SecretId", "?")]]
    what = ("secret " if len(ids) == 1 else "secrets ") + ", ".join(map(repr, ids))
    for key, label in (("VersionStage", "version stage"), ("VersionId", "version id")):
        if params.get(key):
            what += f" ({label} {str(params[key])!r})"
    return f"{what} {'is' if len(ids) == 1 else 'are'} not seeded in this test cache"
