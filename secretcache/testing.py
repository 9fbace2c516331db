"""Helpers for testing applications that use secretcache.

- :func:`seeded_cache`: a real :class:`~secretcache.SecretCache` holding the values you give it,
  no AWS, no moto and no AWS configuration; reading anything else raises
  :class:`~secretcache.SecretNotFoundError`.
- :func:`deterministic_cache`: a cache with no retries delays, no failure backoff, no jitter and
  no background refreshes, for tests that count calls against moto or botocore's Stubber.
- :func:`reset_default_cache`: forget the process-wide Lambda cache between tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from secretcache._cache import SecretCache, store_of
from secretcache._client import ISOLATED_REGION, isolated_client
from secretcache._entry import Entry
from secretcache._keys import CacheKey, aliases, check_secret_id
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

    Strings are served as ``SecretString``, bytes as ``SecretBinary``, dicts (any ``Mapping``)
    and lists as JSON strings (so ``get_secret_json`` works). A secret is seeded under a name, a full ARN or a
    partial ARN, and can be read by any of its spellings: its name, the ARN it reports (``arn``
    of :meth:`~secretcache.SecretCache.get_secret`), the partial ARN, the id it was seeded under.
    ``refresh``, ``try_refresh`` and ``prefetch`` read it again and find the same version. Reading
    any other secret, label or version raises :class:`~secretcache.SecretNotFoundError` naming it.
    The cache's client is a real boto3 client that answers every call in the process, from the
    seeded values; it reads no ``AWS_*`` variable or AWS config file, so none is needed.

    Raises:
        TypeError: A value is not a str, bytes, dict or list, or holds what JSON cannot (bytes,
            a set, ...); the message names the secret and the type.
        ValueError: Two ids name the same secret (a name and an ARN of it, say).
    """
    seeded = _Seeded()
    now = datetime.now(timezone.utc)
    for given, value in secrets.items():
        secret_id = check_secret_id(given)  # a plain str: the store hashes it under its lock
        if isinstance(value, (Mapping, list)):
            value = _json_text(secret_id, value)
        if not isinstance(value, (str, bytes)):
            raise TypeError(
                f"seeded value of {secret_id!r} must be str, bytes, dict or list, not {type(value).__name__}"
            )
        name, arn = _identity(secret_id)
        seeded.add(
            secret_id,
            SecretValue(
                name=name,
                arn=arn,
                version_id=str(uuid.uuid4()),
                version_stages=("AWSCURRENT",),
                created_date=now,
                secret_string=value if isinstance(value, str) else None,
                secret_binary=value if isinstance(value, bytes) else None,
            ),
        )
    client = isolated_client()
    client.meta.events.register("before-call.secretsmanager.*", seeded.answer)
    cache = SecretCache(client, ttl=float("inf"), refresh_ahead=None, retry=NO_DELAYS)
    forever = float("inf")
    for secret_id, secret in seeded.given.items():
        entry = Entry(secret, refresh_at=forever, fresh_until=forever, stale_until=forever)
        store_of(cache).seed(CacheKey(secret_id), entry)
    return cache


def _json_text(secret_id: str, value: Mapping[str, Any] | list[Any]) -> str:
    """``value`` as the JSON text of a secret: any ``Mapping`` as an object, as the signature allows.

    Raises:
        TypeError: ``value`` holds something JSON cannot (bytes, a set, ...); the message names the
            secret and the type, never the value.
    """

    def plain(item: object) -> object:
        if isinstance(item, Mapping):
            return dict(item)
        raise TypeError(
            f"seeded value of {secret_id!r} holds a {type(item).__name__}, which JSON cannot hold "
            "(use str, int, float, bool, None, lists and dicts)"
        )

    return json.dumps(value, default=plain)


def deterministic_cache(
    client: SecretsManagerClient | None = None, *, ttl: Duration = 300.0, clock: Callable[[], float] | None = None
) -> SecretCache:
    """A cache whose behaviour depends only on the calls it makes: handy for counting them.

    No retry waits and a single attempt, no failure backoff (a failed key is fetched again on the
    next read), no TTL jitter, no refresh-ahead (so no background threads), and an optional
    fake ``clock``.
    """
    return SecretCache(client, ttl=ttl, ttl_jitter=0.0, refresh_ahead=None, retry=NO_DELAYS, clock=clock)


