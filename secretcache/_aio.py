"""``AsyncSecretCache``: the same cache for asyncio code, without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from secretcache._cache import ChangeListener, SecretCache, new_watch, runner_of, store_of
from secretcache._entry import Entry, binary_of, json_of, refresh_result, string_of, value_of
from secretcache._keys import check_read
from secretcache._model import SecretWatch, check_model, model_of
from secretcache._policy import Duration, RetryPolicy, check_client

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_secretsmanager import SecretsManagerClient
    from typing_extensions import Self

    from secretcache._client import SecretsClient
    from secretcache._errors import SecretCacheError, SecretFormatError
    from secretcache._flight import Claim
    from secretcache._stats import CacheStats
    from secretcache._value import RefreshResult, SecretValue

__all__ = ["AsyncSecretCache", "wake", "woken_within"]

M = TypeVar("M")


class _Default:
    """Stands for "not passed" in :class:`AsyncSecretCache`'s settings: ``SecretCache``'s default."""

    def __repr__(self) -> str:
        return "<SecretCache default>"


DEFAULT: Any = _Default()


class AsyncSecretCache:
    """A :class:`SecretCache` for asyncio code: the same reads, as awaitables.

    Semantics are those of :class:`SecretCache` (it wraps one): a hit returns without awaiting
    anything or touching the network; refresh-ahead keeps warm reads off the network; a miss
    runs the blocking boto3 call in a thread started for it, so the event loop never blocks,
    and any number of tasks reading one cold key share one API call and one thread. A task
    cancelled while it waits, or a loop closed meanwhile, never stops the fetch it started:
    the fetch completes for every other reader, in any thread or loop. Reads from threads and
    from tasks may share the same underlying cache (:attr:`cache`).

    Safe to use from many tasks, from several event loops and alongside threads. Close it with
    :meth:`close` or ``async with``.

    Args:
        client: See :class:`SecretCache`.
        ttl: See :class:`SecretCache` (default 300 s).
        max_size: See :class:`SecretCache` (default 1024).
        refresh_ahead: See :class:`SecretCache` (default 0.8).
        max_stale: See :class:`SecretCache` (default 3600 s).
        stale_while_revalidate: See :class:`SecretCache` (default 0).
        ttl_jitter: See :class:`SecretCache` (default 0.1).
        retry: See :class:`SecretCache` (default ``RetryPolicy()``).
        ttl_overrides: See :class:`SecretCache`.
        replica_regions: See :class:`SecretCache` (default none).
        replica_ttl: See :class:`SecretCache` (default 60 s).
        clock: See :class:`SecretCache`.
        sleep: See :class:`SecretCache` (default ``time.sleep``): a blocking function, since the
            retries run on the fetch's own thread, never on the event loop.
        send_current_stage: See :class:`SecretCache` (default ``True``).
        cache: Wrap this existing :class:`SecretCache` instead of building one; then no other
            argument may be given.

    Raises:
        TypeError: An argument has the wrong type (a ``client`` without ``get_secret_value``:
            settings are keyword-only), or ``cache`` comes with settings (the message names them).
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        client: SecretsManagerClient | SecretsClient | None = None,
        *,
        ttl: Duration = DEFAULT,
        max_size: int = DEFAULT,
        refresh_ahead: float | None = DEFAULT,
        max_stale: Duration = DEFAULT,
        stale_while_revalidate: Duration = DEFAULT,
        ttl_jitter: float = DEFAULT,
        retry: RetryPolicy = DEFAULT,
        ttl_overrides: Mapping[str, Duration] | None = None,
        replica_regions: Sequence[str | SecretsManagerClient] = DEFAULT,
        replica_ttl: Duration = DEFAULT,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        send_current_stage: bool = DEFAULT,
        cache: SecretCache | None = None,
    ) -> None:
        check_client(client, type(self).__name__)
        settings: dict[str, Any] = {
            "ttl": ttl,
            "max_size": max_size,
            "refresh_ahead": refresh_ahead,
            "max_stale": max_stale,
            "stale_while_revalidate": stale_while_revalidate,
            "ttl_jitter": ttl_jitter,
            "retry": retry,
            "replica_regions": replica_regions,
            "replica_ttl": replica_ttl,
            "send_current_stage": send_current_stage,
        }
        given = {name: value for name, value in settings.items() if value is not DEFAULT}
        for name, value in (("ttl_overrides", ttl_overrides), ("clock", clock), ("sleep", sleep)):
            if value is not None:
                given[name] = value
        if cache is not None:
            if not isinstance(cache, SecretCache):
                raise TypeError(f"cache must be a SecretCache, not {type(cache).__name__}")
            clashing = sorted(given) + (["client"] if client is not None else [])
            if clashing:
                raise TypeError(
                    f"cache= cannot be combined with {', '.join(clashing)}: those are settings of a new "
                    "cache; configure the SecretCache you pass instead"
                )
            self._cache = cache
        else:
            self._cache = SecretCache(client, **given)
        self._store = store_of(self._cache)
        self._runner = runner_of(self._cache)

    @classmethod
    def from_env(
        cls, client: SecretsManagerClient | SecretsClient | None = None, *, prefix: str = "SECRETCACHE_"
    ) -> AsyncSecretCache:
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
        return string_of(await self._get(secret_id, version_stage, version_id, force_refresh, ttl), secret_id)

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
        return binary_of(await self._get(secret_id, version_stage, version_id, force_refresh, ttl), secret_id)

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
        entry = await self._get(secret_id, version_stage, version_id, force_refresh, ttl)
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
        return value_of(await self._get(secret_id, version_stage, version_id, force_refresh, ttl))

    async def get_secret_model(
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
        """Return a secret validated into ``model``; see :meth:`SecretCache.get_secret_model`.

        Validation runs on the event loop, once per fetched version and model.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        check_model(model)
        entry = await self._get(secret_id, version_stage, version_id, force_refresh, ttl)
        return model_of(entry, secret_id, model, key)  # type: ignore[no-any-return]

    async def watch(
        self,
        secret_id: str,
        model: type[M],
        *,
        key: str | None = None,
        version_stage: str | None = None,
        on_change: Callable[[M], object] | None = None,
        on_error: Callable[[SecretFormatError], object] | None = None,
    ) -> SecretWatch[M]:
        """Hold a secret validated into ``model``, following new versions; see :meth:`SecretCache.watch`.

        The callbacks run on the thread that fetched, never on the event loop: hand work to the
        loop with ``loop.call_soon_threadsafe``. Reading :attr:`SecretWatch.current` never blocks.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        check_model(model)
        cache_key, _, _ = check_read(secret_id, version_stage, None, False, None)
        entry = await self._get(secret_id, version_stage, None, False, None)
        return new_watch(self._cache, cache_key, model, key, entry, on_change, on_error)

    async def refresh(
        self, secret_id: str, *, version_stage: str | None = None, version_id: str | None = None
    ) -> SecretValue:
        """Fetch a secret now, whatever its age; see :meth:`SecretCache.refresh`."""
        return await self.get_secret(secret_id, version_stage=version_stage, version_id=version_id, force_refresh=True)

    async def try_refresh(
        self, secret_id: str, *, version_stage: str | None = None, version_id: str | None = None
    ) -> RefreshResult:
        """Fetch a secret now and say what the fetch found; see :meth:`SecretCache.try_refresh`."""
        key, _, _ = check_read(secret_id, version_stage, version_id, True, None)
        before = self._store.entries.get(key)
        return refresh_result(before, await self._get(secret_id, version_stage, version_id, True, None))

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

    @property
    def max_size(self) -> int:
        """Most entries the wrapped cache holds; see :attr:`SecretCache.max_size`."""
        return self._cache.max_size

    @property
    def clock(self) -> Callable[[], float]:
        """The clock (monotonic seconds) of the wrapped cache; see :attr:`SecretCache.clock`."""
        return self._cache.clock

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (on this cache or the wrapped one)."""
        return self._cache.closed

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

    async def _get(
        self, secret_id: str, version_stage: str | None, version_id: str | None, force: bool, ttl: Duration | None
    ) -> Entry:
        store = self._store
        if version_stage is None and version_id is None and force is False and ttl is None:
            entry = store.hit(secret_id)
            if entry is not None:
                return entry
        step = store.begin(*check_read(secret_id, version_stage, version_id, force, ttl), runs_here=False)
        if isinstance(step, Entry):
            return step
        if step.served is not None:  # a background refresh is due: the pool runs it
            self._runner.submit(step.flight)
            return step.served
        served: list[bool] = []  # set once the read is in the serving's hands, which counts it
        try:
            return await self._wait(step, served)
        except GeneratorExit:
            # Closed unfinished: its loop closed under it, and the garbage collector closes it, on
            # whatever thread and inside whatever lock that thread holds (the counters' own, in
            # stats()): it runs no code of the cache, which could wait for that lock for ever.
            raise
        except BaseException:
            if not served:  # cut off first (a cancelled task, no thread to fetch on): a read error
                store.counters.add("read_errors")
            raise

    async def _wait(self, step: Claim, serving: list[bool]) -> Entry:
        """Start or join ``step``'s fetch and serve what it gives; ``serving`` gets ``True`` as serving takes over."""
        store = self._store
        flight, spare = step.flight, step.spare
        if step.owner:  # started before the first await, so a cancelled task never strands it
            try:
                self._runner.start(flight)
            except RuntimeError:  # no thread to be had (the flight is completed with no answer)
                served = None if spare is None else store.serving.spare(spare)
                if served is None:  # nothing to serve: the loop must not run the fetch itself
                    raise
                return served  # a value it may serve past its TTL, as when its fetch falters
        elif flight.owner == threading.get_ident():  # a loop run by a hook of that very fetch: it cannot end
            serving.append(True)
            return store.serving.give_up(flight, "it is being fetched further up this thread's stack")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + store.wait_bound
        why = f"its fetch took longer than {store.wait_bound:g} s"
        if spare is not None:  # a value to serve if the fetch falters: wait for it to settle only
            settled: asyncio.Future[bool] = loop.create_future()
            store.when_done(flight, lambda: wake(loop, settled), settled=True)
            if not await woken_within(settled, store.wait_bound):
                serving.append(True)
                return store.serving.give_up(flight, why)
            served = None if flight.done else store.serving.spare(spare)
            if served is not None:
                return served
        done: asyncio.Future[bool] = loop.create_future()
        store.when_done(flight, lambda: wake(loop, done))
        woken = await woken_within(done, deadline - loop.time())
        serving.append(True)
        return store.serving.completed(flight) if woken else store.serving.give_up(flight, why)


def wake(loop: asyncio.AbstractEventLoop, woken: asyncio.Future[bool]) -> None:
    """From any thread: resolve ``woken`` (to ``True``) on its loop, unless the loop is closed or it is done."""
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is awaiting any more
        loop.call_soon_threadsafe(_resolve, woken, True)


async def woken_within(woken: asyncio.Future[bool], timeout: float) -> bool:
    """Await ``woken``: ``True`` once :func:`wake` resolves it, ``False`` after ``timeout`` seconds.

    A plain ``await`` of the future, so a cancellation of the waiting task always propagates:
    ``asyncio.wait_for`` before Python 3.12 returned the result instead when the future was
    resolved just before the task, already cancelled, ran again.
    """
    timer = woken.get_loop().call_later(max(0.0, timeout), _resolve, woken, False)
    try:
        return await woken
    finally:
        timer.cancel()


def _resolve(woken: asyncio.Future[bool], value: bool) -> None:
    if not woken.done():  # woken already, timed out, or the awaiting task was cancelled
        woken.set_result(value)
