"""Keeping credential values out of every error that leaves the database layer.

A driver may put the password into an error it raises, whatever the error's class: PyMySQL and
aiomysql raise ``UnicodeEncodeError`` (whose ``args`` and ``repr`` hold the whole password) for a
password outside Latin-1, psycopg does the same for a lone surrogate (holding the whole
connection string), asyncpg keeps such an error as ``__cause__``. Error trackers record ``args``,
attributes and ``repr`` of the whole chain. So every ``Exception`` a factory lets out is searched
for the passwords its connects were given (:func:`holds`) and, where one shows, replaced by a
:class:`RedactedConnectError` that keeps only the driver error's class, its error code and how
it was classified.

What counts as showing the password: the whole value, or any run of :data:`FRAGMENT` characters
of it, as text, escaped the ways a ``repr``, JSON or a libpq connection string escape it, or
encoded (UTF-8, Latin-1). The search covers ``str()`` and ``repr()`` of each error, its ``args``,
its attributes (instance dict, ``__slots__``, ``__notes__`` and a few well-known ones), what those
hold (what a function's closure captured, a bound method's object included), and the
``__cause__``/``__context__``/``.orig`` chain. It is bounded: an error too large or too deep to
search (an object held more than :data:`_DEPTH` attributes down), or one whose
``str()``/``repr()`` fails, counts as holding the value.
``BaseException``s that are not ``Exception``s (``KeyboardInterrupt``, ``asyncio.CancelledError``)
keep their type and pass untouched: they are raised by the runtime, not built from a password.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from secretcache._errors import SecretCacheError
from secretcache.db._auth import Failure
from secretcache.db._recovery import Connect, Op

__all__ = ["FRAGMENT", "RedactedConnectError", "Witness", "holds"]

FRAGMENT = 16
"""Characters of a password that, found together in an error, count as the password showing."""

_BUDGET = 20_000  # objects searched per error chain before giving up (and redacting)
_DEPTH = 6  # how deep into the attributes of an error's objects the search goes (an object deeper: redacted)
_ATTRIBUTES = ("object", "orig", "pgconn", "pgresult", "detail", "hint", "statement", "params", "exceptions")
_OPAQUE = (type, types.ModuleType, types.BuiltinFunctionType)
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


class RedactedConnectError(SecretCacheError):
    """A connect failed with an error that held the credentials; this one holds none of them.

    Raised by the connection factories and integrations of :mod:`secretcache.db` in place of the
    driver's error (any class: an ``OperationalError``, a ``UnicodeEncodeError``...) when the
    password could be read from it or from its chain. Nothing of the original is kept: no
    ``__cause__``, no ``__context__``.

    Attributes:
        secret_id: The secret whose credentials the connect used.
        driver_error: The original error's class, as ``module.qualname``
            (``builtins.UnicodeEncodeError``, ``pymysql.err.OperationalError``).
        code: The driver's error code when it has one and it is a number (MySQL's ``1045``) or a
            SQLSTATE (``"28P01"``), else ``None``.
        failure: How the original was classified (:class:`~secretcache.db.Failure`), which
            :func:`~secretcache.db.classify` returns for this error too.
    """

    def __init__(
        self, message: str, *, secret_id: str | None, driver_error: str, code: int | str | None, failure: Failure
    ) -> None:
        super().__init__(message, secret_id=secret_id)
        self.driver_error = driver_error
        self.code = code
        self.failure = failure

    def __reduce__(self) -> tuple[object, ...]:
        options = {"secret_id": self.secret_id, "driver_error": self.driver_error, "code": self.code}
        return (_rebuild, (str(self), options, self.failure.value))


def _rebuild(message: str, options: dict[str, Any], failure: str) -> RedactedConnectError:
    return RedactedConnectError(message, failure=Failure(failure), **options)


def redact(error: BaseException, secret_id: str | None, failure: Failure) -> RedactedConnectError:
    """The :class:`RedactedConnectError` standing for ``error`` (which it does not reference)."""
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    code = _code(error)
    said = f" (code {code})" if code is not None else ""
    message = (
        f"connecting with the credentials of secret {secret_id!r} failed with {kind}{said}; "
        "its details held the password and were dropped"
    )
    return RedactedConnectError(message, secret_id=secret_id, driver_error=kind, code=code, failure=failure)


def _code(error: BaseException) -> int | str | None:
    for state in (getattr(error, "sqlstate", None), getattr(error, "pgcode", None)):
        if isinstance(state, str) and _SQLSTATE.fullmatch(state):
            return state
    first = error.args[0] if error.args else None
    return first if type(first) is int else None


class _Needles:
    """The forms a password may take in an error's text, and its fragments."""

    def __init__(self, values: Iterable[str]) -> None:
        self.whole: set[str] = set()
        for value in values:
            if value:
                self.whole.update(_forms(value))
        self.fragments = {
            form[start : start + FRAGMENT]
            for form in self.whole
            if len(form) > FRAGMENT
            for start in range(len(form) - FRAGMENT + 1)
        }

    def __bool__(self) -> bool:
        return bool(self.whole)

    def in_text(self, text: str) -> bool:
        if any(form in text for form in self.whole):
            return True
        fragments = self.fragments
        return bool(fragments) and any(text[i : i + FRAGMENT] in fragments for i in range(len(text) - FRAGMENT + 1))


