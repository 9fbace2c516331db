"""What one ``BatchGetSecretValue`` call means for each secret id it asked for.

:meth:`secretcache._fetcher.Fetcher.batch_get_secret_values` makes the call (retries, Region
failover, counting); this module reads its outcome: the answer's per-secret errors and values
of the wrong type (:func:`read_answer`), or a failure of the whole call, refused
(:class:`BatchRefusedError`: fetch one by one instead) or failed for every id
(:class:`BatchFailedError`), by :func:`call_failure`. Every error it makes names one secret id
at most, and never a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from secretcache._error_map import PERMANENT_CODES, map_error
from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretUnavailableError,
)
from secretcache._keys import names
from secretcache._logs import error_type
from secretcache._response import format_error, type_problem
from secretcache._value import SecretValue

__all__ = [
    "BATCH_SIZE",
    "BatchFailedError",
    "BatchRefusedError",
    "call_failure",
    "read_answer",
]

BATCH_SIZE = 20
"""Most secret ids one ``BatchGetSecretValue`` call accepts."""


class BatchRefusedError(Exception):
    """``BatchGetSecretValue`` itself is not allowed or not known; fetch one by one instead.

    The message names the first secrets asked for (``secretcache check`` shows it); ``reason``
    says why without naming any, for a log line that a filter of secret ids cannot see into.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class BatchFailedError(Exception):
    """A ``BatchGetSecretValue`` call failed as a whole, after retries where transient.

    Attributes:
        errors: For each requested secret id, its own typed error (naming that id), with the
            botocore error chained as ``__cause__``.
    """

    def __init__(self, message: str, errors: dict[str, SecretCacheError]) -> None:
        super().__init__(message)
        self.errors = errors

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.errors))


def read_answer(
    response: Any,
    secret_ids: list[str],
    sent: list[str],
    replica: str | None,
    value_of: Callable[[Any, str], SecretValue],
) -> tuple[list[SecretValue], dict[str, SecretCacheError]]:
    """The values of a checked answer, and the typed error of each id it reported an error for.

    ``sent`` holds ``secret_ids`` as sent to the Region that answered: ``replica``, or the
    primary (``None``), where they are the same. ``value_of(item, name)`` builds an item's
    :class:`SecretValue`. An item whose value has the wrong type is an error
    (:class:`SecretFormatError`) of each requested id naming it.
    """
    values: list[SecretValue] = []
    errors: dict[str, SecretCacheError] = {}
    asked = dict(zip(sent, secret_ids, strict=True))
    for item in response.get("Errors", []):
        secret_id = asked.get(item.get("SecretId", ""), item.get("SecretId", ""))
        code = item.get("ErrorCode", "Unknown")
        message = item.get("Message", "")
        detail = f"BatchGetSecretValue for secret {secret_id!r} failed: {code}: {message}"
        # A replica's answer is no verdict on the secret (it may not be replicated there):
        # only the primary's "not found" or "access denied" is definite.
        kind = SecretUnavailableError if replica else PERMANENT_CODES.get(code, SecretUnavailableError)
        if replica:
            detail += f" (in replica Region {replica}, read while the primary Region is failing)"
        errors[secret_id] = error = kind(detail, secret_id=secret_id)
        # The service's answer for this secret, as GetSecretValue would have raised it: the
        # same cause chain, and the same error code in logs and metrics, whichever call asked.
        error.__cause__ = ClientError({"Error": {"Code": code, "Message": message}}, "BatchGetSecretValue")
    for item in response.get("SecretValues", []):
        problem = type_problem(item)
        if problem is None:
            values.append(value_of(item, item["Name"]))
            continue
        for secret_id in _named_by(secret_ids, sent, item):
            errors[secret_id] = format_error("BatchGetSecretValue", secret_id, problem)
    return values, errors


def call_failure(err: Exception, secret_ids: list[str]) -> BatchRefusedError | BatchFailedError:
    """The error to raise, from ``err``, for a call that failed as a whole (chain ``err`` to it).

    Denied or invalid (no credentials, no Region, an unknown operation): refused, so the caller
    fetches one by one. Otherwise failed, with each id's own typed error.
    """
    label = ", ".join(secret_ids[:3]) + (", ..." if len(secret_ids) > 3 else "")
    mapped = map_error(err, "BatchGetSecretValue", label)
    if isinstance(mapped, (SecretAccessDeniedError, InvalidSecretRequestError)):
        return BatchRefusedError(str(mapped), _reason(err))
    errors: dict[str, SecretCacheError] = {}
    for secret_id in secret_ids:
        errors[secret_id] = error = map_error(err, "BatchGetSecretValue", secret_id)
        error.__cause__ = err
    message = f"BatchGetSecretValue for {len(secret_ids)} secret(s) ({label}) failed: {error_type(err)}"
    return BatchFailedError(message, errors)


def _named_by(secret_ids: list[str], sent: list[str], item: Any) -> list[str]:
    """The requested ids that name a batch item, by name, ARN or partial ARN (:func:`names`).

    Each id is matched as it was sent (from a replica: its ARN in the replica's Region).
    """
    name, arn = str(item.get("Name", "")), str(item.get("ARN", ""))
    return [secret_id for secret_id, as_sent in zip(secret_ids, sent, strict=True) if names(as_sent, name, arn)]


def _reason(err: Exception) -> str:
    """Why a batch call was refused, naming no secret: the service's code and message, or botocore's error type.

    Only the type of a botocore error: its message may quote a parameter, an id (a
    ``ParamValidationError`` shows the value it refused).
    """
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
    return type(err).__name__
