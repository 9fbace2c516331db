"""Checking a Secrets Manager answer and turning it into a :class:`SecretValue`, without a value in any error.

Beside :mod:`secretcache._json` (a secret's JSON document): both read what came back, and both
raise errors that name fields and types, never the value. Here botocore has parsed the answer
already; what is left is to refuse one whose fields are missing or of the wrong type (a truncated
body, a client or event handler returning something odd) and to build the small, long-lived
:class:`SecretValue` a cache entry keeps.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from secretcache._errors import SecretFormatError
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.type_defs import GetSecretValueResponseTypeDef, SecretValueEntryTypeDef

__all__ = ["MalformedResponseError", "check_batch", "check_fields", "format_error", "to_secret_value", "type_problem"]


class MalformedResponseError(Exception):
    """A response without the fields every answer has: a truncated or garbled body. Retried."""


_REQUIRED = ("Name", "ARN", "VersionId")


def check_fields(item: Any, operation: str) -> None:
    """Refuse a broken answer: a batch item without its ids, or an answer or a batch item without a value.

    A ``GetSecretValue`` answer whose ``Name``, ``ARN`` or ``VersionId`` is not a string is
    broken too. botocore turns a body that is not valid JSON (say, cut off mid-way) into ``{"message": ...}``
    instead of raising, so a missing field is the sign of a broken response. A ``GetSecretValue``
    answer holding a value but no ``Name``, ``ARN`` or ``VersionId`` is accepted: real answers
    always carry them, test stubs often do not (see :func:`to_secret_value`).
    """
    if not isinstance(item, dict):
        raise MalformedResponseError(f"{operation} returned a response that is not an object")
    if operation == "BatchGetSecretValue" and any(not isinstance(item.get(field), str) for field in _REQUIRED):
        raise MalformedResponseError(f"{operation} returned an item without Name, ARN and VersionId")
    if item.get("SecretString") is None and item.get("SecretBinary") is None:
        what = "an item" if operation == "BatchGetSecretValue" else "a response"
        raise MalformedResponseError(f"{operation} returned {what} without SecretString or SecretBinary")
    if any(field in item and not isinstance(item[field], str) for field in _REQUIRED):
        raise MalformedResponseError(f"{operation} returned a Name, ARN or VersionId that is not a string")


def check_batch(response: Any) -> None:
    """Refuse a broken ``BatchGetSecretValue`` answer: no ``SecretValues`` nor ``Errors``, or either not a list.

    botocore parses a body that is not valid JSON (cut off mid-way, say) into an answer without
    either field, which would otherwise read as "nothing found" for every secret asked for.
    Both fields are optional in the API, so an answer holding one of them is well formed; a
    secret it names in neither was not found. Each ``Errors`` item must be an object and each
    ``SecretValues`` item must pass :func:`check_fields`.
    """
    if not isinstance(response, dict):
        raise MalformedResponseError("BatchGetSecretValue returned a response that is not an object")
    if "SecretValues" not in response and "Errors" not in response:
        raise MalformedResponseError("BatchGetSecretValue returned a response without SecretValues or Errors")
    values, errors = response.get("SecretValues", []), response.get("Errors", [])
    if not isinstance(values, list) or not isinstance(errors, list):
        raise MalformedResponseError("BatchGetSecretValue returned SecretValues or Errors that is not a list")
    if any(not isinstance(error, dict) for error in errors):
        raise MalformedResponseError("BatchGetSecretValue returned an Errors item that is not an object")
    for item in values:
        check_fields(item, "BatchGetSecretValue")


def type_problem(response: Any) -> str | None:
    """What is wrong with the types of a response's value fields, naming types only, never values."""
    string = response.get("SecretString")
    if string is not None and not isinstance(string, str):
        return f"SecretString of type {type(string).__name__}, not str"
    binary = response.get("SecretBinary")
    if binary is not None and not isinstance(binary, (bytes, bytearray, str)):
        return f"SecretBinary of type {type(binary).__name__}, not bytes"
    stages = response.get("VersionStages", [])
    if not isinstance(stages, (list, tuple)):
        return f"VersionStages of type {type(stages).__name__}, not a list of str"
    wrong = sorted({type(stage).__name__ for stage in stages if not isinstance(stage, str)})
    if wrong:
        return f"VersionStages holding {', '.join(wrong)}, not only str"
    created = response.get("CreatedDate")
    if created is not None and not isinstance(created, datetime):
        return f"CreatedDate of type {type(created).__name__}, not datetime"
    return None


def format_error(operation: str, secret_id: str, problem: str) -> SecretFormatError:
    """The error for an answer whose value fields have the wrong types (``problem``, from :func:`type_problem`)."""
    return SecretFormatError(
        f"{operation} for secret {secret_id!r} returned {problem}; the client or one of its event "
        "handlers returned a malformed response",
        secret_id=secret_id,
    )


def to_secret_value(
    response: GetSecretValueResponseTypeDef | SecretValueEntryTypeDef,
    secret_id: str,
    operation: str = "GetSecretValue",
) -> SecretValue:
    """Build a :class:`SecretValue` from a ``GetSecretValue`` response.

    Kept small, since it lives as long as its cache entry: the creation date is moved to UTC
    (botocore gives each parsed date its own ``tzlocal`` object, several hundred bytes),
    staging labels are interned, and the name reuses the requested id's string when equal.
    A minimal answer (a test stub's ``{"SecretString": ...}``) gets the requested id as its
    name and empty ``arn`` and ``version_id``: unknown, so never a change and outside monotonic
    reads. A ``SecretBinary`` given as ``str`` (botocore's ``Stubber`` accepts one; a real
    answer is always bytes) is kept as its UTF-8 bytes, what botocore would send for that str.

    Raises:
        SecretFormatError: A value field has the wrong type (the message names the field and
            the type, never the value; nothing is chained).
    """
    problem = type_problem(response)
    if problem is not None:
        # Raised here, outside any except block, so that nothing holding the value is chained.
        raise format_error(operation, secret_id, problem)
    binary = response.get("SecretBinary")
    created = response.get("CreatedDate")
    name = response.get("Name", secret_id)
    return SecretValue(
        name=secret_id if name == secret_id else name,
        arn=response.get("ARN", ""),
        version_id=response.get("VersionId", ""),
        version_stages=tuple(sys.intern(stage) for stage in response.get("VersionStages", ())),
        created_date=created.astimezone(timezone.utc) if created is not None else None,
        secret_string=response.get("SecretString"),
        secret_binary=_as_bytes(binary) if binary is not None else None,
    )


def _as_bytes(binary: bytes | bytearray | str) -> bytes:
    """A ``SecretBinary`` as bytes; a stub's str as UTF-8 (lone surrogates kept, never an error holding it)."""
    return binary.encode("utf-8", "surrogatepass") if isinstance(binary, str) else bytes(binary)
