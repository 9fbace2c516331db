"""Secret identity: argument checks, cache keys, and matching names against ARNs."""

from __future__ import annotations

import re
from typing import NamedTuple

from secretcache._errors import InvalidSecretRequestError
from secretcache._policy import to_seconds

__all__ = ["CacheKey", "aliases", "check_read", "check_secret_id", "exact", "make_key", "names"]

MAX_SECRET_ID = 2048
MIN_VERSION_ID = 32
MAX_VERSION_ID = 64
MAX_STAGE = 256
DEFAULT_STAGE = "AWSCURRENT"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# The six random characters Secrets Manager appends to a name to form the ARN.
_ARN_SUFFIX = re.compile(r"(.+)-[A-Za-z0-9]{6}")


class CacheKey(NamedTuple):
    """Cache key of one lookup: a secret id plus a staging label or a version id, read by field.

    Built by :func:`make_key` (or as ``CacheKey(secret_id)`` for AWSCURRENT), so equal lookups
    get equal keys: AWSCURRENT read by stage, named or not, has ``version_stage`` ``None``; the
    store's hot index holds the entries of such keys by bare secret id.
    """

    secret_id: str
    """The secret's name, full ARN or partial ARN, as the caller spelled it."""
    version_stage: str | None = None
    """The staging label asked for (never AWSCURRENT without a version id), or ``None``."""
    version_id: str | None = None
    """A version id (an immutable lookup), or ``None``."""

    @property
    def stage(self) -> str:
        """The staging label this key reads (AWSCURRENT unless another was asked for)."""
        return self.version_stage or DEFAULT_STAGE

    @property
    def current(self) -> bool:
        """Whether this key reads AWSCURRENT by stage (the hot path's lookup, by bare secret id)."""
        return self.version_stage is None and self.version_id is None


def exact(value: str) -> str:
    """``value`` as a plain ``str``: a subclass's ``__hash__``, ``__eq__`` and methods are user code.

    Ids and labels become keys that the store hashes and compares under its lock, where no user
    code may run (a ``__hash__`` reading the cache would deadlock it; one that raises would stop
    a fetch midway): a subclass is copied to a plain string at the public boundary.
    """
    return value if type(value) is str else str.__str__(value)


def check_secret_id(secret_id: object) -> str:
    """Return ``secret_id`` as a plain ``str`` (:func:`exact`) if it is a usable secret name or ARN.

    Raises:
        TypeError: Not a string.
        InvalidSecretRequestError: Empty, blank, longer than 2048 characters, or holding a
            control character (none of which a secret name or ARN can be).
    """
    if not isinstance(secret_id, str):
        raise TypeError(f"secret_id must be a str (a secret name or ARN), not {type(secret_id).__name__}")
    secret_id = exact(secret_id)
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
    value = exact(value)
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
    if vid is None and stage == DEFAULT_STAGE:
        stage = None  # one key for AWSCURRENT, named or not
    return CacheKey(sid, stage, vid)


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


def aliases(secret_id: str) -> set[str]:
    """Every spelling under which ``secret_id`` may name a secret.

    A name stands for itself; a full ARN also for its name and its partial ARN (the ARN
    without the six-character suffix); a partial ARN also for its name. Two ids that share an
    alias may be the same secret. An ARN cannot say whether it is full or partial
    (``...:secret:a-bcdefg`` is both), so this over-matches: invalidation must miss nothing, and
    :meth:`Table.matches <secretcache._table.Table.matches>` uses it on a key's spelling only
    while no value has said which secret the key reads.
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


def names(secret_id: str, name: str, arn: str) -> bool:
    """Whether ``secret_id`` names exactly the secret called ``name`` whose full ARN is ``arn``.

    It does if it is that name, that ARN, or that ARN without its six-character suffix (the
    partial ARN). Unlike :func:`aliases`, which over-matches on purpose (for invalidation), this
    tells secrets apart: ``...:secret:app-config`` is the partial ARN of ``app-config``, never a
    full ARN of ``app``; so an answer naming several secrets is matched to the ids asked for.
    """
    if secret_id in (name, arn):
        return True
    return len(arn) == len(secret_id) + 7 and arn.startswith(secret_id) and arn[len(secret_id)] == "-"
