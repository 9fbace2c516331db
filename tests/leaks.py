"""Test helper: prove a raised error cannot reach a secret value by any route but its traceback.

An error object outlives the call that raised it: it is logged, remembered, pickled, sent to
error trackers that record ``args`` and attributes, and it drags its ``__cause__`` and
``__context__`` (with *their* arguments and attributes, for example
:attr:`json.JSONDecodeError.doc`) along. :func:`assert_value_absent` walks all of that.
Traceback frames are deliberately not walked: their locals hold the value by necessity.
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ExtraAsJson", "assert_value_absent", "leaks_in_records", "leaks_of", "log_formatters", "record_leaks"]

STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
"""The attributes every record has; any other came from ``extra``."""


class ExtraAsJson(logging.Formatter):
    """The smallest JSON formatter: the message plus every attribute ``extra`` added to the record."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {name: value for name, value in vars(record).items() if name not in STANDARD}
        return json.dumps({"message": record.getMessage(), **extra}, default=str)


def log_formatters() -> list[logging.Formatter]:
    """A JSON formatter writing every ``extra`` field, and the library's own (the CLI's, serve's)."""
    from secretcache._cli import _LineFormatter as CliLines
    from secretcache.serve._server import _LineFormatter as ServeLines

    return [ExtraAsJson(), CliLines("%(name)s: %(levelname)s: %(message)s"), ServeLines("%(name)s %(message)s")]


def record_leaks(records: Iterable[logging.LogRecord], value: str | bytes) -> list[str]:
    """:func:`leaks_in_records` through :func:`log_formatters`: every route by which a record shows ``value``."""
    return leaks_in_records(records, value, log_formatters())


def assert_value_absent(error: BaseException, value: str | bytes) -> None:
    """Fail if ``value`` is reachable from ``error`` through its chain, args or attributes.

    Checks the error, its ``__cause__`` and ``__context__`` (recursively, cycles allowed): for
    each one ``str()``, ``repr()``, every item of ``args`` and every attribute (``vars()`` and
    ``__slots__``), descending into tuples, lists, sets, dicts, nested exceptions and the
    attributes of other objects (whose ``repr()`` is checked too); ``str`` and ``bytes`` items
    are searched with ``in``.

    Raises:
        AssertionError: Naming every route that leads to the value.
    """
    found = list(leaks_of(error, value))
    assert not found, f"the value is reachable from {type(error).__name__} through: {', '.join(found)}"


def leaks_of(error: BaseException, value: str | bytes) -> Iterator[str]:
    """Yield a readable path (``error.__context__.doc``) for every place ``value`` was found."""
    text, raw = _spellings(value)
    yield from _walk([(error, "error")], text, raw)


def leaks_in_records(
    records: Iterable[logging.LogRecord], value: str | bytes, formatters: Iterable[logging.Formatter] = ()
) -> list[str]:
    """Every route by which ``value`` reaches what a handler could write of one of ``records``.

    For each record: its message (``getMessage()``); every attribute of ``record.__dict__``
    (the ``extra`` fields, ``args``, ``exc_info``, ``stack_info``...): strings and bytes,
    containers item by item, an exception with its whole chain as :func:`leaks_of` walks it,
    any other object by its ``repr()`` (what a formatter or an error tracker writes of it);
    the traceback text :meth:`logging.Formatter.formatException` makes of ``exc_info``; and
    the output of :class:`logging.Formatter` and of each of ``formatters`` (a JSON formatter
    writes every ``extra`` field). Routes are named ``record N (logger: msg)...``.
    """
    text, raw = _spellings(value)
    found: list[str] = []
    everyone = (logging.Formatter("%(levelname)s %(name)s %(message)s"), *formatters)
    for index, record in enumerate(records):
        where = f"record {index} ({record.name}: {record.msg!s:.60})"
        pending: list[tuple[BaseException, str]] = []
        try:
            message = record.getMessage()
        except Exception as err:
            found.append(f"{where}.getMessage() raised {type(err).__name__}")
        else:
            if text in message:
                found.append(f"{where}.getMessage()")
        for name, item in list(vars(record).items()):
            found.extend(_search(item, f"{where}.{name}", text, raw, pending, attributes=False))
        found.extend(_walk(pending, text, raw))
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None and text in logging.Formatter().formatException(exc_info):
            found.append(f"{where} formatException(exc_info)")
        for formatter in everyone:
            copy = logging.makeLogRecord(vars(record))  # formatting caches exc_text on the record
            if text in formatter.format(copy):
                found.append(f"{where} {type(formatter).__name__}.format")
    return found


