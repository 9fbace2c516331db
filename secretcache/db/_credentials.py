"""Database credentials as RDS-managed and rotation-template secrets store them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from secretcache._errors import SecretFormatError
from secretcache._json import parse_document

if TYPE_CHECKING:
    from secretcache._aio import AsyncSecretCache
    from secretcache._cache import SecretCache

__all__ = ["DbCredentials", "async_credentials", "credentials"]

_KNOWN = ("engine", "host", "port", "username", "password", "dbname", "database")


@dataclass(frozen=True, slots=True, repr=False)
class DbCredentials:
    """Connection settings read from one version of a database secret.

    Immutable, hashable (``extra`` left out of the hash) and safe to share. ``repr()`` and
    ``str()`` never show the password.

    Attributes:
        username: The database user (``username`` in the secret).
        password: The password.
        host: The server host, if the secret has one.
        port: The server port, if the secret has one (a number or numeric string).
        dbname: The database name (``dbname``, or ``database`` as some templates write it).
        engine: The engine the secret names (``postgres``, ``mysql``, ``mariadb``, ...).
        extra: Every other key of the secret (for example ``dbClusterIdentifier``).
        secret_id: The secret the credentials came from.
        version_id: The secret version they came from.
    """

    username: str
    password: str
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    engine: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)  # may hold lists
    secret_id: str = ""
    version_id: str = ""

    def __repr__(self) -> str:
        return (
            f"DbCredentials(username={self.username!r}, password=<redacted>, host={self.host!r}, "
            f"port={self.port!r}, dbname={self.dbname!r}, engine={self.engine!r}, "
            f"extra_keys={sorted(self.extra)!r}, secret_id={self.secret_id!r}, version_id={self.version_id!r})"
        )

    __str__ = __repr__


def parse_credentials(document: str | None, secret_id: str, version_id: str) -> DbCredentials:
    """Parse a secret's JSON document into :class:`DbCredentials`.

    Raises:
        SecretFormatError: Not a JSON object (invalid or too deeply nested JSON included), or
            ``username``/``password`` missing or not strings, ``host``, ``dbname``,
            ``database`` or ``engine`` not strings, or a port that is not a number from 1 to
            65535. Messages name keys, never values, and no error chains one (no
            ``__cause__``/``__context__``).
    """
    if document is None:
        raise SecretFormatError(f"secret {secret_id!r} is binary, not database credentials", secret_id=secret_id)
    data = parse_document(
        document,
        secret_id,
        invalid="is not JSON",
        hint="database credentials need a JSON object with username and password",
    )
    if not isinstance(data, dict):
        raise SecretFormatError(f"secret {secret_id!r} is JSON but not an object", secret_id=secret_id)
    for key in ("username", "password"):
        if key not in data:
            raise SecretFormatError(
                f"secret {secret_id!r} has no {key!r} key; database credentials need username and password",
                secret_id=secret_id,
            )
        if not isinstance(data[key], str):
            raise SecretFormatError(f"secret {secret_id!r}: {key!r} must be a string", secret_id=secret_id)
    port = _port(data.get("port"), secret_id)
    # A null field is a field left out (so a null dbname leaves database to name the database).
    dbname_key = "dbname" if data.get("dbname") is not None else "database"
    return DbCredentials(
        username=data["username"],
        password=data["password"],
        host=_text(data, "host", secret_id),
        port=port,
        dbname=_text(data, dbname_key, secret_id),
        engine=_text(data, "engine", secret_id),
        extra=MappingProxyType({key: value for key, value in data.items() if key not in _KNOWN}),
        secret_id=secret_id,
        version_id=version_id,
    )


def _port(value: Any, secret_id: str) -> int | None:
    """The port as an int from 1 to 65535: a JSON integer (or integral number) or a string of digits.

    Anything else is refused, not passed on: ``true`` would be port 1, ``5432.9`` port 5432, and
    PyMySQL connects to 70000 as 4464 (70000 mod 65536). The error never quotes the value.
    """
    if value is None:
        return None
    port: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, float) and value.is_integer():
        port = int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit() and len(digits) <= 5:
            port = int(digits)
    if port is not None and 1 <= port <= 65535:
        return port
    raise SecretFormatError(
        f"secret {secret_id!r}: 'port' is not a number from 1 to 65535 (a JSON number or a string of digits)",
        secret_id=secret_id,
    )


def _text(data: dict[str, Any], key: str, secret_id: str) -> str | None:
    """The string at ``key``, ``None`` when absent or null; any other type is refused, never stringified.

    A list or an object there would reach the driver as its ``str()`` and come back in its error
    (``could not translate host name "{...}"``), with whatever the secret nested under the key.
    """
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise SecretFormatError(
        f"secret {secret_id!r}: {key!r} must be a string, not {_json_type(value)}", secret_id=secret_id
    )


def _json_type(value: object) -> str:
    """The JSON name of ``value``'s type (never the value)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else type(value).__name__


def credentials(
    cache: SecretCache, secret_id: str, *, version_stage: str | None = None, force_refresh: bool = False
) -> DbCredentials:
    """Read database credentials from a secret through ``cache``.

    Understands the layout of RDS-managed and rotation-template secrets: ``username`` and
    ``password`` (required), ``host``, ``port``, ``dbname`` or ``database``, ``engine``, and
    any other keys (kept in ``extra``).

    Args:
        cache: The cache to read through.
        secret_id: The secret's name, full ARN or partial ARN.
        version_stage: The staging label to read (default ``AWSCURRENT``).
        force_refresh: Fetch now instead of using a cached value.

    Raises:
        SecretFormatError: The secret is not such a JSON object; the message names the key.
        SecretCacheError: The secret cannot be read.
    """
    value = cache.get_secret(secret_id, version_stage=version_stage, force_refresh=force_refresh)
    return parse_credentials(value.secret_string, secret_id, value.version_id)


async def async_credentials(
    cache: AsyncSecretCache, secret_id: str, *, version_stage: str | None = None, force_refresh: bool = False
) -> DbCredentials:
    """:func:`credentials` for asyncio code: read through an :class:`~secretcache.AsyncSecretCache`.

    The event loop never waits on Secrets Manager: a fetch runs on a thread.

    Raises:
        SecretFormatError: The secret is not such a JSON object; the message names the key.
        SecretCacheError: The secret cannot be read.
    """
    value = await cache.get_secret(secret_id, version_stage=version_stage, force_refresh=force_refresh)
    return parse_credentials(value.secret_string, secret_id, value.version_id)
