"""Database connections that survive password rotation.

Connection factories read credentials through a :class:`~secretcache.SecretCache` (or, for
asyncio drivers, an :class:`~secretcache.AsyncSecretCache`) and, when a login fails because the
password was rotated, refresh them and try again, waiting out a short gap between the database
and the secret (``rotation_grace``). Drivers are optional extras, imported only when used:
``secretcache[postgres]`` (psycopg 3, psycopg_pool, psycopg2), ``secretcache[asyncpg]``,
``secretcache[mysql]`` (PyMySQL), ``secretcache[aiomysql]``, ``secretcache[sqlalchemy]`` and
``secretcache[sqlalchemy-asyncio]``.
"""

import typing as _typing

from secretcache._public import lazy as _lazy
from secretcache._public import publish as _publish
from secretcache.db._auth import Failure, classify
from secretcache.db._credentials import DbCredentials, async_credentials, credentials
from secretcache.db._factory import MAPPINGS, ConnectionFactory, connect_kwargs, connection_factory
from secretcache.db._integrations import attach_to_engine, psycopg_async_connection_class, psycopg_connection_class
from secretcache.db._secrecy import RedactedConnectError

__all__ = [
    "MAPPINGS",
    "AsyncConnectionFactory",
    "ConnectionFactory",
    "DbCredentials",
    "Failure",
    "RedactedConnectError",
    "async_connection_factory",
    "async_credentials",
    "attach_to_engine",
    "classify",
    "connect_kwargs",
    "connection_factory",
    "credentials",
    "psycopg_async_connection_class",
    "psycopg_connection_class",
]

if _typing.TYPE_CHECKING:
    from secretcache.db._async import AsyncConnectionFactory, async_connection_factory

_publish(globals(), __all__)

# The asyncio factories load on first use: sync applications (a Lambda with psycopg) skip asyncio.
if not _typing.TYPE_CHECKING:
    _ASYNC = __name__ + "._async"
    __getattr__ = _lazy(globals(), {"AsyncConnectionFactory": _ASYNC, "async_connection_factory": _ASYNC})


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
