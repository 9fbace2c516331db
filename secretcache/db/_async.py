"""Connection factories for asyncio drivers: asyncpg, psycopg async, aiomysql, SQLAlchemy asyncio."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from secretcache._aio import AsyncSecretCache, wake, woken_within
from secretcache._cache import SecretCache, store_of
from secretcache.db._credentials import DbCredentials, async_credentials
from secretcache.db._drive import drive, drive_async
from secretcache.db._factory import FactoryBase, Options
from secretcache.db._recovery import POLL_INTERVAL, Connect, Op, Read

__all__ = ["AsyncConnectionFactory", "as_async_cache", "async_connection_factory"]

_C = TypeVar("_C")


def as_async_cache(cache: object) -> AsyncSecretCache:
    """``cache`` if it is an :class:`AsyncSecretCache`, else a ``SecretCache`` wrapped in one.

    Raises:
        TypeError: ``cache`` is neither.
    """
    if isinstance(cache, AsyncSecretCache):
        return cache
    if isinstance(cache, SecretCache):
        return AsyncSecretCache(cache=cache)
    raise TypeError(f"cache must be a SecretCache or an AsyncSecretCache, not {type(cache).__name__}")


class AsyncConnectionFactory(FactoryBase, Generic[_C]):
    """An async callable that opens a connection with a secret's current credentials.

    ``await factory()`` awaits ``connect(**kwargs)`` with the secret's credentials, recovering
    from a rotation exactly as :class:`ConnectionFactory` does (refresh AWSCURRENT, then try
    AWSPENDING, then poll for a new version during ``rotation_grace``), without ever blocking the
    event loop: Secrets Manager is called on a thread and the grace waits with ``asyncio.sleep``.
    Positional and keyword arguments given to the factory are passed on to ``connect`` with the
    credentials laid over them, so it works as asyncpg's ``create_pool(connect=factory)`` hook,
    which calls it with the pool's own arguments. Safe to share between the tasks of a loop (and
    between loops: the recovery state is thread-safe).

    Args:
        cache: An :class:`~secretcache.AsyncSecretCache`, or a :class:`~secretcache.SecretCache`
            (wrapped in one; both share the entries).
        secret_id: The secret holding the credentials.
        connect: The driver's async connect function (``asyncpg.connect``,
            ``psycopg.AsyncConnection.connect``, ``aiomysql.connect``, ...).
        mapping: A built-in driver name, or a dict of credential field to ``connect`` keyword
            (``None`` drops a field); by default inferred from ``connect``'s module.
        overrides: Extra or overriding ``connect`` keywords (``timeout``, ``ssl``, ...).
        is_auth_error: Decides whether an exception is an authentication failure.
        min_refresh_interval: Seconds between forced refreshes of one label by this factory,
            measured on the cache's clock.
        rotation_grace: Seconds to keep polling for a new version when the refresh and the
            AWSPENDING attempt did not help; ``0`` turns it off.
        sleep: What the grace waits with (``asyncio.sleep``); tests pass one that moves their clock.
    """

    def __init__(
        self,
        cache: AsyncSecretCache | SecretCache,
        secret_id: str,
        connect: Callable[..., Awaitable[_C]],
        *,
        mapping: str | Mapping[str, str | None] | None = None,
        overrides: Mapping[str, Any] | None = None,
        is_auth_error: Callable[[BaseException], bool] | None = None,
        min_refresh_interval: float = 5.0,
        rotation_grace: float = 5.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        async_cache = as_async_cache(cache)
        if callable(sleep) and not inspect.iscoroutinefunction(sleep):  # time.sleep would block the loop
            raise TypeError(f"sleep must be an async function such as asyncio.sleep, not {sleep!r}")
        options = Options(mapping, overrides, is_auth_error, min_refresh_interval, rotation_grace, sleep)
        super().__init__(async_cache, secret_id, connect, options)
        self._wait_bound = POLL_INTERVAL + store_of(async_cache.cache).wait_bound

    async def __call__(self, *args: Any, **kwargs: Any) -> _C:
        """Open a new connection (``args``/``kwargs`` go to ``connect``), recovering from a rotation.

        Raises:
            RedactedConnectError: The connect failed with an error that held the password.
        """
        connection: _C = await self._open(args, kwargs)
        return connection

    def _open(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Awaitable[Any]:
        """Open a connection, passing ``args`` and ``kwargs`` on to ``connect`` (awaitable)."""
        return drive_async(self._start(), lambda op: self._perform(op, args, kwargs))

    def _read(self, op: Read) -> Awaitable[DbCredentials]:
        """Read the credentials ``op`` asks for through the cache, off the event loop."""
        return async_credentials(self._cache, self._secret_id, version_stage=op.stage, force_refresh=op.force)

    async def _await(self, subscribe: Callable[[Callable[[], None]], bool]) -> None:
        """Wait (without blocking the loop) until what ``subscribe`` waits for ends, or the wait bound passes.

        That is another caller's poll or forced refresh, which may run on another loop or thread.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        if subscribe(lambda: wake(loop, done)):
            await woken_within(done, self._wait_bound)

    def call_bridged(self, connect: Callable[..., Any]) -> Any:
        """Open a connection from the blocking code SQLAlchemy's asyncio engine runs (``do_connect``).

        ``connect`` is the dialect's blocking connect; reads, sleeps and waits are awaited
        through SQLAlchemy's greenlet bridge (``await_only``), so the event loop is never blocked.

        Raises:
            RedactedConnectError: The connect failed with an error that held the password.
        """
        from sqlalchemy.util import await_only

        def do(op: Op) -> Any:
            if isinstance(op, Connect):
                return connect(**self._kwargs(op.creds, {}))
            return await_only(self._perform(op, (), {}))

        return drive(self._start(), do)


def async_connection_factory(
    cache: AsyncSecretCache | SecretCache,
    secret_id: str,
    connect: Callable[..., Awaitable[_C]],
    *,
    overrides: Mapping[str, Any] | None = None,
    mapping: str | Mapping[str, str | None] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
    rotation_grace: float = 5.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncConnectionFactory[_C]:
    """Return an async callable opening connections with a secret's current credentials.

    See :class:`AsyncConnectionFactory`. Examples::

        factory = async_connection_factory(cache, "prod/orders/db", asyncpg.connect)
        connection = await factory()
        pool = await asyncpg.create_pool(connect=factory, min_size=2)
        engine = create_async_engine("postgresql+asyncpg://", async_creator=factory)

    Raises:
        TypeError: ``cache`` is not a cache, ``connect`` is not callable, or an option has the
            wrong type.
        ValueError: The driver cannot be inferred and no ``mapping`` was given, or a number of
            seconds is negative or not finite.
    """
    return AsyncConnectionFactory(
        cache,
        secret_id,
        connect,
        mapping=mapping,
        overrides=overrides,
        is_auth_error=is_auth_error,
        min_refresh_interval=min_refresh_interval,
        rotation_grace=rotation_grace,
        sleep=sleep,
    )
