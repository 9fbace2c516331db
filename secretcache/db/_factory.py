"""Connection factories that reconnect with fresh credentials after a password rotation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from secretcache._errors import SecretNotFoundError
from secretcache.db._auth import Failure, classify
from secretcache.db._credentials import DbCredentials, credentials

if TYPE_CHECKING:
    from secretcache._cache import SecretCache

__all__ = ["MAPPINGS", "ConnectionFactory", "connect_kwargs", "connection_factory"]

logger = logging.getLogger("secretcache.db")

_C = TypeVar("_C")

_PG = {"host": "host", "port": "port", "username": "user", "password": "password", "dbname": "dbname"}
_MYSQL = {"host": "host", "port": "port", "username": "user", "password": "password", "dbname": "database"}
MAPPINGS: Mapping[str, Mapping[str, str]] = {
    "psycopg": _PG,
    "psycopg2": _PG,
    "pymysql": _MYSQL,
    "MySQLdb": _MYSQL,
}
"""Built-in key mappings: credential field -> the driver's ``connect()`` keyword."""

_FIELDS = ("host", "port", "username", "password", "dbname")


def _mapping_for(
    connect: Callable[..., Any], mapping: str | Mapping[str, str | None] | None
) -> Mapping[str, str | None]:
    if isinstance(mapping, str):
        if mapping not in MAPPINGS:
            raise ValueError(f"unknown driver mapping {mapping!r}; built in: {', '.join(MAPPINGS)}")
        return MAPPINGS[mapping]
    if mapping is not None:
        unknown = set(mapping) - set(_FIELDS)
        if unknown:
            raise ValueError(f"mapping keys must be among {', '.join(_FIELDS)}; got {', '.join(sorted(unknown))}")
        return {**_PG, **mapping}
    driver = (getattr(connect, "__module__", None) or "").split(".")[0]
    if driver in MAPPINGS:
        return MAPPINGS[driver]
    raise ValueError(
        f"cannot tell which driver {connect!r} belongs to; pass mapping= with a driver name "
        f"({', '.join(MAPPINGS)}) or a dict of credential field -> connect() keyword"
    )


