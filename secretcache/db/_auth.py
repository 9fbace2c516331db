"""Telling authentication failures apart from other connection errors, per driver."""

from __future__ import annotations

from enum import Enum

__all__ = ["Failure", "classify", "scrub"]

# MySQL/MariaDB: ER_ACCESS_DENIED_ERROR and ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
_MYSQL_AUTH_CODES = frozenset({1045, 1698})
# PostgreSQL reports 28P01 (invalid_password) / 28000 (invalid_authorization_specification) in the
# server log, but a connect-time error on the client carries no SQLSTATE, only the message.
_PG_AUTH_STATES = frozenset({"28P01", "28000"})
_PG_AUTH_MESSAGES = ("password authentication failed", "authentication failed for user", "no password supplied")
_PG_NOT_AUTH_MESSAGES = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "name or service not known",
    "timeout expired",
    "timed out",
    "no such file or directory",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "accepting connections",  # "not yet accepting connections", "database ... is not currently accepting ..."
    "too many clients",
    "too many connections for",  # a role's or a database's CONNECTION LIMIT reached: full, not refused
    "remaining connection slots are reserved",
    "server closed the connection unexpectedly",
    "network is unreachable",
    "no route to host",
    "does not exist",
)


class Failure(Enum):
    """How a failed connect should be handled."""

    AUTH = "auth"
    """Authentication failed: refresh the credentials and try AWSCURRENT, then AWSPENDING."""
    UNKNOWN = "unknown"
    """An unrecognised connect-time error that may be one: worth exactly one refresh-and-retry."""
    OTHER = "other"
    """Not about credentials (server down, bad host...): raise at once."""


def _unwrap(error: BaseException) -> BaseException:
    """The driver's own error inside SQLAlchemy's wrappers, else ``error``.

    A ``DBAPIError`` keeps the DB-API error in ``.orig``; for asyncio drivers that is SQLAlchemy's
    adapter error, which keeps the driver's (asyncpg's) as its ``__cause__``.
    """
    for _ in range(3):
        if not type(error).__module__.startswith("sqlalchemy"):
            break
        inner = getattr(error, "orig", None)
        if not isinstance(inner, BaseException):
            inner = error.__cause__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


def classify(error: BaseException) -> Failure:
    """Classify a connect-time error of PyMySQL, aiomysql, mysqlclient, psycopg 3, psycopg2 or asyncpg.

    asyncpg: SQLSTATE 28P01 (``InvalidPasswordError``) or 28000
    (``InvalidAuthorizationSpecificationError``) is an authentication failure; any other error is
    not. MySQL/MariaDB: error 1045 (SQLSTATE 28000) or 1698 is an authentication failure; any other
    error is not. PostgreSQL: a SQLSTATE of 28P01/28000 or the server's "password
    authentication failed" message is; errors whose message says the server could not be
    reached, is starting or is full are not; any other ``OperationalError`` is UNKNOWN (the
    server's message may be localised). Errors wrapped by SQLAlchemy are judged by the driver's
    error inside (``.orig``, and its ``__cause__`` for the asyncio dialects). A
    :class:`~secretcache.db.RedactedConnectError` is judged as its original was.
    """
    from secretcache.db._secrecy import RedactedConnectError  # it imports this module

    if isinstance(error, RedactedConnectError):
        return error.failure  # the factory classified the original before dropping it
    error = _unwrap(error)
    module = type(error).__module__.split(".")[0]
    if module == "asyncpg":  # every server error carries its SQLSTATE
        return Failure.AUTH if getattr(error, "sqlstate", None) in _PG_AUTH_STATES else Failure.OTHER
    if module in ("pymysql", "MySQLdb"):  # aiomysql raises PyMySQL's errors
        code = error.args[0] if error.args else None
        return Failure.AUTH if code in _MYSQL_AUTH_CODES else Failure.OTHER
    if module in ("psycopg", "psycopg2"):
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if state in _PG_AUTH_STATES:
            return Failure.AUTH
        message = str(error).lower()
        if any(text in message for text in _PG_AUTH_MESSAGES):
            return Failure.AUTH
        if any(text in message for text in _PG_NOT_AUTH_MESSAGES):
            return Failure.OTHER
        return Failure.UNKNOWN if type(error).__name__ == "OperationalError" else Failure.OTHER
    return Failure.OTHER


def scrub(error: BaseException) -> None:
    """Drop, in place, what a failed connect's error keeps of the credentials it was given.

    psycopg 3 keeps the failed connection on its errors (``error.pgconn``), and that object's
    ``password``, ``info`` and ``repr`` hold the password. The errors inside SQLAlchemy's
    wrappers (``.orig``) and the error's ``__cause__``/``__context__`` are scrubbed too.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending and len(seen) < 16:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if getattr(current, "_pgconn", None) is not None:
            current._pgconn = None  # type: ignore[attr-defined]
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)