def _identity(secret_id: str) -> tuple[str, str]:
    """The name and the full ARN of a secret seeded under ``secret_id`` (a name, a full or a partial ARN)."""
    name = min(aliases(secret_id), key=len)  # the name, or the ARN's name without its suffix
    if not secret_id.startswith("arn:") or name == secret_id:
        return name, f"arn:aws:secretsmanager:{ISOLATED_REGION}:{_ACCOUNT}:secret:{name}-SEEDED"
    if secret_id.endswith(f":secret:{name}"):  # a partial ARN: the service would add a suffix
        return name, f"{secret_id}-SEEDED"
    return name, secret_id


class _Seeded:
    """The seeded secrets by every spelling, and the botocore handler that answers calls from them.

    ``answer`` runs on ``before-call``: what it returns is the call's response, as with
    botocore's ``Stubber``, so nothing is sent; an error is raised as the service's would be.
    """

    def __init__(self) -> None:
        self.given: dict[str, SecretValue] = {}
        self._by_spelling: dict[str, SecretValue] = {}

    def add(self, secret_id: str, secret: SecretValue) -> None:
        """Seed ``secret`` under ``secret_id`` and every other spelling of it."""
        for spelling in aliases(secret_id) | aliases(secret.arn):
            other = self._by_spelling.setdefault(spelling, secret)
            if other is not secret:
                raise ValueError(f"{secret_id!r} and another seeded id name the same secret {spelling!r}")
        self.given[secret_id] = secret

    def answer(self, params: Mapping[str, Any], model: Any, **_: Any) -> Any:
        """The response to one call, as ``(http_response, parsed)``: seeded values, or the service's "not found"."""
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders

        request = json.loads(params["body"])
        if model.name == "GetSecretValue":
            found = self._find(request.get("SecretId", ""), request.get("VersionStage"), request.get("VersionId"))
            if found is None:
                _refuse(model.name, _not_seeded(request))
            parsed = _response(found)
        elif model.name == "BatchGetSecretValue" and "SecretIdList" in request:
            values, errors = [], []
            for secret_id in request["SecretIdList"]:
                found = self._find(secret_id, None, None)
                if found is not None:
                    values.append(_response(found))
                else:
                    message = _not_seeded({"SecretId": secret_id})
                    errors.append({"SecretId": secret_id, "ErrorCode": "ResourceNotFoundException", "Message": message})
            parsed = {"SecretValues": values, "Errors": errors}
        else:
            _refuse(model.name, f"{model.name} is not answered by this test cache")
        return AWSResponse("", 200, HTTPHeaders(), None), {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}

    def _find(self, secret_id: str, stage: str | None, version_id: str | None) -> SecretValue | None:
        secret = self._by_spelling.get(secret_id)
        if secret is None or stage not in (None, "AWSCURRENT") or version_id not in (None, secret.version_id):
            return None
        return secret


def _response(secret: SecretValue) -> dict[str, Any]:
    """``secret`` as GetSecretValue answers it (and BatchGetSecretValue, each of its values)."""
    response: dict[str, Any] = {
        "ARN": secret.arn,
        "Name": secret.name,
        "VersionId": secret.version_id,
        "VersionStages": list(secret.version_stages),
        "CreatedDate": secret.created_date,
    }
    if secret.secret_string is not None:
        response["SecretString"] = secret.secret_string
    else:
        response["SecretBinary"] = secret.secret_binary
    return response


def _refuse(operation: str, message: str) -> NoReturn:
    from botocore.exceptions import ClientError

    error: Any = {
        "Error": {"Code": "ResourceNotFoundException", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    raise ClientError(error, operation)


def _not_seeded(params: Mapping[str, Any]) -> str:
    """Name the secret, and label or version, an unseeded call asked for: never the raw request.

    The operation is named by the ``ClientError`` itself ("when calling the GetSecretValue operation").
    """
    what = f"secret {str(params.get('SecretId', '?'))!r}"
    for key, label in (("VersionStage", "version stage"), ("VersionId", "version id")):
        if params.get(key):
            what += f" ({label} {str(params[key])!r})"
    return f"{what} is not seeded in this test cache"