def connect_kwargs(
    creds: DbCredentials, mapping: Mapping[str, str | None], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments for a driver's ``connect()``: mapped credentials, then overrides.

    Fields the secret lacks (``None``) and fields mapped to ``None`` are left out.
    """
    kwargs: dict[str, Any] = {}
    for name in _FIELDS:
        keyword = mapping.get(name, name)
        value = getattr(creds, name)
        if keyword is not None and value is not None:
            kwargs[keyword] = value
    kwargs.update(overrides or {})
    return kwargs


class ConnectionFactory(Generic[_C]):
    """A zero-argument callable that opens a connection with a secret's current credentials.

    On an authentication failure it recovers as a rotation requires, then gives up:

    1. force-refresh ``AWSCURRENT`` (at most once per ``min_refresh_interval`` per factory;
       concurrent refreshes share one call) and, if the version changed, connect with it;
    2. if that did not help, read ``AWSPENDING`` the same way and, if it exists with a version not
       yet tried, connect with it: during a rotation the database may already have the new
       password before ``AWSCURRENT`` moves;
    3. raise the original error.

    Each step costs at most one API call. An error that is not about credentials (server down)
    is raised at once without any call. What counts as an authentication failure is decided by
    ``is_auth_error`` when given, else per driver (see :func:`classify`): for PostgreSQL an
    unrecognised connect-time ``OperationalError`` gets exactly one refresh-and-retry.

    While ``AWSCURRENT`` still holds a version the database refused and a newer version worked,
    connects go straight to the one that worked, so a rotation costs one failed login per
    factory, not one per connect. Thread-safe; one factory may serve a whole pool.

    Args:
        cache: The cache credentials are read through.
        secret_id: The secret holding the credentials.
        connect: The driver's connect function (``psycopg.connect``, ``pymysql.connect``, ...).
        mapping: A built-in driver name, or a dict of credential field to ``connect`` keyword
            (``None`` drops a field); by default inferred from ``connect``'s module.
        overrides: Extra or overriding ``connect`` keywords (``connect_timeout``, ``sslmode``...).
        is_auth_error: Decides whether an exception is an authentication failure.
        min_refresh_interval: Seconds between forced refreshes of one label by this factory,
            measured on the cache's clock (:attr:`SecretCache.clock`).
    """

    def __init__(
        self,
        cache: SecretCache,
        secret_id: str,
        connect: Callable[..., _C],
        *,
        mapping: str | Mapping[str, str | None] | None = None,
        overrides: Mapping[str, Any] | None = None,
        is_auth_error: Callable[[BaseException], bool] | None = None,
        min_refresh_interval: float = 5.0,
    ) -> None:
        clock = getattr(cache, "clock", None)  # read once: the rate limit runs on the cache's clock
        if not callable(clock):
            raise TypeError(f"cache must be a SecretCache, not {type(cache).__name__}")
        if not callable(connect):
            raise TypeError(f"connect must be a driver's connect function, not {type(connect).__name__}")
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(f"overrides must be a mapping of connect() keywords, not {type(overrides).__name__}")
        if is_auth_error is not None and not callable(is_auth_error):
            raise TypeError("is_auth_error must be a function taking an exception and returning a bool")
        self._cache = cache
        self._secret_id = secret_id
        self._connect = connect
        self._mapping = _mapping_for(connect, mapping)
        self._overrides = dict(overrides or {})
        self._is_auth_error = is_auth_error
        self._min_interval = min_refresh_interval
        self._clock: Callable[[], float] = clock
        self._lock = threading.Lock()
        self._refreshed_at: dict[str | None, float] = {}
        self._refused: set[str] = set()  # versions the database refused
        self._working: DbCredentials | None = None

    def __repr__(self) -> str:
        return f"ConnectionFactory(secret_id={self._secret_id!r}, connect={self._connect!r})"

    def __call__(self) -> _C:
        """Open a new connection, recovering from a rotation as described above."""
        creds = credentials(self._cache, self._secret_id)
        with self._lock:
            working = self._working
            if creds.version_id in self._refused and working is not None and working.version_id not in self._refused:
                creds = working
        try:
            return self._open(creds)
        except Exception as error:
            failure = self._classify(error)
            if failure is Failure.OTHER:
                raise
            return self._recover(error, creds, failure)

    def _recover(self, error: Exception, failed: DbCredentials, failure: Failure) -> _C:
        tried = {failed.version_id}
        logger.info(
            "login with secret %r version %s failed; refreshing credentials", self._secret_id, failed.version_id
        )
        candidates: list[str | None] = [None] if failure is Failure.UNKNOWN else [None, "AWSPENDING"]
        for stage in candidates:
            creds = self._refreshed(stage)
            if creds is None or creds.version_id in tried:
                continue
            tried.add(creds.version_id)
            try:
                return self._open(creds)
            except Exception as retry_error:
                if self._classify(retry_error) is Failure.OTHER:
                    raise
        raise error

    def _open(self, creds: DbCredentials) -> _C:
        try:
            connection = self._connect(**connect_kwargs(creds, self._mapping, self._overrides))
        except Exception as error:
            if self._classify(error) is not Failure.OTHER:
                with self._lock:
                    self._refused.add(creds.version_id)
            raise
        with self._lock:
            self._working = creds
            self._refused.discard(creds.version_id)
        return connection

    def _classify(self, error: BaseException) -> Failure:
        if self._is_auth_error is not None:
            return Failure.AUTH if self._is_auth_error(error) else Failure.OTHER
        return classify(error)

    def _refreshed(self, stage: str | None) -> DbCredentials | None:
        """Credentials of ``stage`` fetched now, unless this factory did so very recently."""
        now = self._clock()
        with self._lock:
            last = self._refreshed_at.get(stage)
            force = last is None or now - last >= self._min_interval
            if force:
                self._refreshed_at[stage] = now
        try:
            return credentials(self._cache, self._secret_id, version_stage=stage, force_refresh=force)
        except SecretNotFoundError:
            return None  # no AWSPENDING: no rotation in progress


def connection_factory(
    cache: SecretCache,
    secret_id: str,
    connect: Callable[..., _C],
    *,
    overrides: Mapping[str, Any] | None = None,
    mapping: str | Mapping[str, str | None] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
) -> ConnectionFactory[_C]:
    """Return a zero-argument callable opening connections with a secret's current credentials.

    See :class:`ConnectionFactory` for the rotation recovery. Example::

        factory = connection_factory(cache, "prod/orders/db", psycopg.connect)
        engine = sqlalchemy.create_engine("postgresql+psycopg://", creator=factory)

    Raises:
        TypeError: ``connect`` is not callable or an option has the wrong type.
        ValueError: The driver cannot be inferred and no ``mapping`` was given.
    """
    return ConnectionFactory(
        cache,
        secret_id,
        connect,
        mapping=mapping,
        overrides=overrides,
        is_auth_error=is_auth_error,
        min_refresh_interval=min_refresh_interval,
    )