def _forms(value: str) -> Iterator[str]:
    """``value`` as text and escaped; its UTF-8 encoding as Latin-1 text (how bytes are searched).

    Latin-1 bytes decoded as Latin-1 give ``value`` itself, so they need no form of their own.
    """
    yield value
    yield repr(value)[1:-1]
    yield json.dumps(value)[1:-1]
    yield value.encode("unicode_escape").decode("ascii")
    yield value.replace("\\", "\\\\").replace("'", "\\'")  # a libpq connection string
    encoded = value.encode("utf-8", "surrogatepass")
    yield encoded.decode("latin-1")
    yield repr(encoded)[2:-1]


def holds(error: BaseException, values: Iterable[str]) -> bool:
    """Whether any of ``values`` can be read from ``error``: its text, args, attributes or chain."""
    needles = _Needles(values)
    if not needles:
        return False
    budget = _BUDGET
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(error, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0:
            return True  # too much to vouch for
        if isinstance(item, str):
            if needles.in_text(item):
                return True
            continue
        if isinstance(item, (bytes, bytearray, memoryview)):
            if needles.in_text(bytes(item).decode("latin-1")):
                return True
            continue
        if item is None or isinstance(item, (bool, int, float, complex, *_OPAQUE)) or id(item) in seen:
            continue
        if depth > _DEPTH:
            return True  # an object deeper than the search goes (text there is still read): cannot vouch for it
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend((member, depth) for pair in item.items() for member in pair)
            continue
        if isinstance(item, types.FunctionType):  # what a closure captured (a retry callback's password)
            stack.extend((_cell(cell), depth) for cell in item.__closure__ or ())
            continue
        if isinstance(item, types.MethodType):
            stack.append((item.__func__, depth))
            stack.append((item.__self__, depth))
            continue
        if isinstance(item, (tuple, list, set, frozenset)):
            stack.extend((member, depth) for member in item)
            continue
        exception = isinstance(item, BaseException)
        renders: tuple[Callable[[object], str], ...] = (str, repr) if exception else (repr,)
        for render in renders:
            try:
                if needles.in_text(render(item)):
                    return True
            except Exception:
                return True  # an error that cannot be printed cannot be vouched for
        if isinstance(item, BaseException):
            depth = 0  # every error of the chain is searched as deeply as the first
            stack.extend((part, 0) for part in (item.args, item.__cause__, item.__context__))
        stack.extend((member, depth + 1) for member in _attributes(item, exception))
    return False


def _cell(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _attributes(holder: object, exception: bool) -> Iterator[object]:
    names: dict[str, None] = dict.fromkeys(getattr(holder, "__dict__", None) or {})
    for cls in type(holder).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.update(dict.fromkeys([slots] if isinstance(slots, str) else slots))
    if exception:
        names.update(dict.fromkeys(_ATTRIBUTES))
    for name in names:
        if name in ("__dict__", "__weakref__"):
            continue
        try:
            yield getattr(holder, name)
        except Exception:  # noqa: S112 - an unset slot or a property that fails: nothing to read
            continue


class Witness:
    """What one factory call connected with, to check the error that call lets out.

    Args:
        secret_id: The factory's secret.
        classify: The factory's classification of errors.
        fixed: Passwords the factory passes on every connect (an override), besides the secret's.
    """

    def __init__(self, secret_id: str, classify: Callable[[BaseException], Failure], fixed: Iterable[str]) -> None:
        self._secret_id = secret_id
        self._classify = classify
        self._values = {value for value in fixed if value}

    def see(self, op: Op) -> Op:
        """Note the password of a :class:`Connect`; return ``op``."""
        if isinstance(op, Connect) and op.creds.password:
            self._values.add(op.creds.password)
        return op

    def redacted(self, error: BaseException) -> RedactedConnectError | None:
        """The error to raise instead of ``error``, or ``None`` when ``error`` holds no password."""
        if not isinstance(error, Exception):
            return None
        try:
            found = holds(error, self._values)
        except Exception:  # a search that fails cannot vouch for the error (and must not chain it)
            found = True
        if not found:
            return None
        try:
            failure = self._classify(error)
        except Exception:
            failure = Failure.OTHER
        return redact(error, self._secret_id, failure)