def _spellings(value: str | bytes) -> tuple[str, bytes]:
    if not value:
        raise ValueError("an empty value is found everywhere; use a distinctive marker")
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return text, raw


def _walk(pending: list[tuple[BaseException, str]], text: str, raw: bytes) -> Iterator[str]:
    """Search each error of ``pending`` (and those found on the way) with its chain, args and attributes."""
    seen: set[int] = set()
    while pending:
        current, path = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for label, render in (("str", str), ("repr", repr)):
            try:
                rendered = render(current)
            except Exception as err:  # a broken __str__ is itself worth reporting
                yield f"{label}({path}) raised {type(err).__name__}"
                continue
            if text in rendered:
                yield f"{label}({path})"
        for name, item in _parts(current):
            yield from _search(item, f"{path}{name}", text, raw, pending)
        for link in ("__cause__", "__context__"):
            linked = getattr(current, link, None)
            if isinstance(linked, BaseException):
                pending.append((linked, f"{path}.{link}"))


def _parts(holder: object) -> Iterator[tuple[str, Any]]:
    """An object's attributes (instance dict and slots) as (path suffix, value); an error's args first."""
    if isinstance(holder, BaseException):
        yield ".args", holder.args
    names: dict[str, None] = dict.fromkeys(getattr(holder, "__dict__", {}))
    for cls in type(holder).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.update(dict.fromkeys([slots] if isinstance(slots, str) else slots))
    for name in names:
        if name in ("__dict__", "__weakref__"):
            continue
        try:
            item = getattr(holder, name)
        except AttributeError:  # an unset slot
            continue
        yield f".{name}", item


_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _search(
    root: Any,
    root_path: str,
    text: str,
    raw: bytes,
    pending: list[tuple[BaseException, str]],
    *,
    attributes: bool = True,
) -> Iterator[str]:
    """Search ``root`` and everything it holds, without recursion (a value may be nested deeply).

    Without ``attributes``, an object that is no container, string or exception is searched by
    its ``repr()`` alone.
    """
    stack: list[tuple[Any, str]] = [(root, root_path)]
    visited: set[int] = set()
    while stack:
        item, path = stack.pop()
        if isinstance(item, BaseException):
            pending.append((item, path))  # walked as a whole error, chain included
        elif isinstance(item, str):
            if text in item:
                yield path
        elif isinstance(item, (bytes, bytearray, memoryview)):
            if raw in bytes(item):
                yield path
        elif item is None or isinstance(item, (bool, int, float, complex, *_OPAQUE)) or id(item) in visited:
            continue
        else:
            visited.add(id(item))
            if isinstance(item, dict):
                for key, member in item.items():
                    stack.append((key, f"{path} key {key!r:.40}"))
                    stack.append((member, f"{path}[{key!r:.40}]"))
            elif isinstance(item, (tuple, list, set, frozenset)):
                stack.extend((member, f"{path}[{index}]") for index, member in enumerate(item))
            else:  # any other object: what a logger or error tracker would record of it
                try:
                    if text in repr(item):
                        yield f"repr({path})"
                except Exception as err:  # an unprintable object cannot be vouched for
                    yield f"repr({path}) raised {type(err).__name__}"
                if attributes:
                    stack.extend((member, f"{path}{name}") for name, member in _parts(item))
