"""One cached item, and the single-flight handle of a fetch in progress."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from secretcache._errors import SecretCacheError, SecretFormatError, SecretUnavailableError, fresh_copy
from secretcache._value import SecretValue

__all__ = ["Entry", "Failure", "Flight", "binary_of", "json_of", "string_of", "thaw", "value_of"]

_UNPARSED: Any = object()


class Failure:
    """A failed fetch remembered on an entry: the error and when to try again.

    Attributes:
        error: The typed error of the last fetch.
        retry_at: Clock time before which no new fetch is started.
        count: Consecutive failed fetches.
    """

    __slots__ = ("count", "error", "retry_at")

    def __init__(self, error: SecretCacheError, retry_at: float, count: int) -> None:
        self.error = error
        self.retry_at = retry_at
        self.count = count


class Entry:
    """What the cache knows about one key: a value and/or a remembered failure, with deadlines.

    The value and the deadlines never change once built (a refresh installs a new ``Entry``),
    so readers use an entry without locking. Bookkeeping written outside that rule: ``hits``
    (counted on the hot path, doubling as the recency signal for eviction), ``seen`` (the hit
    count at the last eviction sweep), the memoised JSON parse, and ``refresh_at``, moved to
    ``fresh_until`` under the cache lock once a background refresh is scheduled.

    Invariant: ``refresh_at <= fresh_until <= stale_until``, so a read that finds
    ``now < refresh_at`` may return the value with no further check.

    Attributes:
        value: The last good value, or ``None`` if no value is usable.
        string: ``value.secret_string`` copied for the hot path.
        refresh_at: Clock time from which a read starts a background refresh.
        fresh_until: Clock time up to which ``value`` is served as fresh.
        stale_until: Clock time up to which ``value`` may be served past ``fresh_until``.
        ttl: The TTL this key's values get, so refreshes keep a per-read override.
        failure: The last fetch's failure, or ``None`` after a success.
    """

    __slots__ = (
        "failure",
        "fresh_until",
        "hits",
        "parsed",
        "refresh_at",
        "seen",
        "stale_until",
        "string",
        "ttl",
        "value",
    )

    def __init__(
        self,
        value: SecretValue | None,
        *,
        ttl: float | None = None,
        refresh_at: float = -math.inf,
        fresh_until: float = -math.inf,
        stale_until: float = -math.inf,
        failure: Failure | None = None,
    ) -> None:
        self.value = value
        self.string = value.secret_string if value is not None else None
        self.ttl = ttl
        self.refresh_at = min(refresh_at, fresh_until)
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.failure = failure
        self.hits = 0
        self.seen = 0
        self.parsed: Any = _UNPARSED

    def __repr__(self) -> str:
        state = "value" if self.value is not None else "no value"
        failure = self.failure
        failed = f", error={type(failure.error).__name__}, failures={failure.count}" if failure else ""
        return f"<Entry {state}, fresh_until={self.fresh_until:.3f}{failed}>"

    def is_fresh(self, now: float) -> bool:
        """Whether the value may be served without fetching."""
        return now < self.fresh_until

    def backing_off(self, now: float) -> bool:
        """Whether the last fetch failed recently enough that no new fetch may start yet."""
        return self.failure is not None and now < self.failure.retry_at

    def servable(self, now: float) -> bool:
        """Whether a value exists and is young enough to serve, fresh or stale."""
        return self.value is not None and now < self.stale_until

    def raise_error(self) -> None:
        """Raise a fresh copy of the remembered failure (with its cause chained)."""
        assert self.failure is not None
        error = fresh_copy(self.failure.error)
        try:
            raise error from error.__cause__
        finally:
            del error  # else the frame and the traceback keep each other alive until a GC pass

    def json(self, secret_id: str) -> Any:
        """The value parsed as JSON, parsed at most once per entry (callers must not mutate it).

        Raises:
            SecretFormatError: The value is binary or not valid JSON.
        """
        parsed = self.parsed
        if parsed is _UNPARSED:
            if self.string is None:
                raise SecretFormatError(
                    f"secret {secret_id!r} holds binary data, not a JSON string", secret_id=secret_id
                )
            try:
                parsed = json.loads(self.string)
            except ValueError as err:
                # The JSON error's text quotes the document: keep it out of the chain.
                raise SecretFormatError(
                    f"secret {secret_id!r} is not valid JSON (error at line {err_line(err)})",
                    secret_id=secret_id,
                ) from None
            self.parsed = parsed
        return parsed


def err_line(err: ValueError) -> str:
    """Position of a JSON error without the document text."""
    if isinstance(err, json.JSONDecodeError):
        return f"{err.lineno}, column {err.colno}"
    return "?"


def thaw(data: Any) -> Any:
    """Deep-copy parsed JSON so a caller can change it without touching the cached copy."""
    if isinstance(data, dict):
        return {key: thaw(item) for key, item in data.items()}
    if isinstance(data, list):
        return [thaw(item) for item in data]
    return data


class Flight:
    """A fetch in progress for one key; readers of the key wait on it instead of fetching.

    Safe to share between threads: the owner calls :meth:`finish` once, waiters call
    :meth:`wait`. ``ttl`` is the per-read TTL override of the read that started it, if any.
    """

    __slots__ = ("_done", "entry", "error", "ttl")

    def __init__(self, ttl: float | None = None) -> None:
        self._done = threading.Event()
        self.ttl = ttl
        self.entry: Entry | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether :meth:`finish` has been called."""
        return self._done.is_set()

    def finish(self, entry: Entry | None, error: BaseException | None = None) -> None:
        """Publish the outcome and wake every waiter."""
        self.entry = entry
        self.error = error
        self._done.set()

    def wait(self, secret_id: str) -> Entry:
        """Block until the fetch ends; return its entry or raise its unexpected failure.

        An ``Exception`` is re-raised as is. A fetch ended by ``KeyboardInterrupt`` or
        ``SystemExit`` on its own thread surfaces elsewhere as ``SecretUnavailableError``.
        """
        self._done.wait()
        if self.entry is not None:
            return self.entry
        if isinstance(self.error, Exception):
            raise self.error
        raise SecretUnavailableError(
            f"the fetch of secret {secret_id!r} this read waited for was interrupted", secret_id=secret_id
        ) from self.error


