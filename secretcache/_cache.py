"""The ``SecretCache`` facade: reads, refresh-ahead, prefetch, invalidation, listeners, stats."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from secretcache import redaction
from secretcache._entry import Entry, Flight, binary_of, json_of, string_of, value_of
from secretcache._errors import SecretCacheError
from secretcache._fetcher import Fetcher
from secretcache._fork import track
from secretcache._keys import CacheKey, check_secret_id, make_key
from secretcache._loader import Loader
from secretcache._policy import (
    Duration,
    RetryPolicy,
    Timing,
    check_fraction,
    check_overrides,
    check_refresh_ahead,
    check_size,
    settings_from_env,
    to_seconds,
)
from secretcache._stats import CacheStats, Counters
from secretcache._table import EntryTable
from secretcache._value import SecretChange, SecretValue
from secretcache._worker import BackgroundPool

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_secretsmanager import SecretsManagerClient
    from typing_extensions import Self

__all__ = ["DEFAULT_RETRY", "ChangeListener", "SecretCache"]

logger = logging.getLogger("secretcache")

DEFAULT_RETRY = RetryPolicy()
"""The retry policy of a cache built without one (immutable, so one instance serves all)."""

REFRESH_THREADS = 2
"""Daemon threads per cache running refresh-ahead fetches (started on first use)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A read that must wait for a fetch: the key, its flight, and whether this read runs it."""

    key: CacheKey
    flight: Flight
    owner: bool
    previous: Entry | None


class ChangeListener(Protocol):
    """Called with a :class:`SecretChange` when a fetch finds a new version behind a label."""

    def __call__(self, change: SecretChange, /) -> None:
        """Handle one change; exceptions are logged and swallowed."""


class SecretCache:
    """A thread-safe, bounded TTL cache over Secrets Manager ``GetSecretValue``.

    Each (secret, staging label) is fetched about once per ``ttl``, however many threads read
    it: concurrent readers of a cold key wait for one shared fetch, and readers of other keys
    never wait for it. A fresh value is returned without locking or I/O. With refresh-ahead
    (the default), the first read after ``refresh_ahead * ttl`` starts one background refresh
    and returns the cached value at once, so once warm no read waits on the network; readers
    block only when no usable value exists (cold, or past ``max_stale``). Lookups by
    ``version_id`` are immutable and never refetched for age.

    Failures: not-found, access-denied, decryption and invalid-request errors raise at once
    and are remembered for a short backoff; transient failures (throttling, 5xx, timeouts,
    connection errors) are retried per ``retry``, then the last good value is served for up
    to ``max_stale`` seconds past its TTL before :class:`SecretUnavailableError` is raised.

    One instance is meant to be shared by every thread of a process; it survives ``fork()``
    (fresh locks, no inherited fetches or threads, new connections in the child). Call
    :meth:`close` (or use it as a context manager) to stop background work and drop every
    cached value; a closed cache refuses reads.

    Args:
        client: A boto3 ``secretsmanager`` client. When omitted, one is built on first use
            from the default credential and region chain, with botocore's retries off and
            bounded connect/read timeouts.
        ttl: Seconds (or a ``timedelta``) a fetched value is served before it is fetched again.
            ``0`` caches nothing across reads (concurrent reads still share one fetch).
        max_size: Most entries held; the least recently used are evicted first.
        refresh_ahead: Fraction of the TTL in ``(0, 1]`` after which a read refreshes the value
            in the background; ``None`` turns refresh-ahead off (expired values are then
            refetched in the foreground).
        max_stale: Seconds past its TTL that a value may still be served while fetching fails
            (or, with refresh-ahead, while the background refresh runs).
        ttl_jitter: Fraction in ``[0, 1)``: each fetched value's TTL is shortened by a random
            share up to this, so many processes do not refresh in lockstep.
        retry: Retry and failure-backoff settings.
        ttl_overrides: TTL in seconds per secret id or id prefix (the longest prefix wins),
            e.g. ``{"prod/db/": 60}``.
        clock: Zero-argument function returning monotonic seconds (default
            ``time.monotonic``); inject a fake one in tests.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        client: SecretsManagerClient | None = None,
        *,
        ttl: Duration = 300.0,
        max_size: int = 1024,
        refresh_ahead: float | None = 0.8,
        max_stale: Duration = 3600.0,
        ttl_jitter: float = 0.1,
        retry: RetryPolicy = DEFAULT_RETRY,
        ttl_overrides: Mapping[str, Duration] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument function returning seconds")
        self._timing = Timing(
            ttl=to_seconds(ttl, "ttl"),
            ttl_jitter=check_fraction(ttl_jitter, "ttl_jitter", upper=1.0),
            refresh_ahead=check_refresh_ahead(refresh_ahead, "refresh_ahead"),
            max_stale=to_seconds(max_stale, "max_stale"),
            overrides=check_overrides(ttl_overrides),
        )
        self._retry = retry
        self._clock: Callable[[], float] = clock or time.monotonic
        self._counters = Counters()
        self._fetcher = Fetcher(client, retry, self._counters)
        self._table = EntryTable(check_size(max_size, "max_size", minimum=1), self._counters)
        # The hot path reads this dict without the lock; only the table changes it.
        self._entries = self._table.entries
        self._listeners: tuple[ChangeListener, ...] = ()
        self._loader = Loader(
            self._table, self._fetcher, self._timing, retry, self._counters, self._clock, self._notify
        )
        self._pool = BackgroundPool(threads=REFRESH_THREADS, capacity=max_size)
        self._closed = False
        track(self)
        redaction.install()

    @classmethod
    def from_env(cls, client: SecretsManagerClient | None = None, *, prefix: str = "SECRETCACHE_") -> SecretCache:
        """Build a cache from ``{prefix}*`` environment variables; unset ones keep their defaults.

        Reads ``TTL``, ``MAX_SIZE``, ``MAX_STALE``, ``REFRESH_AHEAD`` (a fraction, or ``off``),
        ``TTL_JITTER``, ``TTL_OVERRIDES`` (a JSON object) and ``RETRY_ATTEMPTS``,
        ``RETRY_INITIAL_DELAY``, ``RETRY_MAX_DELAY``, ``RETRY_DEADLINE``,
        ``RETRY_FAILURE_BACKOFF``, ``RETRY_MAX_FAILURE_BACKOFF``, each after ``prefix``.

        Raises:
            ValueError: A variable is unknown or invalid; the message names it and its value.
        """
        return cls(client, **settings_from_env(os.environ, prefix))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        timing = self._timing
        return (
            f"SecretCache(ttl={timing.ttl}, max_size={self._table.max_size}, refresh_ahead={timing.refresh_ahead}, "
            f"max_stale={timing.max_stale}, ttl_jitter={timing.ttl_jitter}, retry={self._retry!r}, "
            f"ttl_overrides={dict(timing.overrides)!r}, size={len(self._entries)}{', closed' if self._closed else ''})"
        )

    @property
    def client(self) -> SecretsManagerClient:
        """The boto3 client in use (built on first access when none was given)."""
        return self._fetcher.client

    # -- reads -------------------------------------------------------------------------------

    def get_secret_string(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> str:
        """Return a secret's ``SecretString``.

        Args:
            secret_id: The secret's name, full ARN or partial ARN.
            version_stage: Staging label to read (default ``"AWSCURRENT"``).
            version_id: A version id to read; cached until evicted. With ``version_stage``,
                both must name the same version.
            force_refresh: Fetch now even if a fresh value is cached.
            ttl: Seconds this secret's values live from the fetch this read causes on
                (overrides ``ttl`` and ``ttl_overrides``); a read served from the cache
                leaves the current value's lifetime alone. Reads that pass ``ttl`` skip the
                lock-free fast path (a hit still does no I/O); on hot paths prefer
                ``ttl_overrides``.

        Raises:
            SecretFormatError: The secret holds binary data.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        if version_stage is None and version_id is None and not force_refresh and ttl is None:
            try:
                entry = self._entries[secret_id]
            except (KeyError, TypeError):
                pass
            else:
                if entry.refresh_at > self._clock():
                    string = entry.string
                    if string is not None:
                        entry.hits += 1
                        return string
        return string_of(self._read(secret_id, version_stage, version_id, force_refresh, ttl), secret_id)

    def get_secret_binary(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> bytes:
        """Return a secret's ``SecretBinary``.

        Takes the same arguments as :meth:`get_secret_string`.

        Raises:
            SecretFormatError: The secret holds a string.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        return binary_of(self._entry(secret_id, version_stage, version_id, force_refresh, ttl), secret_id)

    def get_secret_json(
        self,
        secret_id: str,
        key: str | None = None,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> Any:
        """Return a secret's ``SecretString`` parsed as JSON, or one top-level key of it.

        The string is parsed once per fetched version; each call returns a new copy, so a
        caller may change what it gets without affecting the cache.

        Args:
            secret_id: The secret's name, full ARN or partial ARN.
            key: A key of the top-level JSON object to return instead of the whole document.
            version_stage: See :meth:`get_secret_string`.
            version_id: See :meth:`get_secret_string`.
            force_refresh: See :meth:`get_secret_string`.
            ttl: See :meth:`get_secret_string`.

        Raises:
            SecretFormatError: Binary data, invalid JSON, not an object (with ``key``), or
                ``key`` missing. The message never quotes the value.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        return json_of(self._entry(secret_id, version_stage, version_id, force_refresh, ttl), secret_id, key)

    def get_secret(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> SecretValue:
        """Return a secret version with its metadata (name, ARN, version id, stages, date).

        Takes the same arguments as :meth:`get_secret_string`.

        Raises:
            SecretCacheError: See :class:`SecretCache`.
        """
        return value_of(self._entry(secret_id, version_stage, version_id, force_refresh, ttl))

    def prefetch(self, secret_ids: Iterable[str]) -> dict[str, SecretCacheError]:
        """Warm AWSCURRENT of many secrets with ``BatchGetSecretValue``, 20 per call.

        Secrets already fresh, being fetched, or backing off after a failure cost nothing.
        Readers arriving meanwhile wait for the batch instead of fetching on their own. If the
        batch operation is refused (no ``secretsmanager:BatchGetSecretValue`` permission),
        the secrets are fetched one by one instead. Per-secret errors are remembered for those
        secrets only, like errors of single reads.

        Returns:
            The typed error of each secret that could not be warmed (empty when all were).

        Raises:
            TypeError: ``secret_ids`` is a single string or holds a non-string.
            InvalidSecretRequestError: An id is empty or too long (before any call).
        """
        if isinstance(secret_ids, (str, bytes)):
            raise TypeError("prefetch() takes an iterable of secret ids, not a single string")
        ids = list(dict.fromkeys(check_secret_id(secret_id) for secret_id in secret_ids))
        failures: dict[str, SecretCacheError] = {}
        claimed: list[tuple[str, Flight, Entry | None]] = []
        now = self._clock()
        with self._table.lock:
            self._check_open()
            for secret_id in ids:
                entry = self._entries.get(secret_id)
                if secret_id in self._table.flights or (entry is not None and entry.is_fresh(now)):
                    continue
                if entry is not None and entry.backing_off(now):
                    if not entry.servable(now) and entry.failure is not None:
                        failures[secret_id] = entry.failure.error
                    continue
                flight = self._table.flights[secret_id] = Flight()
                claimed.append((secret_id, flight, entry))
        if claimed:
            failures.update(self._loader.prefetch(claimed))
        return failures

    # -- control -----------------------------------------------------------------------------

    def refresh(
        self, secret_id: str, *, version_stage: str | None = None, version_id: str | None = None
    ) -> SecretValue:
        """Fetch a secret now, whatever its age, and return the new value.

        A refresh already in flight for the same key is joined rather than duplicated. If the
        fetch fails transiently, the last good value is returned while within ``max_stale``.

        Raises:
            SecretCacheError: See :class:`SecretCache`.
        """
        return self.get_secret(secret_id, version_stage=version_stage, version_id=version_id, force_refresh=True)

    def invalidate(self, secret_id: str | None = None) -> int:
        """Drop every cached entry of a secret, or of all secrets when called without one.

        ``secret_id`` may be the name, the full ARN or a partial ARN: entries are dropped
        however they were requested. Linearizable: once this returns, no read returns a value
        fetched before it was called, including values of fetches still in flight.

        Returns:
            How many entries were dropped.

        Raises:
            TypeError: ``secret_id`` is not a str or None.
            InvalidSecretRequestError: ``secret_id`` is empty or too long.
        """
        return len(self._invalidate(secret_id))

    def _invalidate(self, secret_id: str | None) -> list[CacheKey]:
        """:meth:`invalidate`, returning the keys dropped (AWSCURRENT keys are plain ids)."""
        dropped = self._table.drop(None if secret_id is None else check_secret_id(secret_id))
        if dropped:
            logger.debug("invalidated %d cached entries of %s", len(dropped), secret_id or "all secrets")
        return dropped

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` whenever a fetch finds a new version id behind a staging label.

        The listener receives a :class:`SecretChange` (ids only, never a value), once per
        change of a secret's label however the secret was spelled, outside any lock, on the
        thread that fetched (a background thread for refresh-ahead). The first fetch of a key
        is not a change; a refetch after :meth:`invalidate` is. Exceptions are logged and
        swallowed.

        Returns:
            A function that unsubscribes the listener (calling it twice is harmless).
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        with self._table.lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._table.lock:
                self._listeners = tuple(item for item in self._listeners if item is not listener)

        return unsubscribe

    def stats(self) -> CacheStats:
        """Return a snapshot of the counters (never a secret id or value)."""
        hits, size = self._table.hits_and_size()
        return self._counters.snapshot(hits=hits, size=size)

    def close(self) -> None:
        """Stop background refreshes, drop every cached value and refuse further reads. Idempotent."""
        with self._table.lock:
            self._closed = True
        self._pool.close()
        self._table.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _entry(
        self, secret_id: str, version_stage: str | None, version_id: str | None, force: bool, ttl: Duration | None
    ) -> Entry:
        """The hot path shared by the getters other than :meth:`get_secret_string`."""
        if version_stage is None and version_id is None and not force and ttl is None:
            try:
                entry = self._entries[secret_id]
            except (KeyError, TypeError):
                pass
            else:
                if entry.refresh_at > self._clock() and entry.value is not None:
                    entry.hits += 1
                    return entry
        return self._read(secret_id, version_stage, version_id, force, ttl)

    def _read(self, secret_id: object, version_stage: object, version_id: object, force: object, ttl: object) -> Entry:
        """The slow path: validate, serve under the lock, or wait for a (shared) fetch."""
        pending = self._begin(secret_id, version_stage, version_id, force, ttl)
        if isinstance(pending, Entry):
            return pending
        return self._finish(pending)

    def _begin(
        self, secret_id: object, version_stage: object, version_id: object, force: object, ttl: object
    ) -> Entry | Pending:
        """Validate, then serve without I/O if possible, else join or claim the key's fetch.

        Never blocks on the network: returns the entry to serve, or the :class:`Pending`
        fetch to complete with :meth:`_finish` (which may block).
        """
        key = make_key(secret_id, version_stage, version_id)
        if not isinstance(force, bool):
            raise TypeError(f"force_refresh must be a bool, not {type(force).__name__}")
        seconds = None if ttl is None else to_seconds(ttl, "ttl")
        table = self._table
        now = self._clock()
        with table.lock:
            self._check_open()
            entry = table.entries.get(key)
            if entry is not None and not force:
                served = self._serve_cached(key, entry, now)
                if served is not None:
                    return served
            flight = table.flights.get(key)
            owner = flight is None
            if flight is None:
                flight = table.flights[key] = Flight(seconds)
            self._counters.add("misses")
        return Pending(key, flight, owner, entry)

    def _finish(self, pending: Pending) -> Entry:
        """Run the fetch if this read owns it, wait for it, and serve its outcome (may block)."""
        key = pending.key
        if pending.owner:
            self._loader.fetch(key, pending.flight, pending.previous)
        result = pending.flight.wait(key if isinstance(key, str) else key.secret_id)
        if result.failure is None:
            return result
        with self._table.lock:
            return self._serve_failed(result, self._clock())

    def _serve_cached(self, key: CacheKey, entry: Entry, now: float) -> Entry | None:
        """Serve ``entry`` without waiting if it can be; ``None`` means fetch. Locked."""
        ahead = self._timing.refresh_ahead is not None
        if entry.is_fresh(now):
            entry.hits += 1
            if ahead and now >= entry.refresh_at and not entry.backing_off(now):
                self._refresh_in_background(key, entry)
            return entry
        if entry.backing_off(now):
            return self._serve_failed(entry, now)
        if ahead and entry.servable(now):
            # Stale-while-revalidate: a usable value now, a fresh one shortly.
            self._refresh_in_background(key, entry)
            self._counters.add("stale_served")
            return entry
        return None

    def _refresh_in_background(self, key: CacheKey, entry: Entry) -> None:
        """Start one background refresh of ``key`` unless one is running. Locked."""
        flights = self._table.flights
        if key in flights:
            return
        flight = flights[key] = Flight()
        due = entry.refresh_at
        entry.refresh_at = entry.fresh_until  # reads take the hot path again meanwhile
        if self._pool.submit(lambda: self._background(key, flight, entry, due)):
            self._counters.add("background_refreshes")
        else:  # queue full or closing: let a later read try again
            del flights[key]
            entry.refresh_at = due

    def _background(self, key: CacheKey, flight: Flight, entry: Entry, due: float) -> None:
        """Run a refresh-ahead fetch on a pool thread."""
        try:
            self._loader.fetch(key, flight, entry)
        finally:
            if flight.entry is None:  # ended by an unexpected error: let a later read try again
                with self._table.lock:
                    entry.refresh_at = due

    def _serve_failed(self, entry: Entry, now: float) -> Entry:
        """After a failed fetch: the value if still servable, else the error. Locked."""
        if entry.servable(now):
            if not entry.is_fresh(now):
                self._counters.add("stale_served")
            return entry
        entry.raise_error()
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this SecretCache is closed")

    def _notify(self, change: SecretChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                logger.exception("on_change listener %r failed for secret %r", listener, change.name)

    def _after_fork_in_child(self) -> None:
        """Fresh locks, no inherited fetches or threads, no shared connections; values kept."""
        self._table.reset_after_fork()
        self._counters.reset_after_fork()
        self._fetcher.reset_after_fork()
        self._pool.reset_after_fork()
