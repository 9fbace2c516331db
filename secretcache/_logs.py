"""Structured log fields: the facts a log record carries as ``extra``, never a secret value.

Every record the library emits passes its facts through :func:`facts`, so a JSON formatter
(Powertools Logger, structlog's stdlib bridge, python-json-logger) gets them as fields. The field
names are part of the public contract, listed in ``docs/monitoring.md``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from botocore.exceptions import ClientError

__all__ = ["FIELDS", "Facts", "LogLine", "callable_name", "error_type", "facts"]

FIELDS = ("secret_name", "version_id", "operation", "attempt", "error_type")
"""The ``extra`` fields a record may carry; ``operation`` is on every record."""


class Facts(NamedTuple):
    """The facts of a log line made under a lock and emitted after it: :meth:`extra` runs then.

    Building one is tuple work, fit for under the store's lock; :func:`facts` (which names the
    error) runs when the line is emitted.
    """

    operation: str
    secret_name: str | None = None
    version_id: str | None = None
    attempt: int | None = None
    error: BaseException | None = None

    def extra(self) -> dict[str, object]:
        """The record's ``extra``: :func:`facts` of these fields."""
        return facts(**self._asdict())


LogLine = tuple[int, str, tuple[object, ...], Facts]
"""A log call to make later, outside a lock: level, message, arguments, and the record's facts."""

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def facts(
    operation: str,
    *,
    secret_name: str | None = None,
    version_id: str | None = None,
    attempt: int | None = None,
    error: BaseException | None = None,
) -> dict[str, object]:
    """The ``extra`` dict of a log record: the fields given, ``error_type`` from ``error``."""
    fields: dict[str, object] = {"operation": operation}
    if secret_name is not None:
        fields["secret_name"] = secret_name
    if version_id is not None:
        fields["version_id"] = version_id
    if attempt is not None:
        fields["attempt"] = attempt
    if error is not None:
        fields["error_type"] = error_type(error)
    return fields


def error_type(error: BaseException) -> str:
    """A short, low-cardinality name for what went wrong, safe for logs, metrics and spans.

    The AWS error code of a service error (``ThrottlingException``), else the class name of the
    exception (``ReadTimeoutError``). A secretcache error is named by its cause when it has one
    from botocore, so an outage reads as what the service said rather than as
    ``SecretUnavailableError``. A code that does not look like one (a proxy's page, say) is
    reported as ``Unknown``.
    """
    cause = error.__cause__
    if cause is not None and type(error).__module__.startswith("secretcache"):
        error = cause
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        return code if isinstance(code, str) and _CODE.fullmatch(code) else "Unknown"
    return type(error).__name__


def callable_name(function: object) -> str:
    """A listener's or callback's name for a log line: its qualified name, never its ``repr``.

    The ``repr`` of a bound method shows its object's, and a ``functools.partial``'s its
    arguments: a callback given the credentials it rebuilds with may hold the secret value.
    """
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else type(function).__qualname__
