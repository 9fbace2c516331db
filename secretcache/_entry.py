"""One cached item: its value, deadlines and remembered failure, and how fetches build one."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from secretcache._errors import SecretCacheError, SecretFormatError, SecretUnavailableError
from secretcache._json import parse_document, select_key, thaw
from secretcache._logs import Facts, LogLine
from secretcache._value import RefreshResult, SecretValue

if TYPE_CHECKING:
    from secretcache._policy import RetryPolicy, Timing

__all__ = [
    "HOLDS_BINARY",
    "READ_FAILS",
    "Entry",
    "Failure",
    "Memo",
    "behind_error",
    "binary_of",
    "failed_entry",
    "fresh_entry",
    "json_of",
    "refresh_result",
    "string_of",
    "thaw",
    "value_of",
]

_UNPARSED: Any = object()

READ_FAILS = "fetching secret %r failed and no cached value can be served: %s"
"""The WARNING a failed fetch logs when the read that asked for it raises that same error."""


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


class Memo:
    """What is worked out once per version from a cached value: its JSON parse and the models validated from it.

    Shared by the entries that hold one version of one key: an entry replacing another of the
    same version (a refresh that found no new version, a failed fetch keeping the value to serve)
    takes over its memo (:meth:`Table.install`), so a parse or a validation still running on the
    replaced entry lands where later reads look. Written without the cache lock: ``parsed`` once
    (two threads racing both parse, to equal results), ``models`` copied on write under
    :mod:`secretcache._model`'s guard, so a reader takes no lock.
    """

    __slots__ = ("models", "parsed")

    def __init__(self) -> None:
        self.parsed: Any = _UNPARSED
        self.models: dict[Any, tuple[Any, Any]] | None = None  # secretcache._model: validated once per model


class Entry:
    """What the cache knows about one key: a value and/or a remembered failure, with deadlines.

    The value and the deadlines never change once built (a refresh installs a new ``Entry``),
    so readers use an entry without locking. Bookkeeping written outside that rule: ``hits``
    (counted on the hot path, doubling as the recency signal for eviction), ``seen`` (the hit
    count at the last eviction sweep), its :class:`Memo` (the JSON parse and the models validated
    from it, shared with the entries of the same version that replace it), and ``refresh_at``, moved to
    ``fresh_until`` under the cache lock once a background refresh is scheduled. An entry whose
    version another spelling, a late answer or an orphaned fetch has overtaken is *retired*: its
    deadlines drop to ``-inf`` under the lock (:meth:`retire`), so no read serves it again.

    Invariant: ``refresh_at <= fresh_until <= stale_until``, and ``refresh_at`` is ``-inf``
    without a value, so a read that finds ``now < refresh_at`` may return the value with no
    further check.

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
        "memo",
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
        # No value, no hit: the hot path needs only this one comparison.
        self.refresh_at = min(refresh_at, fresh_until) if value is not None else -math.inf
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.failure = failure
        self.hits = 0
        self.seen = 0
        self.memo = Memo()

    def __repr__(self) -> str:
        state = "value" if self.value is not None else "no value"
        failure = self.failure
        failed = f", error={type(failure.error).__name__}, failures={failure.count}" if failure else ""
        return f"<Entry {state}, fresh_until={self.fresh_until:.3f}{failed}>"

    def copy(self) -> Entry:
        """A new entry with this one's value, TTL and deadlines, and no hits or failure (for another key)."""
        return Entry(
            self.value,
            ttl=self.ttl,
            refresh_at=self.refresh_at,
            fresh_until=self.fresh_until,
            stale_until=self.stale_until,
        )

    def retire(self) -> None:
        """Never serve this entry again (the store calls it under its lock): a newer version was served."""
        self.refresh_at = self.fresh_until = self.stale_until = -math.inf

    def is_fresh(self, now: float) -> bool:
        """Whether the value may be served without fetching."""
        return now < self.fresh_until

    def backing_off(self, now: float) -> bool:
        """Whether the last fetch failed recently enough that no new fetch may start yet."""
        return self.failure is not None and now < self.failure.retry_at

    def servable(self, now: float) -> bool:
        """Whether a value exists and is young enough to serve, fresh or stale."""
        return self.value is not None and now < self.stale_until

    def json(self, secret_id: str) -> Any:
        """The value parsed as JSON, parsed at most once per entry (callers must not mutate it).

        Raises:
            SecretFormatError: The value is binary, not valid JSON, or nested too deeply to parse.
        """
        memo = self.memo
        parsed = memo.parsed
        if parsed is _UNPARSED:
            if self.string is None:
                raise SecretFormatError(
                    f"secret {secret_id!r} holds binary data, not a JSON string", secret_id=secret_id
                )
            parsed = parse_document(self.string, secret_id)
            memo.parsed = parsed
        return parsed


