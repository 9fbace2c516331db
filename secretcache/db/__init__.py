"""Database connections that survive password rotation.

Connection factories read credentials through a :class:`~secretcache.SecretCache` and, when a
login fails because the password was rotated, refresh them and try again. Drivers are optional
extras, imported only when used: ``secretcache[postgres]`` (psycopg 3, psycopg_pool, psycopg2),
``secretcache[mysql]`` (PyMySQL), ``secretcache[sqlalchemy]``.
"""

from secretcache._public import publish as _publish
from secretcache.db._auth import Failure, classify
from secretcache.db._credentials import DbCredentials, credentials
from secretcache.db._factory import MAPPINGS, ConnectionFactory, connect_kwargs, connection_factory
from secretcache.db._integrations import attach_to_engine, psycopg_connection_class

__all__ = [
    "MAPPINGS",
    "ConnectionFactory",
    "DbCredentials",
    "Failure",
    "attach_to_engine",
    "classify",
    "connect_kwargs",
    "connection_factory",
    "credentials",
    "psycopg_connection_class",
]

_publish(globals(), __all__)
