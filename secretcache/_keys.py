"""Secret identity: argument checks, cache keys, and matching names against ARNs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from secretcache._errors import InvalidSecretRequestError
from secretcache._policy import to_seconds

__all__ = ["CacheKey", "Key", "aliases", "check_read", "check_secret_id", "make_key", "split_key"]

MAX_SECRET_ID = 2048
MIN_VERSION_ID = 32
MAX_VERSION_ID = 64
MAX_STAGE = 256
DEFAULT_STAGE = "AWSCURRENT"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# The six random characters Secrets Manager appends to a name to form the ARN.
_ARN_SUFFIX = re.compile(r"(.+)-[A-Za-z0-9]{6}")


@dataclass(frozen=True, slots=True)
class Key:
    """Cache key of a lookup by a non-default staging label and/or a version id.

    Lookups of AWSCURRENT by stage are keyed by the bare secret id string instead, which keeps
    the hot path free of allocations; a ``Key`` never compares equal to a string or a tuple.
    """

    secret_id: str
    version_stage: str | None
    version_id: str | None


CacheKey = str | Key


def check_secret_id(secret_id: object) -> str:
    """Return ``secret_id`` if it is a usable secret name or ARN.

    Raises:
        TypeError: Not a string.
        InvalidSecretRequestError: Empty, blank, longer than 2048 characters, or holding a
            control character (none of which a secret name or ARN can be).
    """
    if not isinstance(secret_id, str):
        raise TypeError(f"secret_id must be a str (a secret name or ARN), not {type(secret_id).__name__}")
    if not secret_id or secret_id.isspace():
        raise InvalidSecretRequestError("secret_id must be a non-empty secret name or ARN")
    if len(secret_id) > MAX_SECRET_ID:
        raise InvalidSecretRequestError(
            f"secret_id is {len(secret_id)} characters long; Secrets Manager accepts at most {MAX_SECRET_ID}"
        )
    if (bad := _CONTROL.search(secret_id)) is not None:  # no name or ARN has one: refused before a call
        raise InvalidSecretRequestError(
            f"secret_id has a control character at position {bad.start()}; names and ARNs never do"
        )
    return secret_id


def _check_label(value: object, name: str, lengths: tuple[int, int], secret_id: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    shortest, longest = lengths
    if not shortest <= len(value) <= longest:
        raise InvalidSecretRequestError(
            f"{name} for secret {secret_id!r} must be {shortest} to {longest} characters, got {len(value)}",
            secret_id=secret_id,
        )
    return value


def make_key(secret_id: object, version_stage: object, version_id: object) -> CacheKey:
    """Validate a lookup's arguments and return its cache key.

    Raises:
        TypeError: An argument has the wrong type.
        InvalidSecretRequestError: An argument is empty or too long.
    """
    sid = check_secret_id(secret_id)
    stage = _check_label(version_stage, "version_stage", (1, MAX_STAGE), sid)
    vid = _check_label(version_id, "version_id", (MIN_VERSION_ID, MAX_VERSION_ID), sid)
    if vid is None and (stage is None or stage == DEFAULT_STAGE):
        return sid
    return Key(sid, stage, vid)


def check_read(
    secret_id: object, version_stage: object, version_id: object, force: object, ttl: object
) -> tuple[CacheKey, bool, float | None]:
    """Validate a read's arguments: its cache key, ``force_refresh`` and ``ttl`` in seconds.

    Raises:
        TypeError: An argument has the wrong type.
        InvalidSecretRequestError: An id or label is empty or too long.
        ValueError: ``ttl`` is negative or NaN.
    """
    key = make_key(secret_id, version_stage, version_id)
    if not isinstance(force, bool):
        raise TypeError(f"force_refresh must be a bool, not {type(force).__name__}")
    return key, force, None if ttl is None else to_seconds(ttl, "ttl")


def split_key(key: CacheKey) -> tuple[str, str | None, str | None]:
    """Return ``(secret_id, version_stage, version_id)`` of a cache key."""
    if isinstance(key, Key):
        return key.secret_id, key.version_stage, key.version_id
    return key, None, None


def aliases(secret_id: str) -> set[str]:
    """Every spelling under which ``secret_id`` may name a secret.

    A name stands for itself; a full ARN also for its name and its partial ARN (the ARN
    without the six-character suffix); a partial ARN also for its name. Two ids that share an
    alias may be the same secret. Over-matching is harmless for invalidation; missing is not.
    """
    found = {secret_id}
    if secret_id.startswith("arn:") and ":secret:" in secret_id:
        name = secret_id.split(":secret:", 1)[1]
        found.add(name)
        match = _ARN_SUFFIX.fullmatch(name)
        if match:
            found.add(match.group(1))
            found.add(secret_id[:-7])
    return found
