"""The ``SecretCache`` facade: argument checks, the lock-free hit, and delegation to the store."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from secretcache import redaction
from secretcache._attempts import watch_attempts
from secretcache._batch import Batches
from secretcache._client import build_client, default_region
from secretcache._entry import HOLDS_BINARY, Entry, binary_of, json_of, refresh_result, value_of
from secretcache._errors import SecretCacheError, SecretFormatError
from secretcache._fetcher import Fetcher
from secretcache._fork import track
from secretcache._keys import CacheKey, check_read, check_secret_id
from secretcache._lazy import ClientUnusableError
from secretcache._logs import facts
from secretcache._model import SecretWatch, check_model, model_of
from secretcache._policy import (
    DEFAULT_MAX_STALE,
    Duration,
    RetryPolicy,
    Timing,
    check_client,
    check_fraction,
    check_overrides,
    check_refresh_ahead,
    check_size,
    settings_from_env,
    to_seconds,
)
from secretcache._regions import Regions, check_primary, check_replicas, region_of
from secretcache._run import Runner
from secretcache._stats import CacheStats, Counters
from secretcache._store import Store
from secretcache._value import ChangeListener, SecretValue
from secretcache._worker import BackgroundPool

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_secretsmanager import SecretsManagerClient
    from typing_extensions import Self

    from secretcache._client import SecretsClient
    from secretcache._errors import SecretFormatError
    from secretcache._value import RefreshResult

M = TypeVar("M")

__all__ = ["DEFAULT_RETRY", "ChangeListener", "SecretCache", "dropped_keys", "new_watch", "runner_of", "store_of"]

logger = logging.getLogger("secretcache")

DEFAULT_RETRY = RetryPolicy()
"""The retry policy of a cache built without one (immutable, so one instance serves all)."""

REFRESH_THREADS = 2
"""Daemon threads per cache running refresh-ahead fetches (started on first use)."""


class SecretCache:
    """A thread-safe, bounded TTL cache over Secrets Manager ``GetSecretValue``.

    Each (secret, staging label) is fetched about once per ``ttl``, however many threads read
    it; concurrent readers of a cold key share one fetch. A hit takes no lock and does no I/O.
    While Secrets Manager answers, no read returns a value older than its TTL; refresh-ahead
    (the default) refreshes a secret read after ``refresh_ahead * ttl`` in the background, so a
    secret read often never waits. Lookups by ``version_id`` are immutable.

    Definite errors (not found, access denied, decryption, invalid request) raise at once and are
    remembered for a short backoff; transient ones are retried per ``retry``, then the last good
    value is served up to ``max_stale`` past its TTL, else :class:`SecretUnavailableError`. No
    read waits for another thread's fetch longer than the retry deadline plus one attempt.

    Share one instance across the threads of a process; it survives ``fork()``. Call
    :meth:`close` (or use it as a context manager) to stop background work; a closed cache
    refuses reads.

    Args:
        client: A boto3 ``secretsmanager`` client. When omitted, one is built on first use
            from the default credential and region chain, with botocore's retries off and
            bounded connect/read timeouts.
        ttl: Seconds (or a ``timedelta``) a fetched value is served before it is fetched again.
            ``0`` fetches on every read (concurrent reads still share one fetch).
        max_size: Most entries held; the least recently used are evicted first.
        refresh_ahead: Fraction of the TTL in ``(0, 1]`` after which a read refreshes the value
            in the background; ``None`` turns refresh-ahead off.
        max_stale: Seconds past its TTL that a value may still be served while fetching fails.
        stale_while_revalidate: Seconds past its TTL during which a read returns the cached
            value at once and refreshes it in the background, even while Secrets Manager
            answers (default ``0``: never). At most ``max_stale``.
        ttl_jitter: Fraction in ``[0, 1)``: each fetched value's TTL is shortened by a random
            share up to this, so many processes do not refresh in lockstep.
        retry: Retry and failure-backoff settings.
        ttl_overrides: TTL in seconds per secret id or id prefix (the longest prefix wins),
            e.g. ``{"prod/db/": 60}``.
        replica_regions: Regions holding replicas of the secrets (``ReplicateSecretToRegions``),
            as Region names (a client is built for each like the default one) or ready
            ``secretsmanager`` clients, tried in order when a fetch from the primary fails
            transiently after its retries. Definite errors never fail over. Never the primary's
            own Region: the client's, or without one the default Region (``ValueError`` here;
            if no Region is configured yet, the read that builds the client raises
            :class:`InvalidSecretRequestError` before any call). See the "Regions and outages"
            guide.
        replica_ttl: Longest a value read from a replica is fresh (default 60 s), so the cache
            returns to the primary Region soon after it recovers.
        clock: Zero-argument function returning monotonic seconds (default
            ``time.monotonic``); inject a fake one in tests. TTLs, backoffs and the retry
            deadline are measured on it.
        sleep: Function the retries within a fetch wait with, given seconds (default
            ``time.sleep``); inject one that moves a fake ``clock`` in tests, so retries take no
            real time. Called on the fetching thread, never under a lock.
        send_current_stage: Whether a read of the current version sends
            ``VersionStage="AWSCURRENT"`` (the default) or only ``SecretId``, as plain boto3
            code and Powertools do (``False``: a botocore ``Stubber`` expecting exactly
            ``{"SecretId": ...}`` then matches). Secrets Manager answers both alike; moto
            answers a plain read with a stale version after ``UpdateSecretVersionStage``.

    Raises:
        TypeError: An argument has the wrong type, such as a ``client`` without
            ``get_secret_value`` (``SecretCache(300)``: settings are keyword-only).
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        client: SecretsManagerClient | SecretsClient | None = None,
        *,
        ttl: Duration = 300.0,
        max_size: int = 1024,
        refresh_ahead: float | None = 0.8,
        max_stale: Duration = DEFAULT_MAX_STALE,
        stale_while_revalidate: Duration = 0.0,
        ttl_jitter: float = 0.1,
        retry: RetryPolicy = DEFAULT_RETRY,
        ttl_overrides: Mapping[str, Duration] | None = None,
        replica_regions: Sequence[str | SecretsManagerClient] = (),
        replica_ttl: Duration = 60.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        send_current_stage: bool = True,
    ) -> None:
        check_client(client, type(self).__name__)
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a zero-argument function returning seconds")
        if not callable(sleep):
            raise TypeError("sleep must be a function taking seconds")
        timing = Timing(
            ttl=to_seconds(ttl, "ttl"),
            ttl_jitter=check_fraction(ttl_jitter, "ttl_jitter", upper=1.0),
            refresh_ahead=check_refresh_ahead(refresh_ahead, "refresh_ahead"),
            max_stale=to_seconds(max_stale, "max_stale"),
            overrides=check_overrides(ttl_overrides),
            stale_while_revalidate=to_seconds(stale_while_revalidate, "stale_while_revalidate"),
            replica_ttl=to_seconds(replica_ttl, "replica_ttl"),
        )
        if timing.stale_while_revalidate > timing.max_stale:
            raise ValueError(
                f"stale_while_revalidate ({timing.stale_while_revalidate:g} s) must be <= max_stale "
                f"({timing.max_stale:g} s): no value is served past max_stale"
            )
        size = check_size(max_size, "max_size", minimum=1)
        self._timing = timing
        self._retry = retry
        self._clock: Callable[[], float] = clock or time.monotonic
        self._counters = Counters()
        replicas = check_replicas(
            replica_regions, lambda region: watch_attempts(build_client(region)), wait=retry.deadline
        )
        if replicas and client is not None:
            check_primary(region_of(client), replicas, "the client's own")
        elif replicas:  # the Region the client built on first use will call, if configured yet
            check_primary(default_region(), replicas, "the default Region, which the client the cache builds calls")
        regions = Regions(replicas, retry, self._clock) if replicas else None
        self._fetcher = Fetcher(
            cast("SecretsManagerClient | None", client),  # the fetcher reads the rest of boto3's API only if present
            retry,
            self._counters,
            sleep=sleep,
            regions=regions,
            clock=self._clock,
            send_current_stage=send_current_stage,
        )
        self._pool = BackgroundPool(threads=REFRESH_THREADS, capacity=size)
        self._store = Store(
            max_size=size,
            fetcher=self._fetcher,
            timing=timing,
            retry=retry,
            counters=self._counters,
            clock=self._clock,
            pool=self._pool,
        )
        self._current = self._store.current  # read by the getters' inlined hot path (Store.hit)
        self._runner = Runner(self._store, self._fetcher, self._pool)
        self._batches = Batches(self._store, self._runner, self._fetcher, retry, self._clock)
        track(self)
        redaction.install()

    @classmethod
    def from_env(
        cls, client: SecretsManagerClient | SecretsClient | None = None, *, prefix: str = "SECRETCACHE_"
    ) -> SecretCache:
        """Build a cache from ``{prefix}*`` environment variables; unset ones keep their defaults.

        One variable per constructor setting (``TTL``, ``MAX_SIZE``, ``REFRESH_AHEAD`` as a
        fraction or ``off``, ``TTL_OVERRIDES`` as a JSON object, ``RETRY_*`` for the
        :class:`RetryPolicy` fields, ...), each after ``prefix``; the configuration page lists them.

        Raises:
            ValueError: A variable is unknown or invalid; the message names it and its value.
        """
        return cls(client, **settings_from_env(os.environ, prefix))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        timing = self._timing
        regions = self._fetcher.regions
        replicas = (
            ""
            if regions is None
            else f"replica_regions={tuple(replica.region for replica in regions.replicas)!r}, "
            f"replica_ttl={timing.replica_ttl}, "
        )
        return (
            f"SecretCache(ttl={timing.ttl}, max_size={self._store.max_size}, refresh_ahead={timing.refresh_ahead}, "
            f"max_stale={timing.max_stale}, stale_while_revalidate={timing.stale_while_revalidate}, "
            f"ttl_jitter={timing.ttl_jitter}, retry={self._retry!r}, ttl_overrides={dict(timing.overrides)!r}, "
            f"{replicas}size={len(self._store.entries)}{', closed' if self._store.closed else ''})"
        )

    @property
    def client(self) -> SecretsManagerClient:
        """The boto3 client in use (built on first access when none was given).

        Raises:
            SecretUnavailableError: Another thread has been building the client for longer than
                the retry deadline, or this thread is already building it, nested too deep (a log
                handler reading the cache while botocore logs the build).
        """
        try:
            return self._fetcher.client
        except ClientUnusableError as err:
            raise err.kind(str(err)) from None

    @property
    def max_size(self) -> int:
        """Most entries this cache holds (one per secret and staging label or version id)."""
        return self._store.max_size

    @property
    def clock(self) -> Callable[[], float]:
        """The clock (monotonic seconds) this cache reads time from; integrations keep time by it too."""
        return self._clock

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
                (overrides ``ttl`` and ``ttl_overrides``). Reads that pass it skip the
                lock-free fast path; on hot paths prefer ``ttl_overrides``.

        Raises:
            SecretFormatError: The secret holds binary data.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        entry: Entry | None = None
        if version_stage is None and version_id is None and force_refresh is False and ttl is None:
            try:  # Store.hit, inlined (HIT): a call would cost a fifth of a hit
                entry = self._current[secret_id]
            except (KeyError, TypeError):  # not cached, or not an id at all: the slow path says which
                pass
            else:
                if entry.refresh_at > self._clock():
                    entry.hits += 1
                else:
                    entry = None  # due for a refresh, or no value: the slow path decides
        if entry is None:
            entry = self._read(secret_id, version_stage, version_id, force_refresh, ttl)
        string = entry.string
        if string is None:  # binary data: the getter's own format error (the asyncio facade's string_of says the same)
            raise SecretFormatError(HOLDS_BINARY % (secret_id,), secret_id=secret_id)
        return string

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
        entry: Entry | None = None
        if version_stage is None and version_id is None and force_refresh is False and ttl is None:
            try:  # Store.hit, inlined (HIT): a call would cost a fifth of a hit
                entry = self._current[secret_id]
            except (KeyError, TypeError):  # not cached, or not an id at all: the slow path says which
                pass
            else:
                if entry.refresh_at > self._clock():
                    entry.hits += 1
                else:
                    entry = None  # due for a refresh, or no value: the slow path decides
        if entry is None:
            entry = self._read(secret_id, version_stage, version_id, force_refresh, ttl)
        return binary_of(entry, secret_id)

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
            SecretFormatError: Binary data, invalid JSON, nested too deeply, not an object
                (with ``key``), or ``key`` missing. The message never quotes the value.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        entry: Entry | None = None
        if version_stage is None and version_id is None and force_refresh is False and ttl is None:
            try:  # Store.hit, inlined (HIT): a call would cost a fifth of a hit
                entry = self._current[secret_id]
            except (KeyError, TypeError):  # not cached, or not an id at all: the slow path says which
                pass
            else:
                if entry.refresh_at > self._clock():
                    entry.hits += 1
                else:
                    entry = None  # due for a refresh, or no value: the slow path decides
        if entry is None:
            entry = self._read(secret_id, version_stage, version_id, force_refresh, ttl)
        return json_of(entry, secret_id, key)

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
        entry: Entry | None = None
        if version_stage is None and version_id is None and force_refresh is False and ttl is None:
            try:  # Store.hit, inlined (HIT): a call would cost a fifth of a hit
                entry = self._current[secret_id]
            except (KeyError, TypeError):  # not cached, or not an id at all: the slow path says which
                pass
            else:
                if entry.refresh_at > self._clock():
                    entry.hits += 1
                else:
                    entry = None  # due for a refresh, or no value: the slow path decides
        if entry is None:
            entry = self._read(secret_id, version_stage, version_id, force_refresh, ttl)
        return value_of(entry)

    def get_secret_model(
        self,
        secret_id: str,
        model: type[M],
        *,
        key: str | None = None,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> M:
        """Return a secret's JSON document (or one top-level key of it) validated into ``model``.

        ``model`` is a pydantic 2 ``BaseModel``, a dataclass or a ``TypedDict`` (validated
        through pydantic's ``TypeAdapter``; needs ``pip install 'secretcache[pydantic]'``). The
        object is validated once per fetched version and model (and ``key``), and kept with the
        cached value: a hit is the cache's hit plus a dictionary lookup, and a rotation yields a
        new object. A frozen model (``model_config = ConfigDict(frozen=True)``, or
        ``@dataclass(frozen=True)``) is shared by every reader; any other object is copied per
        read, as :meth:`get_secret_json` copies its documents. Prefer frozen models, with
        ``SecretStr`` fields for passwords and keys.

        Args:
            secret_id: The secret's name, full ARN or partial ARN.
            model: The class to validate into.
            key: A key of the top-level JSON object to validate instead of the whole document.
            version_stage: See :meth:`get_secret_string`.
            version_id: See :meth:`get_secret_string`.
            force_refresh: See :meth:`get_secret_string`.
            ttl: See :meth:`get_secret_string`.

        Raises:
            SecretFormatError: The document does not match ``model``: the message names the
                secret, the model, the failing field paths and error types, never a value, and
                no pydantic error is chained. Also binary data, invalid JSON, or ``key`` missing.
            TypeError: ``model`` is not something pydantic can validate.
            SecretCacheError: Any other failure; see :class:`SecretCache`.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        if not isinstance(model, type):  # classes pass at once; typing constructs are checked
            check_model(model)
        entry: Entry | None = None
        if version_stage is None and version_id is None and force_refresh is False and ttl is None:
            try:  # Store.hit, inlined (HIT): a call would cost a fifth of a hit
                entry = self._current[secret_id]
            except (KeyError, TypeError):  # not cached, or not an id at all: the slow path says which
                pass
            else:
                if entry.refresh_at > self._clock():
                    entry.hits += 1
                else:
                    entry = None  # due for a refresh, or no value: the slow path decides
        if entry is None:
            entry = self._read(secret_id, version_stage, version_id, force_refresh, ttl)
        return model_of(entry, secret_id, model, key)  # type: ignore[no-any-return]

    def watch(
        self,
        secret_id: str,
        model: type[M],
        *,
        key: str | None = None,
        version_stage: str | None = None,
        on_change: Callable[[M], object] | None = None,
        on_error: Callable[[SecretFormatError], object] | None = None,
    ) -> SecretWatch[M]:
        """Hold a secret validated into ``model``, following each new valid version.

        Reads the secret now (as :meth:`get_secret_model`; an invalid document raises). Each time
        a fetch finds a new version behind the label (the :meth:`on_change` mechanism), the new
        version is validated once: if it matches, it becomes :attr:`SecretWatch.current` and
        ``on_change`` is called with it (rebuild a client or a pool there); if not, the failure
        is logged (field paths and error types, never a value), ``on_error`` is called with the
        :class:`SecretFormatError`, and the last valid object is kept. Reading
        :attr:`SecretWatch.current` never blocks: it starts a due refresh in the background.

        Args:
            secret_id: The secret's name, full ARN or partial ARN.
            model: The class to validate into (see :meth:`get_secret_model`).
            key: A key of the top-level JSON object to validate instead of the whole document.
            version_stage: Staging label to follow (default ``"AWSCURRENT"``).
            on_change: Called with the new object (a copy, for a mutable model) after each new
                valid version, on the thread that fetched it.
            on_error: Called with a :class:`SecretFormatError` for each new version that does
                not validate.

        Returns:
            The watch; :meth:`SecretWatch.close` (or a ``with`` block) stops the callbacks.

        Raises:
            SecretFormatError: The version read now does not match ``model``.
            SecretCacheError: The secret cannot be read now; see :class:`SecretCache`.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        check_model(model)
        cache_key, _, _ = check_read(secret_id, version_stage, None, False, None)
        entry = self._through(cache_key, False, None)
        return new_watch(self, cache_key, model, key, entry, on_change, on_error)

    def prefetch(self, secret_ids: Iterable[str]) -> dict[str, SecretCacheError]:
        """Warm AWSCURRENT of many secrets with ``BatchGetSecretValue``, 20 per call.

        Secrets already fresh, being fetched, or backing off cost nothing. A reader that needs a
        secret before its batch call starts fetches it itself; later readers wait for the batch.
        If the batch operation is refused (no permission, no credentials), the secrets are fetched
        one by one, and the refusal is remembered for the failure backoff. Per-secret errors are
        remembered like errors of single reads. Listeners run once every secret is done.

        Returns:
            The typed error of each secret that could not be warmed (empty when all were).

        Raises:
            TypeError: ``secret_ids`` is a single string or holds a non-string.
            InvalidSecretRequestError: An id is empty or too long (before any call).
            RuntimeError: The cache is closed.
        """
        if isinstance(secret_ids, (str, bytes)):
            raise TypeError("prefetch() takes an iterable of secret ids, not a single string")
        ids = list(dict.fromkeys(check_secret_id(secret_id) for secret_id in secret_ids))
        return self._batches.prefetch(ids)

    # -- control -----------------------------------------------------------------------------

    def refresh(
        self, secret_id: str, *, version_stage: str | None = None, version_id: str | None = None
    ) -> SecretValue:
        """Fetch a secret now, whatever its age, and return the new value.

        A fetch already running for the key is joined; a queued background refresh of it is run
        by this call at once. If the fetch fails transiently, the last good value is returned
        while within ``max_stale``.

        Raises:
            SecretCacheError: See :class:`SecretCache`.
        """
        return self.get_secret(secret_id, version_stage=version_stage, version_id=version_id, force_refresh=True)

    def try_refresh(
        self, secret_id: str, *, version_stage: str | None = None, version_id: str | None = None
    ) -> RefreshResult:
        """Fetch a secret now, like :meth:`refresh`, and say what the fetch found.

        The result tells a new version from the same one (:attr:`RefreshResult.changed`) and a
        failed fetch whose last good value is served (:attr:`RefreshResult.stale`), for callers
        that report whether a refresh worked (the drop-in adapters do).

        Raises:
            SecretCacheError: See :class:`SecretCache`; a transient failure raises only when no
                value can be served.
        """
        key, _, _ = check_read(secret_id, version_stage, version_id, True, None)
        before = self._store.entries.get(key)
        return refresh_result(before, self._through(key, True, None))

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
        return len(dropped_keys(self, secret_id))

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` whenever a fetch finds a new version id behind a staging label.

        The listener receives a :class:`SecretChange` (ids only, never a value), once per
        change of a secret's label however the secret was spelled, outside any lock, on the
        thread that fetched (a background thread for refresh-ahead), after the new value is
        served. It may read the cache. The first fetch of a key is not a change; a refetch
        after :meth:`invalidate` is. Exceptions are logged and swallowed.

        Returns:
            A function that unsubscribes the listener (calling it twice is harmless).
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        return self._store.subscribe(listener)

    def stats(self) -> CacheStats:
        """Return a snapshot of the counters (never a secret id or value)."""
        hits, size, flying = self._store.hits_size_flying()
        return self._counters.snapshot(hits=hits, size=size, in_flight=flying)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (reads then raise ``RuntimeError``)."""
        return self._store.closed

    def close(self) -> None:
        """Stop background refreshes, drop every cached value and refuse further reads. Idempotent.

        Closes the connections of the clients the cache built itself; a client given to it is
        left open (it is the caller's to close).
        """
        self._store.close()
        self._fetcher.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, secret_id: object, version_stage: object, version_id: object, force: object, ttl: object) -> Entry:
        """The slow path of every read (the hit, ``Store.hit``, is tried first): checks, the store, the runner.

        The store serves the read or claims a fetch (:meth:`Store.begin`); the runner finishes it
        (:meth:`Runner.finish`): hands a refresh to the pool, or runs the fetch or waits for it.
        """
        return self._through(*check_read(secret_id, version_stage, version_id, force, ttl))

    def _through(self, key: CacheKey, force: bool, ttl: float | None) -> Entry:
        """A checked read through the store and the runner, on this thread: served, joined or fetched."""
        step = self._store.begin(key, force, ttl, runs_here=True)
        return self._runner.finish(step)

    def _after_fork_in_child(self) -> None:
        """Fresh locks, no inherited fetches or threads, no shared connections; values kept."""
        self._store.reset_after_fork()
        self._counters.reset_after_fork()
        self._fetcher.reset_after_fork()
        self._pool.reset_after_fork()


def store_of(cache: SecretCache) -> Store:
    """The store behind ``cache``, for the package's other facades (asyncio, testing)."""
    return cache._store


def runner_of(cache: SecretCache) -> Runner:
    """What runs the fetches of ``cache``'s store, for the asyncio facade."""
    return cache._runner


def new_watch(
    cache: SecretCache,
    key: CacheKey,
    model: type[M],
    json_key: str | None,
    entry: Entry,
    on_change: Callable[[M], object] | None,
    on_error: Callable[[SecretFormatError], object] | None,
) -> SecretWatch[M]:
    """A :class:`SecretWatch` on ``cache``, starting from ``entry`` (for both facades)."""
    return SecretWatch(
        store=cache._store,
        runner=cache._runner,
        key=key,
        model=model,
        json_key=json_key,
        entry=entry,
        on_change=on_change,
        on_error=on_error,
        subscribe=cache._store.subscribe,
    )


def dropped_keys(cache: SecretCache, secret_id: str | None) -> list[CacheKey]:
    """:meth:`SecretCache.invalidate`, returning the keys dropped."""
    dropped = cache._store.drop(None if secret_id is None else check_secret_id(secret_id))
    if dropped:
        shown = "all secrets" if secret_id is None else repr(secret_id)
        logger.debug(
            "invalidated %d cached entries of %s", len(dropped), shown, extra=facts("invalidate", secret_name=secret_id)
        )
    return dropped