HOLDS_BINARY = "secret %r holds binary data; use get_secret_binary()"
"""The message of the :class:`SecretFormatError` a string getter raises for a secret holding binary data."""


def string_of(entry: Entry, secret_id: str) -> str:
    """The entry's ``SecretString``.

    Raises:
        SecretFormatError: The secret holds binary data.
    """
    if entry.string is None:
        raise SecretFormatError(HOLDS_BINARY % (secret_id,), secret_id=secret_id)
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


def refresh_result(before: Entry | None, entry: Entry) -> RefreshResult:
    """What a forced fetch found: ``entry`` is its outcome, ``before`` the key's entry when it started."""
    previous = before.value if before is not None else None
    return RefreshResult(
        value=value_of(entry),
        stale=entry.failure is not None,  # the fetch failed and the last good value was kept
        previous_version_id=None if previous is None else previous.version_id,
    )


def json_of(entry: Entry, secret_id: str, key: str | None) -> Any:
    """A private copy of the entry's parsed JSON document, or of one top-level key of it.

    Raises:
        TypeError: ``key`` is not a str or None.
        SecretFormatError: Binary data, invalid JSON, JSON nested too deeply to parse, not an
            object (with ``key``), or ``key`` missing. No error quotes or chains the value.
    """
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a str or None, not {type(key).__name__}")
    document = entry.json(secret_id)
    if key is None:
        return thaw(document)
    return thaw(select_key(document, key, secret_id))


def fresh_entry(
    value: SecretValue, *, ttl: float | None, replica: bool, draw: float, now: float, timing: Timing
) -> Entry:
    """The entry for a value whose fetch began at ``now``: fresh for its TTL, less up to ``ttl_jitter`` of it.

    ``ttl`` ``None`` is a lookup by version id: immutable, fresh until evicted. A value read from
    a replica Region lives ``replica_ttl`` at most (the key keeps its TTL), so reads go back to
    the primary Region soon after it recovers. ``draw`` is a random number in ``[0, 1)`` that
    spreads the refreshes of entries fetched together.
    """
    lives = math.inf if ttl is None else min(ttl, timing.replica_ttl) if replica else ttl
    lifetime = lives * (1.0 - timing.ttl_jitter * draw)
    fresh_until = now + lifetime
    ahead = timing.refresh_ahead
    return Entry(
        value,
        ttl=ttl,
        refresh_at=now + lifetime * ahead if ahead is not None else fresh_until,
        fresh_until=fresh_until,
        stale_until=fresh_until + timing.max_stale,
    )


def behind_error(secret_id: str, value: SecretValue, region: str | None) -> SecretUnavailableError:
    """The failure of a fetch whose answer is older than a version already served (not admitted)."""
    where = f"replica Region {region} (read while the primary Region is failing)" if region else "Secrets Manager"
    return SecretUnavailableError(
        f"{where} answered version {value.version_id} of secret {secret_id!r}, older than a version "
        "this cache has already served; the older version is not served",
        secret_id=secret_id,
    )


def failed_entry(
    previous: Entry | None,
    err: SecretCacheError,
    secret_id: str,
    now: float,
    retry: RetryPolicy,
    facts: Facts,
) -> tuple[Entry, LogLine | None]:
    """The entry to keep after a failed fetch, and the log line the failure deserves.

    ``facts`` are the fetch's log fields; a line about serving a cached value adds its
    ``version_id``.

    The last good value is kept through outages only (:class:`SecretUnavailableError`) while
    still servable; a definite answer (deleted, access revoked) stops serving it. Either way the
    failure is remembered, with the backoff before the next fetch.
    """
    count = previous.failure.count + 1 if previous is not None and previous.failure is not None else 1
    failure = Failure(err, now + retry.backoff_after(count), count)
    if previous is not None and previous.servable(now) and isinstance(err, SecretUnavailableError):
        assert previous.value is not None
        line: LogLine | None = None
        if previous.failure is None:
            line = (
                logging.WARNING,
                "serving the cached value of secret %r (version %s) while fetching fails: %s",
                (secret_id, previous.value.version_id, err),
                facts._replace(version_id=previous.value.version_id),
            )
        kept = Entry(
            previous.value,
            ttl=previous.ttl,
            refresh_at=failure.retry_at,  # refresh-ahead tries again after the backoff
            fresh_until=previous.fresh_until,
            stale_until=previous.stale_until,
            failure=failure,
        )
        return kept, line
    line = None
    if not isinstance(err, SecretUnavailableError):
        # A definite answer the caller receives as an exception; not worth a warning.
        line = (logging.DEBUG, "fetching secret %r failed: %s", (secret_id, err), facts)
    elif previous is None or previous.failure is None or previous.value is not None:
        # First failure, or the cached value just grew too old to serve: reads now fail.
        line = (
            logging.WARNING,
            READ_FAILS,
            (secret_id, err),
            facts,
        )
    return Entry(None, ttl=previous.ttl if previous is not None else None, failure=failure), line
