"""Telling authentication failures apart from other connection errors, per driver."""

from __future__ import annotations

from enum import Enum

__all__ = ["Failure", "classify"]

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
    "too many clients",
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
    """The DB-API error inside a SQLAlchemy ``DBAPIError`` (its ``.orig``), else ``error``."""
    if type(error).__module__.startswith("sqlalchemy"):
        original = getattr(error, "orig", None)
        if isinstance(original, BaseException):
            return original
    return error


def classify(error: BaseException) -> Failure:
    """Classify a connect-time error of PyMySQL, mysqlclient, psycopg 3 or psycopg2.

    MySQL/MariaDB: error 1045 (SQLSTATE 28000) or 1698 is an authentication failure; any other
    error is not. PostgreSQL: a SQLSTATE of 28P01/28000 or the server's "password
    authentication failed" message is; errors whose message says the server could not be
    reached, is starting or is full are not; any other ``OperationalError`` is UNKNOWN (the
    server's message may be localised). Errors wrapped by SQLAlchemy are judged by ``.orig``.
    """
    error = _unwrap(error)
    module = type(error).__module__.split(".")[0]
    if module in ("pymysql", "MySQLdb"):
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
