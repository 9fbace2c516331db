"""One cached item, and the single-flight handle of a fetch in progress."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from secretcache._errors import SecretCacheError, SecretFormatError, SecretUnavailableError, fresh_copy
from secretcache._value import SecretValue

__all__ = ["Entry", "Flight", "thaw"]

_UNPARSED: Any = object()


class Entry:
    """What the cache knows about one key: a value and/or a remembered failure, with deadlines.

    The value and the deadlines never change once built; a refresh installs a new ``Entry``.
    Readers therefore use an entry without locking. Three fields are bookkeeping written
    outside the lock: ``hits`` (counted on the hot path, doubling as the recency signal for
    eviction), ``seen`` (the hit count at the last eviction sweep), and the memoised JSON parse.

    Attributes:
        value: The last good value, or ``None`` if no value is usable.
        string: ``value.secret_string`` copied for the hot path.
        fresh_until: Clock time up to which ``value`` is served without fetching.
        stale_until: Clock time up to which ``value`` may be served when fetching fails.
        error: The failure of the last fetch, or ``None`` after a success.
        retry_at: Clock time before which no new fetch is started after a failure.
        failures: Consecutive failed fetches (0 after a success).
    """

    __slots__ = (
        "error",
        "failures",
        "fresh_until",
        "hits",
        "parsed",
        "retry_at",
        "seen",
        "stale_until",
        "string",
        "value",
    )

    def __init__(
        self,
        value: SecretValue | None,
        *,
        fresh_until: float = -math.inf,
        stale_until: float = -math.inf,
        error: SecretCacheError | None = None,
        retry_at: float = -math.inf,
        failures: int = 0,
    ) -> None:
        self.value = value
        self.string = value.secret_string if value is not None else None
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.error = error
        self.retry_at = retry_at
        self.failures = failures
        self.hits = 0
        self.seen = 0
        self.parsed: Any = _UNPARSED

    def __repr__(self) -> str:
        state = "value" if self.value is not None else "no value"
        failure = f", error={type(self.error).__name__}, failures={self.failures}" if self.error else ""
        return f"<Entry {state}, fresh_until={self.fresh_until:.3f}{failure}>"

    def is_fresh(self, now: float) -> bool:
        """Whether the value may be served without fetching."""
        return now < self.fresh_until

    def backing_off(self, now: float) -> bool:
        """Whether the last fetch failed recently enough that no new fetch may start yet."""
        return self.error is not None and now < self.retry_at

    def servable(self, now: float) -> bool:
        """Whether a value exists and is young enough to serve, fresh or stale."""
        return self.value is not None and now < self.stale_until

    def raise_error(self) -> None:
        """Raise a fresh copy of the remembered failure (with its cause chained)."""
        assert self.error is not None
        error = fresh_copy(self.error)
        raise error from error.__cause__

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
    :meth:`wait`.
    """

    __slots__ = ("_done", "entry", "error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None

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
