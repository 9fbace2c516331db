"""Connection factories that reconnect with fresh credentials after a password rotation."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from secretcache._cache import SecretCache, store_of
from secretcache._logs import facts
from secretcache.db._auth import Failure, classify
from secretcache.db._credentials import DbCredentials, credentials
from secretcache.db._drive import Drive, drive
from secretcache.db._recovery import POLL_INTERVAL, AwaitPoll, Connect, Op, Read, Recovery, Sleep, plan
from secretcache.db._secrecy import Witness

__all__ = ["MAPPINGS", "ConnectionFactory", "FactoryBase", "Options", "connect_kwargs", "connection_factory"]

logger = logging.getLogger("secretcache.db")

_C = TypeVar("_C")

_PG = {"host": "host", "port": "port", "username": "user", "password": "password", "dbname": "dbname"}
_MYSQL = {"host": "host", "port": "port", "username": "user", "password": "password", "dbname": "database"}
MAPPINGS: Mapping[str, Mapping[str, str]] = {
    "psycopg": _PG,
    "psycopg2": _PG,
    "asyncpg": {**_PG, "dbname": "database"},
    "pymysql": _MYSQL,
    "MySQLdb": _MYSQL,
    "aiomysql": {**_MYSQL, "dbname": "db"},
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


@dataclass(frozen=True, slots=True)
class Options:
    """The options every factory and integration takes after ``connect``: the one list of them.

    Public signatures state these keywords for their users; behind them, the factories and the
    integrations pass this one object, each entry point building it in one line from its
    same-named arguments in field order. :meth:`check` validates it (the factory does, once).

    Attributes:
        mapping: A built-in driver name, or a dict of credential field to ``connect`` keyword
            (``None`` drops a field); ``None``: inferred from ``connect``'s module.
        overrides: Extra or overriding ``connect`` keywords.
        is_auth_error: Decides whether an exception is an authentication failure.
        min_refresh_interval: Seconds between forced refreshes of one label by a factory.
        rotation_grace: Seconds to poll for a new version after the recovery failed (0: off).
        sleep: The function the grace waits with; ``None``: the factory's own (``time.sleep``,
            or ``asyncio.sleep`` for an async factory).
    """

    mapping: str | Mapping[str, str | None] | None = None
    overrides: Mapping[str, Any] | None = None
    is_auth_error: Callable[[BaseException], bool] | None = None
    min_refresh_interval: float = 5.0
    rotation_grace: float = 5.0
    sleep: Callable[[float], Any] | None = None

    def check(self) -> None:
        """Raise for an option of the wrong type or a number of seconds out of range.

        Raises:
            TypeError: An option has the wrong type.
            ValueError: A number of seconds is negative or not finite.
        """
        overrides, is_auth_error = self.overrides, self.is_auth_error
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(f"overrides must be a mapping of connect() keywords, not {type(overrides).__name__}")
        if is_auth_error is not None and not callable(is_auth_error):
            raise TypeError("is_auth_error must be a function taking an exception and returning a bool")
        for name in ("min_refresh_interval", "rotation_grace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    def given(self) -> dict[str, Any]:
        """These options as a factory's keywords, leaving ``sleep`` out when it is ``None``."""
        keywords = {option.name: getattr(self, option.name) for option in fields(self)}
        if self.sleep is None:
            del keywords["sleep"]
        return keywords


