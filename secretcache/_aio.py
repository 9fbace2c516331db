"""``AsyncSecretCache``: the same cache for asyncio code, without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from secretcache._cache import DEFAULT_RETRY, ChangeListener, SecretCache
from secretcache._entry import Entry, Flight, binary_of, json_of, string_of, value_of
from secretcache._errors import SecretCacheError, fresh_copy
from secretcache._policy import Duration, RetryPolicy

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_secretsmanager import SecretsManagerClient
    from typing_extensions import Self

    from secretcache._stats import CacheStats
    from secretcache._value import SecretValue

__all__ = ["AsyncSecretCache"]


class AsyncSecretCache:
    """A :class:`SecretCache` for asyncio code: the same reads, as awaitables.

    Semantics are those of :class:`SecretCache` (it wraps one): a hit returns without awaiting
    anything or touching the network; refresh-ahead keeps warm reads off the network; a miss
    runs the blocking boto3 call in a worker thread, so the event loop never blocks, and any
    number of tasks reading one cold key share one API call *and one thread*. Reads from
    threads and from tasks may share the same underlying cache (:attr:`cache`).

    Safe to use from many tasks, from several event loops and alongside threads. Close it with
    :meth:`close` or ``async with``.

    Args:
        client: See :class:`SecretCache`.
        ttl: See :class:`SecretCache`.
        max_size: See :class:`SecretCache`.
        refresh_ahead: See :class:`SecretCache`.
        max_stale: See :class:`SecretCache`.
        ttl_jitter: See :class:`SecretCache`.
        retry: See :class:`SecretCache`.
        ttl_overrides: See :class:`SecretCache`.
        clock: See :class:`SecretCache`.
        cache: Wrap this existing :class:`SecretCache` instead of building one (then no other
            argument may be given).

    Raises:
        TypeError: An argument has the wrong type, or ``cache`` comes with other settings.
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
        cache: SecretCache | None = None,
    ) -> None:
        if cache is not None:
            if not isinstance(cache, SecretCache):
                raise TypeError(f"cache must be a SecretCache, not {type(cache).__name__}")
            if client is not None or clock is not None or ttl_overrides is not None:
                raise TypeError("pass either cache= or the settings of a new cache, not both")
            self._cache = cache
        else:
            self._cache = SecretCache(
                client,
                ttl=ttl,
                max_size=max_size,
                refresh_ahead=refresh_ahead,
                max_stale=max_stale,
                ttl_jitter=ttl_jitter,
                retry=retry,
                ttl_overrides=ttl_overrides,
                clock=clock,
            )
        # One worker-thread wait per fetch in flight and event loop, however many tasks await it.
        self._waits: dict[tuple[asyncio.AbstractEventLoop, Flight], asyncio.Future[Entry]] = {}

    @classmethod
    def from_env(cls, client: SecretsManagerClient | None = None, *, prefix: str = "SECRETCACHE_") -> AsyncSecretCache:
        """Build one from ``{prefix}*`` environment variables, as :meth:`SecretCache.from_env`."""
        return cls(cache=SecretCache.from_env(client, prefix=prefix))

    def __repr__(self) -> str:
        return f"AsyncSecretCache({self._cache!r})"

    @property
    def cache(self) -> SecretCache:
        """The underlying thread-safe :class:`SecretCache`."""
        return self._cache

    async def get_secret_string(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> str:
        """Return a secret's ``SecretString``; see :meth:`SecretCache.get_secret_string`."""
        return string_of(await self._entry(secret_id, version_stage, version_id, force_refresh, ttl), secret_id)

    async def get_secret_binary(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> bytes:
        """Return a secret's ``SecretBinary``; see :meth:`SecretCache.get_secret_binary`."""
        return binary_of(await self._entry(secret_id, version_stage, version_id, force_refresh, ttl), secret_id)

    async def get_secret_json(
        self,
        secret_id: str,
        key: str | None = None,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> Any:
        """Return a secret parsed as JSON, or one key of it; see :meth:`SecretCache.get_secret_json`."""
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        entry = await self._entry(secret_id, version_stage, version_id, force_refresh, ttl)
        return json_of(entry, secret_id, key)

    async def get_secret(
        self,
        secret_id: str,
        *,
        version_stage: str | None = None,
        version_id: str | None = None,
        force_refresh: bool = False,
        ttl: Duration | None = None,
    ) -> SecretValue:
        """Return a secret version with its metadata; see :meth:`SecretCache.get_secret`."""
        return value_of(await self._entry(secret_id, version_stage, version_id, force_refresh, ttl))

    async def refresh(
        self, secret_id: str, *, version_stage: str | None = None, version_id: str | None = None
    ) -> SecretValue:
        """Fetch a secret now, whatever its age; see :meth:`SecretCache.refresh`."""
        return await self.get_secret(secret_id, version_stage=version_stage, version_id=version_id, force_refresh=True)

    async def prefetch(self, secret_ids: Iterable[str]) -> dict[str, SecretCacheError]:
        """Warm many secrets with batch calls, in a worker thread; see :meth:`SecretCache.prefetch`."""
        if isinstance(secret_ids, (str, bytes)):
            raise TypeError("prefetch() takes an iterable of secret ids, not a single string")
        return await asyncio.to_thread(self._cache.prefetch, list(secret_ids))

    def invalidate(self, secret_id: str | None = None) -> int:
        """Drop a secret's entries, or all (no I/O, so not a coroutine); see :meth:`SecretCache.invalidate`."""
        return self._cache.invalidate(secret_id)

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Register a change listener (called on a worker thread); see :meth:`SecretCache.on_change`."""
        return self._cache.on_change(listener)

    def stats(self) -> CacheStats:
        """Return a snapshot of the counters; see :meth:`SecretCache.stats`."""
        return self._cache.stats()

    def close(self) -> None:
        """Stop background work and drop every value; see :meth:`SecretCache.close`."""
        self._cache.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def _entry(
        self, secret_id: str, version_stage: str | None, version_id: str | None, force: bool, ttl: Duration | None
    ) -> Entry:
        cache = self._cache
        if version_stage is None and version_id is None and not force and ttl is None:
            try:
                entry = cache._entries[secret_id]
            except (KeyError, TypeError):
                pass
            else:
                if entry.refresh_at > cache._clock() and entry.value is not None:
                    entry.hits += 1
                    return entry
        # Validates, serves without I/O if it can (stale values, refresh-ahead), else claims.
        pending = cache._begin(secret_id, version_stage, version_id, force, ttl)
        if isinstance(pending, Entry):
            return pending
        loop = asyncio.get_running_loop()
        token = (loop, pending.flight)
        wait = self._waits.get(token)
        if wait is None:
            wait = self._waits[token] = asyncio.ensure_future(asyncio.to_thread(cache._finish, pending))
            wait.add_done_callback(lambda _: self._waits.pop(token, None))
        try:
            return await asyncio.shield(wait)
        except SecretCacheError as err:
            # Every awaiting task gets its own copy: one exception raised in many tasks would
            # pile their tracebacks onto one object.
            copy = fresh_copy(err)
            try:
                raise copy from err.__cause__
            finally:
                del copy
