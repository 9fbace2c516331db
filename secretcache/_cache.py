"""The ``SecretCache`` facade: reads, refreshes, invalidation, listeners and stats."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cachetools import LRUCache

from secretcache._entry import Entry, Flight, thaw
from secretcache._errors import SecretCacheError, SecretFormatError, SecretUnavailableError
from secretcache._fetcher import Fetcher
from secretcache._keys import DEFAULT_STAGE, CacheKey, Key, aliases, check_secret_id, make_key, split_key
from secretcache._policy import Duration, RetryPolicy, check_fraction, check_size, to_seconds
from secretcache._stats import CacheStats, Counters
from secretcache._value import SecretChange, SecretValue

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_secretsmanager import SecretsManagerClient
    from typing_extensions import Self

__all__ = ["ChangeListener", "SecretCache"]

logger = logging.getLogger("secretcache")

DEFAULT_RETRY = RetryPolicy()
"""The retry policy of a cache built without one (immutable, so one instance serves all)."""


class ChangeListener(Protocol):
    """Called with a :class:`SecretChange` when a fetch finds a new version behind a label."""

    def __call__(self, change: SecretChange, /) -> None:
        """Handle one change; exceptions are logged and swallowed."""


class SecretCache:
    """A thread-safe, bounded TTL cache over Secrets Manager ``GetSecretValue``.

    Each (secret, staging label) is fetched about once per ``ttl``, however many threads read
    it: concurrent readers of a cold or expired key wait for one shared fetch, and readers of
    other keys never wait for it. A fresh value is returned without locking or I/O. Lookups
    by ``version_id`` are immutable and never refetched for age.

    Failures: not-found, access-denied, decryption and invalid-request errors raise at once
    and are remembered for a short backoff; transient failures (throttling, 5xx, timeouts,
    connection errors) are retried per ``retry``, then the last good value is served for up
    to ``max_stale`` seconds past its TTL before :class:`SecretUnavailableError` is raised.

    One instance is meant to be shared by every thread of a process. Call :meth:`close` (or
    use it as a context manager) to drop every cached value; a closed cache refuses reads.

    Args:
        client: A boto3 ``secretsmanager`` client. When omitted, one is built on first use
            from the default credential and region chain, with botocore's retries off and
            bounded connect/read timeouts.
        ttl: Seconds (or a ``timedelta``) a fetched value is served before it is fetched again.
            ``0`` caches nothing across reads (concurrent reads still share one fetch).
        max_size: Most entries held; the least recently used are evicted first.
        max_stale: Seconds past its TTL that a value may still be served while fetching fails.
        ttl_jitter: Fraction in ``[0, 1)``: each fetched value's TTL is shortened by a random
            share up to this, so many processes do not refresh in lockstep.
        retry: Retry and failure-backoff settings.
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
        max_stale: Duration = 3600.0,
        ttl_jitter: float = 0.1,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument function returning seconds")
        self._ttl = to_seconds(ttl, "ttl")
        self._max_size = check_size(max_size, "max_size", minimum=1)
        self._max_stale = to_seconds(max_stale, "max_stale")
        self._ttl_jitter = check_fraction(ttl_jitter, "ttl_jitter", upper=1.0)
        self._retry = retry
        self._clock: Callable[[], float] = clock or time.monotonic
        self._random = random.Random()  # noqa: S311 - spreads refresh times, not a secret
        self._counters = Counters()
        self._fetcher = Fetcher(client, retry, self._counters)
        self._lock = threading.Lock()
        # Read without the lock by the hot path; changed only under the lock.
        self._entries: dict[CacheKey, Entry] = {}
        self._flights: dict[CacheKey, Flight] = {}
        # Last version id seen per (ARN, stage), kept across invalidation so a refetch after
        # a rotation event still reports the change; bounded like the entries.
        self._versions: LRUCache[tuple[str, str], str] = LRUCache(maxsize=max_size)
        self._listeners: tuple[ChangeListener, ...] = ()
        self._retired_hits = 0
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"SecretCache(ttl={self._ttl}, max_size={self._max_size}, max_stale={self._max_stale}, "
            f"ttl_jitter={self._ttl_jitter}, retry={self._retry!r}, size={len(self._entries)}"
            f"{', closed' if self._closed else ''})"
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
    ) -> str:
        """Return a secret's ``SecretString``.

        Args:
            secret_id: The secret's name, full ARN or partial ARN.
            version_stage: Staging label to read (default ``"AWSCURRENT"``).
            version_id: A version id to read; cached until evicted. With ``version_stage``,
                both must name the same version.
            force_refresh: Fetch now even if a fresh value is cached.

        Raises:
            SecretFormatError: The secret holds binary data.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        if version_stage is None and version_id is None and not force_refresh:
            try:
                entry = self._entries[secret_id]
            except (KeyError, TypeError):
                pass
            else:
                if entry.fresh_until > self._clock() and entry.string is not None:
                    entry.hits += 1
                    return entry.string
        entry = self._read(secret_id, version_stage, version_id, force_refresh)
        if entry.string is None:
            raise SecretFormatError(
                f"secret {secret_id!r} holds binary data; use get_secret_binary()", secret_id=secret_id
            )
        return entry.string

    def get_secret_binary(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
    ) -> bytes:
        """Return a secret's ``SecretBinary``.

        Takes the same arguments as :meth:`get_secret_string`.

        Raises:
            SecretFormatError: The secret holds a string.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        value = self._entry(secret_id, version_stage, version_id, force_refresh).value
        assert value is not None
        if value.secret_binary is None:
            raise SecretFormatError(
                f"secret {secret_id!r} holds a string; use get_secret_string()", secret_id=secret_id
            )
        return value.secret_binary

    def get_secret_json(
        self,
        secret_id: str,
        key: str | None = None,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
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

        Raises:
            SecretFormatError: Binary data, invalid JSON, not an object (with ``key``), or
                ``key`` missing. The message never quotes the value.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        document = self._entry(secret_id, version_stage, version_id, force_refresh).json(secret_id)
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

    def get_secret(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
    ) -> SecretValue:
        """Return a secret version with its metadata (name, ARN, version id, stages, date).

        Takes the same arguments as :meth:`get_secret_string`.

        Raises:
            SecretCacheError: See :class:`SecretCache`.
        """
        value = self._entry(secret_id, version_stage, version_id, force_refresh).value
        assert value is not None
        return value

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
        targets = None if secret_id is None else aliases(check_secret_id(secret_id))
        with self._lock:
            matched = [key for key in self._entries if targets is None or self._matches(key, targets)]
            flying = [key for key in self._flights if targets is None or self._matches(key, targets)]
            for key in matched:
                self._retired_hits += self._entries.pop(key).hits
            # Orphan fetches in flight: they finish for their own waiters but install nothing.
            for key in flying:
                del self._flights[key]
        if matched:
            logger.debug("invalidated %d cached entries of %s", len(matched), secret_id or "all secrets")
        return len(matched)

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` whenever a fetch finds a new version id behind a staging label.

        The listener receives a :class:`SecretChange` (ids only, never a value), once per
        change, outside any lock, on the thread that fetched. The first fetch of a key is not a
        change; a refetch after :meth:`invalidate` is. Exceptions are logged and swallowed.

        Returns:
            A function that unsubscribes the listener (calling it twice is harmless).
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(item for item in self._listeners if item is not listener)

        return unsubscribe

    def stats(self) -> CacheStats:
        """Return a snapshot of the counters (never a secret id or value)."""
        with self._lock:
            hits = self._retired_hits + sum(entry.hits for entry in self._entries.values())
            size = len(self._entries)
        return self._counters.snapshot(hits=hits, size=size)

    def close(self) -> None:
        """Drop every cached value and refuse further reads. Idempotent."""
        with self._lock:
            self._closed = True
            self._entries.clear()
            self._flights.clear()
            self._versions.clear()

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

    def _entry(self, secret_id: str, version_stage: str | None, version_id: str | None, force: bool) -> Entry:
        """The hot path shared by the getters other than :meth:`get_secret_string`."""
        if version_stage is None and version_id is None and not force:
            try:
                entry = self._entries[secret_id]
            except (KeyError, TypeError):
                pass
            else:
                if entry.fresh_until > self._clock() and entry.value is not None:
                    entry.hits += 1
                    return entry
        return self._read(secret_id, version_stage, version_id, force)

    def _read(self, secret_id: object, version_stage: object, version_id: object, force: object) -> Entry:
        """The slow path: validate, then serve under the lock or wait for a (shared) fetch."""
        key = make_key(secret_id, version_stage, version_id)
        if not isinstance(force, bool):
            raise TypeError(f"force_refresh must be a bool, not {type(force).__name__}")
        now = self._clock()
        with self._lock:
            if self._closed:
                raise RuntimeError("this SecretCache is closed")
            entry = self._entries.get(key)
            if entry is not None and not force:
                if entry.is_fresh(now):
                    entry.hits += 1
                    return entry
                if entry.backing_off(now):
                    return self._serve_failed(entry, now)
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = Flight()
            self._counters.add("misses")
        if owner:
            self._fetch(key, flight, entry)
        result = flight.wait(key if isinstance(key, str) else key.secret_id)
        if result.error is None:
            return result
        with self._lock:
            return self._serve_failed(result, self._clock())

    def _serve_failed(self, entry: Entry, now: float) -> Entry:
        """After a failed fetch: the stale value if still servable, else the error. Locked."""
        if entry.servable(now):
            self._counters.add("stale_served")
            return entry
        entry.raise_error()
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, key: CacheKey, flight: Flight, previous: Entry | None) -> None:
        """Run one fetch for ``key`` outside the lock and publish it to the flight's waiters.

        Whatever happens, the flight is finished and removed, so no waiter is left hanging.
        """
        secret_id, version_stage, version_id = split_key(key)
        result: Entry | None = None
        unexpected: BaseException | None = None
        change = None
        try:
            try:
                value = self._fetcher.get_secret_value(secret_id, version_stage, version_id)
            except SecretCacheError as err:
                self._counters.add("errors")
                result = self._failed(key, previous, err, self._clock())
            else:
                result = self._fresh(value, version_id, self._clock())
        except BaseException as err:  # not a botocore failure: hand it to every waiter as is
            unexpected = err
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                    if result is not None:
                        change = self._install(key, result)
            flight.finish(result, unexpected)
        if change is not None:
            self._notify(change)
        if unexpected is not None and not isinstance(unexpected, Exception):
            raise unexpected  # KeyboardInterrupt, SystemExit: the owner's own thread gets it

    def _fresh(self, value: SecretValue, version_id: str | None, now: float) -> Entry:
        if version_id is not None:
            return Entry(value, fresh_until=math.inf, stale_until=math.inf)
        ttl = self._ttl * (1.0 - self._ttl_jitter * self._random.random())
        return Entry(value, fresh_until=now + ttl, stale_until=now + ttl + self._max_stale)

    def _failed(self, key: CacheKey, previous: Entry | None, err: SecretCacheError, now: float) -> Entry:
        """The entry to keep after a failed fetch: stale value (transient only) + error."""
        failures = previous.failures + 1 if previous is not None else 1
        retry_at = now + self._retry.backoff_after(failures)
        # Only outages pass; a definite answer (deleted, access revoked) stops serving the value.
        keep = previous is not None and previous.servable(now) and isinstance(err, SecretUnavailableError)
        if keep:
            assert previous is not None
            assert previous.value is not None
            if previous.error is None:
                logger.warning(
                    "serving the cached value of secret %r (version %s) while fetching fails: %s",
                    split_key(key)[0],
                    previous.value.version_id,
                    err,
                )
            return Entry(
                previous.value,
                fresh_until=previous.fresh_until,
                stale_until=previous.stale_until,
                error=err,
                retry_at=retry_at,
                failures=failures,
            )
        if not isinstance(err, SecretUnavailableError):
            # A definite answer the caller receives as an exception; not worth a warning.
            logger.debug("fetching secret %r failed: %s", split_key(key)[0], err)
        elif previous is None or previous.error is None:
            logger.warning("fetching secret %r failed and no cached value can be served: %s", split_key(key)[0], err)
        return Entry(None, error=err, retry_at=retry_at, failures=failures)

    def _install(self, key: CacheKey, entry: Entry) -> SecretChange | None:
        """Put ``entry`` in the table, evicting if full; return a change to report. Locked."""
        old = self._entries.get(key)
        if old is not None:
            self._retired_hits += old.hits
            if old.value is not None and entry.error is None:
                self._counters.add("refreshes")
            if old.hits > old.seen:
                entry.seen = -1  # keep the recency of the entry being replaced
            if old.error is not None and entry.error is None:
                logger.info("secret %r is readable again after %d failed fetches", split_key(key)[0], old.failures)
        self._entries[key] = entry
        if old is None:
            self._evict()
        value = entry.value
        if entry.error is not None or value is None or (isinstance(key, Key) and key.version_id is not None):
            return None
        # Keyed by ARN, not by the id as requested: one report per change, however spelled.
        stage = key.version_stage if isinstance(key, Key) and key.version_stage else DEFAULT_STAGE
        previous_version = self._versions.get((value.arn, stage))
        self._versions[value.arn, stage] = value.version_id
        if previous_version is None or previous_version == value.version_id:
            return None
        return SecretChange(value.name, value.arn, stage, previous_version, value.version_id)

    def _evict(self) -> None:
        """Second-chance (CLOCK) eviction down to ``max_size``. Locked.

        Entries are kept in insertion order; one hit since the last sweep earns an entry a move
        to the back instead of eviction. This approximates LRU without the hot path having to
        reorder anything.
        """
        entries = self._entries
        chances = len(entries)
        while len(entries) > self._max_size:
            key = next(iter(entries))
            entry = entries.pop(key)
            if entry.hits > entry.seen and chances > 0:
                chances -= 1
                entry.seen = entry.hits
                entries[key] = entry
                continue
            self._retired_hits += entry.hits
            self._counters.add("evictions")

    def _matches(self, key: CacheKey, targets: set[str]) -> bool:
        """Whether an entry or flight of ``key`` may belong to the secret with ``targets``."""
        names = aliases(split_key(key)[0])
        entry = self._entries.get(key)
        if entry is not None and entry.value is not None:
            names |= aliases(entry.value.arn)
            names.add(entry.value.name)
        return not names.isdisjoint(targets)

    def _notify(self, change: SecretChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                logger.exception("on_change listener %r failed for secret %r", listener, change.name)