class FactoryBase:
    """What the sync and async factories share: checked arguments, the recovery, and its I/O ops.

    A factory runs :func:`~secretcache.db._recovery.plan` with :meth:`_start` and does each op
    with :meth:`_perform`; a subclass supplies the I/O edge: ``_read`` and ``_await``
    (blocking, or returning awaitables) and ``_open``, which runs the plan with its loop
    (:func:`~secretcache.db._drive.drive` or :func:`~secretcache.db._drive.drive_async`).

    Args:
        cache: The cache credentials are read through.
        secret_id: The secret holding the credentials.
        connect: The driver's connect function.
        options: The factory's options, ``sleep`` given.
    """

    # The I/O edge, each factory's own (blocking, or returning awaitables):
    _open: Callable[[tuple[Any, ...], Mapping[str, Any]], Any]
    """Open a connection (``args`` and ``kwargs`` go on to ``connect``)."""
    _read: Callable[[Read], Any]
    """Read the credentials a :class:`Read` asks for."""
    _await: Callable[[Callable[[Callable[[], None]], bool]], Any]
    """Wait, within a bound, for another caller's poll or forced refresh: ``_await(subscribe)``
    calls ``subscribe(wake)``, which arranges for ``wake()`` at its end, or returns ``False``
    when it has ended already."""

    def __init__(self, cache: Any, secret_id: str, connect: Callable[..., Any], options: Options) -> None:
        clock = getattr(cache, "clock", None)  # read once: the rate limit runs on the cache's clock
        if not callable(clock):
            raise TypeError(f"cache must be a SecretCache or an AsyncSecretCache, not {type(cache).__name__}")
        if not callable(connect):
            raise TypeError(f"connect must be a driver's connect function, not {type(connect).__name__}")
        options.check()
        if not callable(options.sleep):
            raise TypeError(f"sleep must be a function taking seconds, not {type(options.sleep).__name__}")
        self._cache = cache
        self._secret_id = secret_id
        self._connect = connect
        self._mapping = _mapping_for(connect, options.mapping)
        self._overrides = dict(options.overrides or {})
        self._is_auth_error = options.is_auth_error
        self._sleep = options.sleep
        self._recovery = Recovery(clock, float(options.min_refresh_interval), float(options.rotation_grace))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secret_id={self._secret_id!r}, connect={self._connect!r})"

    def _classify(self, error: BaseException) -> Failure:
        """How ``error`` counts: by ``is_auth_error`` when given, else by :func:`classify`."""
        if self._is_auth_error is not None:
            return Failure.AUTH if self._is_auth_error(error) else Failure.OTHER
        return classify(error)

    def _start(self) -> Drive:
        """A new run of the recovery plan, with a witness of the passwords its connects are given."""
        password = self._overrides.get(self._mapping.get("password") or "password")
        witness = Witness(self._secret_id, self._classify, [password] if isinstance(password, str) else [])
        return Drive(plan(self._recovery, self._classify), witness)

    def _kwargs(self, creds: DbCredentials, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` (a pool's own arguments, say) with the credentials and overrides laid over them."""
        return {**kwargs, **connect_kwargs(creds, self._mapping, self._overrides)}

    def _perform(self, op: Op, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Do ``op`` (a connect gets ``args`` and ``kwargs`` too): its result, or an awaitable of it."""
        if isinstance(op, Read):
            self._log(op)
            return self._read(op)
        if isinstance(op, Connect):
            return self._connect(*args, **self._kwargs(op.creds, kwargs))
        if isinstance(op, Sleep):
            return self._sleep(op.seconds)
        if isinstance(op, AwaitPoll):
            return self._await(lambda wake: self._recovery.subscribe(op.generation, wake))
        return self._await(lambda wake: self._recovery.subscribe_refresh(op.stage, op.generation, wake))

    def _log(self, op: Read) -> None:
        """Log the start of a recovery (INFO) or a poll of the grace (DEBUG)."""
        extra = facts("connect", secret_name=self._secret_id, attempt=op.logins or None, error=op.error)
        if op.poll:
            logger.debug("login with secret %r still fails; polling it for a new version", self._secret_id, extra=extra)
        elif op.force and op.stage is None:
            logger.info("login with secret %r failed; refreshing its credentials", self._secret_id, extra=extra)


class ConnectionFactory(FactoryBase, Generic[_C]):
    """A zero-argument callable that opens a connection with a secret's current credentials.

    On an authentication failure it recovers as a rotation requires, then gives up:

    1. force-refresh ``AWSCURRENT`` (at most once per ``min_refresh_interval`` per factory;
       connects refused while that refresh is in flight wait for it and read its answer from the
       cache, so concurrent failures share one call) and, if the version changed, connect with it;
    2. if that did not help, read ``AWSPENDING`` the same way and, if it exists with a version not
       yet tried, connect with it: during a rotation the database may already have the new
       password before ``AWSCURRENT`` moves;
    3. if that failed too, keep polling ``AWSCURRENT`` for a new version for up to
       ``rotation_grace`` seconds (one poll per factory at a time, at most every 250 ms, shared by
       every thread waiting) and connect as soon as one appears: the database may have the new
       password a moment before the secret does (a manual change, or a rotation function that
       sets the database first). The grace opens on the first such failure after a success; once
       it has run out without a success, connects fail at once (no grace) until one succeeds or
       the version changes, so a wrong password in the secret costs one grace period, not one per
       connect (a grace every waiting connect left early, by another error or an interrupt, ends
       unspent);
    4. raise the original error, or, if the password can be read from it (its message, args,
       attributes or chain: whatever its class), a :class:`RedactedConnectError` in its place.
       A read of Secrets Manager that fails during steps 1 to 3 (throttling, an IAM policy that
       allows ``AWSCURRENT`` only) is a label with nothing new, never the error raised.

    Steps 1 and 2 cost at most one API call each; the grace one call per 250 ms. An error that
    is not about credentials (server down) is raised at once without any call. What counts as an
    authentication failure is decided by ``is_auth_error`` when given, else per driver (see
    :func:`classify`): for PostgreSQL an unrecognised connect-time ``OperationalError`` gets
    exactly one refresh of ``AWSCURRENT`` and, if it changed, one retry (no ``AWSPENDING``, no
    grace).

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
        rotation_grace: Seconds to keep polling for a new version when the refresh and the
            AWSPENDING attempt did not help (step 3); ``0`` turns it off.
        sleep: What the grace waits with (``time.sleep``); tests pass one that moves their clock.
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
        rotation_grace: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(cache, SecretCache):  # an AsyncSecretCache needs async_connection_factory
            raise TypeError(
                f"cache must be a SecretCache, not {type(cache).__name__} (async_connection_factory "
                "takes an AsyncSecretCache)"
            )
        options = Options(mapping, overrides, is_auth_error, min_refresh_interval, rotation_grace, sleep)
        super().__init__(cache, secret_id, connect, options)
        # Waiting for another thread's poll or forced refresh: a poll's sleep plus one bounded fetch, at most.
        self._wait_bound = POLL_INTERVAL + store_of(cache).wait_bound

    def __call__(self) -> _C:
        """Open a new connection, recovering from a rotation as described above.

        Raises:
            RedactedConnectError: The connect failed with an error that held the password.
        """
        connection: _C = self._open((), {})
        return connection

    def _open(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Open a connection, passing ``args`` and ``kwargs`` on to ``connect`` (for the integrations)."""
        return drive(self._start(), lambda op: self._perform(op, args, kwargs))

    def _read(self, op: Read) -> DbCredentials:
        """Read the credentials ``op`` asks for through the cache."""
        return credentials(self._cache, self._secret_id, version_stage=op.stage, force_refresh=op.force)

    def _await(self, subscribe: Callable[[Callable[[], None]], bool]) -> None:
        """Block until what ``subscribe`` waits for (another thread's poll or forced refresh) ends, or the bound."""
        done = threading.Event()
        if subscribe(done.set):
            done.wait(self._wait_bound)


def connection_factory(
    cache: SecretCache,
    secret_id: str,
    connect: Callable[..., _C],
    *,
    overrides: Mapping[str, Any] | None = None,
    mapping: str | Mapping[str, str | None] | None = None,
    is_auth_error: Callable[[BaseException], bool] | None = None,
    min_refresh_interval: float = 5.0,
    rotation_grace: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ConnectionFactory[_C]:
    """Return a zero-argument callable opening connections with a secret's current credentials.

    See :class:`ConnectionFactory` for the rotation recovery. Example::

        factory = connection_factory(cache, "prod/orders/db", psycopg.connect)
        engine = sqlalchemy.create_engine("postgresql+psycopg://", creator=factory)

    Raises:
        TypeError: ``connect`` is not callable or an option has the wrong type.
        ValueError: The driver cannot be inferred and no ``mapping`` was given, or a number of
            seconds is negative or not finite.
    """
    return ConnectionFactory(
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
