"""Plugging connection factories into SQLAlchemy engines and psycopg connection pools."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from secretcache._keys import aliases
from secretcache._value import SecretChange
from secretcache.db._factory import ConnectionFactory

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

    from secretcache._cache import SecretCache

__all__ = ["attach_to_engine", "psycopg_connection_class"]

_DIALECT_DRIVERS = {"psycopg": "psycopg", "psycopg2": "psycopg2", "pymysql": "pymysql", "mysqldb": "MySQLdb"}


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
    engine: Engine,
    cache: SecretCache,
    secret_id: str,
    *,
    mapping: str | Mapping[str, str | None] | None = None,
    overrides: Mapping[str, Any] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
    dispose_on_change: bool = False,
) -> ConnectionFactory[Any]:
    """Make an existing SQLAlchemy engine connect with a secret's current credentials.

    Registers a ``do_connect`` event listener: every new DB-API connection the engine's pool
    opens gets the secret's credentials (host, port, user, password, database) on top of the
    engine URL's parameters, with the rotation recovery of :class:`ConnectionFactory`. Use it
    when the engine is built elsewhere; for a new engine, ``create_engine(url, creator=factory)``
    works too.

    With ``dispose_on_change=True``, when the cache reports a new AWSCURRENT version of the
    secret (``on_change``), the engine's pool is replaced (``engine.dispose()``): idle
    connections opened with the old credentials are closed and new ones log in with the new
    credentials, while connections checked out at that moment finish their work and are closed
    when returned. Off by default: connections stay valid after a password change.

    Returns:
        The factory, e.g. for its ``repr`` or to call directly.

    Raises:
        ImportError: SQLAlchemy is not installed (``pip install 'sqlalchemy>=2.0'``, what the
            ``sqlalchemy`` extra installs).
        ValueError: The engine's driver has no built-in mapping and none was given.
    """
    _require("sqlalchemy", "sqlalchemy")
    from sqlalchemy import event

    dialect = engine.dialect
    if mapping is None:
        mapping = _DIALECT_DRIVERS.get(dialect.driver)
        if mapping is None:
            raise ValueError(f"no built-in mapping for the {dialect.driver!r} driver; pass mapping=")
    pending: ContextVar[tuple[tuple[Any, ...], dict[str, Any]]] = ContextVar("secretcache_do_connect")

    def dbapi_connect(**credentials: Any) -> Any:
        cargs, cparams = pending.get()
        return dialect.connect(*cargs, **{**cparams, **credentials})

    factory: ConnectionFactory[Any] = ConnectionFactory(
        cache,
        secret_id,
        dbapi_connect,
        mapping=mapping,
        overrides=overrides,
        is_auth_error=is_auth_error,
        min_refresh_interval=min_refresh_interval,
    )

    def do_connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        token = pending.set((tuple(cargs), dict(cparams)))
        try:
            return factory()
        finally:
            pending.reset(token)

    event.listen(engine, "do_connect", do_connect)
    if dispose_on_change:
        names = aliases(secret_id)

        def on_change(change: SecretChange) -> None:
            if change.version_stage == "AWSCURRENT" and not names.isdisjoint({change.name, *aliases(change.arn)}):
                engine.dispose()  # idle connections closed; checked-out ones close when returned

        cache.on_change(on_change)
    return factory


def psycopg_connection_class(
    cache: SecretCache,
    secret_id: str,
    *,
    base: type[psycopg.Connection[Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
) -> type[psycopg.Connection[Any]]:
    """A psycopg 3 connection class whose ``connect()`` uses a secret's current credentials.

    Pass it to ``psycopg_pool.ConnectionPool(connection_class=...)``. The pool opens
    connections in its own threads and only logs a failed connect (callers then see
    ``PoolTimeout``), so the rotation recovery of :class:`ConnectionFactory` must run inside
    the connection class, which is what this does. The pool's ``conninfo`` and ``kwargs``
    still apply; the secret's credentials are laid over them.

    Raises:
        ImportError: psycopg is not installed (``pip install 'psycopg[binary]>=3.2'``, part of
            the ``postgres`` extra).
    """
    _require("psycopg", "postgres")
    import psycopg

    base_class = base or psycopg.Connection
    pending: ContextVar[tuple[Any, str, dict[str, Any]]] = ContextVar("secretcache_psycopg_connect")

    def raw_connect(**credentials: Any) -> Any:
        cls, conninfo, kwargs = pending.get()
        return super(SecretConnection, cls).connect(conninfo, **{**kwargs, **credentials})

    factory: ConnectionFactory[Any] = ConnectionFactory(
        cache,
        secret_id,
        raw_connect,
        mapping="psycopg",
        overrides=overrides,
        is_auth_error=is_auth_error,
        min_refresh_interval=min_refresh_interval,
    )

    class SecretConnection(base_class):  # type: ignore[valid-type,misc]
        """A psycopg connection opened with credentials from Secrets Manager."""

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            """Open a connection with the secret's current credentials, recovering from rotation."""
            token = pending.set((cls, conninfo, kwargs))
            try:
                return factory()
            finally:
                pending.reset(token)

    return SecretConnection
