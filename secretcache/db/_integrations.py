"""Plugging connection factories into SQLAlchemy engines and psycopg connection pools."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from secretcache._keys import aliases
from secretcache._value import SecretChange
from secretcache.db._factory import ConnectionFactory, FactoryBase, Options

if TYPE_CHECKING:
    import asyncio

    import psycopg
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from secretcache._aio import AsyncSecretCache
    from secretcache._cache import SecretCache
    from secretcache.db._async import AsyncConnectionFactory

__all__ = ["attach_to_engine", "psycopg_async_connection_class", "psycopg_connection_class"]

_DIALECT_DRIVERS = {
    "psycopg": "psycopg",
    "psycopg2": "psycopg2",
    "asyncpg": "asyncpg",
    "pymysql": "pymysql",
    "mysqldb": "MySQLdb",
    "aiomysql": "aiomysql",
}


_REQUIREMENTS = {"sqlalchemy": "sqlalchemy>=2.0", "psycopg": "psycopg[binary]>=3.2"}


def _require(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ImportError(
            f"this needs {module}; install it with: pip install '{_REQUIREMENTS[module]}' "
            f"(it is what secretcache's {extra!r} extra installs)"
        ) from None


def attach_to_engine(
    engine: Engine | AsyncEngine,
    cache: SecretCache | AsyncSecretCache,
    secret_id: str,
    *,
    mapping: str | Mapping[str, str | None] | None = None,
    overrides: Mapping[str, Any] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
    rotation_grace: float = 5.0,
    sleep: Callable[[float], Any] | None = None,
    dispose_on_change: bool = False,
) -> ConnectionFactory[Any] | AsyncConnectionFactory[Any]:
    """Make an existing SQLAlchemy engine connect with a secret's current credentials.

    Registers a ``do_connect`` event listener: every new DB-API connection the engine's pool
    opens gets the secret's credentials (host, port, user, password, database) on top of the
    engine URL's parameters, with the rotation recovery of :class:`ConnectionFactory`. Use it
    when the engine is built elsewhere; for a new engine, ``create_engine(url, creator=factory)``
    works too.

    An ``AsyncEngine`` (``create_async_engine``, with asyncpg, psycopg or aiomysql) works the same
    with either cache type: credentials are read through an :class:`~secretcache.AsyncSecretCache`
    (a ``SecretCache`` is wrapped) and awaited through SQLAlchemy's greenlet bridge, so the event
    loop never blocks on Secrets Manager; the recovery is that of
    :class:`AsyncConnectionFactory`. For a new async engine,
    ``create_async_engine(url, async_creator=factory)`` works too.

    With ``dispose_on_change=True``, when the cache reports a new AWSCURRENT version of the
    secret (``on_change``), the engine's pool is replaced (``engine.dispose()``; for an
    ``AsyncEngine``, scheduled on the event loop that last opened a connection): idle
    connections opened with the old credentials are closed and new ones log in with the new
    credentials, while connections checked out at that moment finish their work and are closed
    when returned. Off by default: connections stay valid after a password change.

    ``rotation_grace`` and ``sleep`` are those of the factories (``sleep`` defaults to
    ``time.sleep``, or ``asyncio.sleep`` for an ``AsyncEngine``; tests pass one that moves their
    clock).

    Returns:
        The factory, e.g. for its ``repr`` or to call directly.

    Raises:
        ImportError: SQLAlchemy is not installed (``pip install 'sqlalchemy>=2.0'``, what the
            ``sqlalchemy`` extra installs).
        ValueError: The engine's driver has no built-in mapping and none was given.
    """
    _require("sqlalchemy", "sqlalchemy")
    from sqlalchemy import event

    sync_engine: Engine = getattr(engine, "sync_engine", None) or engine  # type: ignore[assignment]  # AsyncEngine
    dialect = sync_engine.dialect
    if mapping is None:
        mapping = _DIALECT_DRIVERS.get(dialect.driver)
        if mapping is None:
            raise ValueError(f"no built-in mapping for the {dialect.driver!r} driver; pass mapping=")
    # sleep None: the factory's own, time.sleep, or asyncio.sleep for an AsyncEngine.
    options = Options(mapping, overrides, is_auth_error, min_refresh_interval, rotation_grace, sleep).given()
    loops: list[asyncio.AbstractEventLoop] = []
    factory: ConnectionFactory[Any] | AsyncConnectionFactory[Any]
    if sync_engine is engine:
        pending: ContextVar[tuple[tuple[Any, ...], dict[str, Any]]] = ContextVar("secretcache_do_connect")

        def dbapi_connect(**credentials: Any) -> Any:
            cargs, cparams = pending.get()
            return dialect.connect(*cargs, **{**cparams, **credentials})

        sync_cache: SecretCache = getattr(cache, "cache", None) or cache  # type: ignore[assignment]  # unwrap async
        sync_factory: ConnectionFactory[Any] = ConnectionFactory(sync_cache, secret_id, dbapi_connect, **options)

        def do_connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
            token = pending.set((tuple(cargs), dict(cparams)))
            try:
                return sync_factory()
            finally:
                pending.reset(token)

        factory = sync_factory
    else:
        import asyncio  # only for an AsyncEngine: a plain import of secretcache.db stays without asyncio

        from secretcache.db._async import AsyncConnectionFactory

        async_factory: AsyncConnectionFactory[Any] = AsyncConnectionFactory(cache, secret_id, _unused, **options)

        def do_connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
            loops[:] = [asyncio.get_running_loop()]  # run by the greenlet bridge, on the engine's loop
            return async_factory.call_bridged(
                lambda **credentials: dialect.connect(*cargs, **{**cparams, **credentials})
            )

        factory = async_factory
    event.listen(sync_engine, "do_connect", do_connect)
    if dispose_on_change:
        names = aliases(secret_id)

        def on_change(change: SecretChange) -> None:
            if change.version_stage != "AWSCURRENT" or names.isdisjoint({change.name, *aliases(change.arn)}):
                return
            if sync_engine is engine:
                sync_engine.dispose()  # idle connections closed; checked-out ones close when returned
            elif loops and not loops[0].is_closed():
                asyncio.run_coroutine_threadsafe(engine.dispose(), loops[0])  # type: ignore[arg-type]

        cache.on_change(on_change)
    return factory


async def _unused(**_: Any) -> Any:  # pragma: no cover - the bridged factory connects through the dialect
    raise AssertionError("attach_to_engine connects through the engine's dialect")


def psycopg_connection_class(
    cache: SecretCache,
    secret_id: str,
    *,
    base: type[psycopg.Connection[Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
    rotation_grace: float = 5.0,
    sleep: Callable[[float], None] | None = None,
) -> type[psycopg.Connection[Any]]:
    """A psycopg 3 connection class whose ``connect()`` uses a secret's current credentials.

    Pass it to ``psycopg_pool.ConnectionPool(connection_class=...)``. The pool opens
    connections in its own threads and only logs a failed connect (callers then see
    ``PoolTimeout``), so the rotation recovery of :class:`ConnectionFactory` must run inside
    the connection class, which is what this does. The pool's ``conninfo`` and ``kwargs``
    still apply; the secret's credentials are laid over them. ``rotation_grace`` and ``sleep``
    (default ``time.sleep``) are those of :class:`ConnectionFactory`.

    Raises:
        ImportError: psycopg is not installed (``pip install 'psycopg[binary]>=3.2'``, part of
            the ``postgres`` extra).
    """
    options = Options("psycopg", overrides, is_auth_error, min_refresh_interval, rotation_grace, sleep)
    return _secret_class(cache, secret_id, base, options, asynchronous=False)


def psycopg_async_connection_class(
    cache: AsyncSecretCache | SecretCache,
    secret_id: str,
    *,
    base: type[psycopg.AsyncConnection[Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
    rotation_grace: float = 5.0,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> type[psycopg.AsyncConnection[Any]]:
    """A psycopg 3 async connection class whose ``connect()`` uses a secret's current credentials.

    The asyncio counterpart of :func:`psycopg_connection_class`: pass it to
    ``psycopg_pool.AsyncConnectionPool(connection_class=...)``, which has no connect hook and
    opens connections in its own tasks. The rotation recovery of :class:`AsyncConnectionFactory`
    runs inside ``connect()``; the pool's ``conninfo`` and ``kwargs`` still apply, with the
    secret's credentials laid over them. ``rotation_grace`` and ``sleep`` (default
    ``asyncio.sleep``) are those of :class:`AsyncConnectionFactory`.

    Raises:
        ImportError: psycopg is not installed (``pip install 'psycopg[binary]>=3.2'``, part of
            the ``postgres`` extra).
    """
    options = Options("psycopg", overrides, is_auth_error, min_refresh_interval, rotation_grace, sleep)
    return _secret_class(cache, secret_id, base, options, asynchronous=True)


def _secret_class(
    cache: AsyncSecretCache | SecretCache,
    secret_id: str,
    base: type[Any] | None,
    options: Options,
    *,
    asynchronous: bool,
) -> type[Any]:
    """A subclass of a psycopg connection class whose ``connect()`` goes through a factory.

    ``base`` defaults to ``psycopg.Connection`` (``psycopg.AsyncConnection``). The factory
    (:class:`ConnectionFactory`, or :class:`AsyncConnectionFactory`) is built around the base's
    own ``connect()``; the subclass's ``connect(conninfo, **kwargs)`` opens through it with the
    pool's ``conninfo`` and ``kwargs``, the secret's credentials laid over them.

    Raises:
        ImportError: psycopg is not installed.
    """
    _require("psycopg", "postgres")
    import psycopg

    factory_class: Callable[..., FactoryBase] = ConnectionFactory
    if asynchronous:
        from secretcache.db._async import AsyncConnectionFactory

        factory_class = AsyncConnectionFactory

    def raw_connect(cls: type[Any], conninfo: str, **kwargs: Any) -> Any:
        """The base's own ``connect()``: a connection, or for an async base an awaitable of one."""
        return super(secret_class, cls).connect(conninfo, **kwargs)

    factory = factory_class(cache, secret_id, raw_connect, **options.given())

    def connect(cls: type[Any], conninfo: str = "", **kwargs: Any) -> Any:
        """Open a connection with the secret's current credentials, recovering from rotation."""
        return factory._open((cls, conninfo), kwargs)

    async def connect_async(cls: type[Any], conninfo: str = "", **kwargs: Any) -> Any:
        """Open a connection with the secret's current credentials, recovering from rotation."""
        return await factory._open((cls, conninfo), kwargs)

    name = "SecretAsyncConnection" if asynchronous else "SecretConnection"
    kind = "async connection" if asynchronous else "connection"
    method: Callable[..., Any] = connect_async if asynchronous else connect
    default_base = psycopg.AsyncConnection if asynchronous else psycopg.Connection
    secret_class: type[Any] = type(
        name,
        (base or default_base,),
        {
            "__doc__": f"A psycopg {kind} opened with credentials from Secrets Manager.",
            "__module__": __name__,
            "__qualname__": f"psycopg_{'async_' if asynchronous else ''}connection_class.<locals>.{name}",
            "connect": classmethod(method),
        },
    )
    return secret_class