def string_of(entry: Entry, secret_id: str) -> str:
    """The entry's ``SecretString``.

    Raises:
        SecretFormatError: The secret holds binary data.
    """
    if entry.string is None:
        raise SecretFormatError(f"secret {secret_id!r} holds binary data; use get_secret_binary()", secret_id=secret_id)
    return entry.string


def binary_of(entry: Entry, secret_id: str) -> bytes:
    """The entry's ``SecretBinary``.

    Raises:
        SecretFormatError: The secret holds a string.
    """
    value = entry.value
    if value is None or value.secret_binary is None:
        raise SecretFormatError(f"secret {secret_id!r} holds a string; use get_secret_string()", secret_id=secret_id)
    return value.secret_binary


def value_of(entry: Entry) -> SecretValue:
    """The entry's :class:`SecretValue` (entries handed to readers always hold one)."""
    assert entry.value is not None
    return entry.value


def json_of(entry: Entry, secret_id: str, key: str | None) -> Any:
    """A private copy of the entry's parsed JSON document, or of one top-level key of it.

    Raises:
        TypeError: ``key`` is not a str or None.
        SecretFormatError: Binary data, invalid JSON, not an object (with ``key``), or ``key``
            missing. The message never quotes the value.
    """
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a str or None, not {type(key).__name__}")
    document = entry.json(secret_id)
    if key is None:
        return thaw(document)
    if not isinstance(document, dict):
        raise SecretFormatError(
            f"secret {secret_id!r} is JSON but not an object; cannot read key {key!r}", secret_id=secret_id
        )
    try:
        return thaw(document[key])
    except KeyError:
        raise SecretFormatError(f"secret {secret_id!r} has no JSON key {key!r}", secret_id=secret_id) from None
