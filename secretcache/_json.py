"""Parsing and copying a secret's JSON document without ever keeping the document in an error.

``json.loads`` reports bad input with a :class:`json.JSONDecodeError` whose ``doc`` attribute
is the whole document, and reports deep nesting with :class:`RecursionError`. Raising our own
error from inside the ``except`` block would chain that error as ``__context__`` (``from None``
only hides it from the printed traceback), so every error here is raised after the ``except``
block has ended, keeping only the position of the fault.
"""

from __future__ import annotations

import json
from typing import Any

from secretcache._errors import SecretFormatError

__all__ = ["parse_document", "select_key", "thaw"]


def parse_document(document: str, secret_id: str, *, invalid: str = "is not valid JSON", hint: str = "") -> Any:
    """Parse a secret's JSON document.

    The error raised has no ``__cause__`` and no ``__context__`` (unless the caller is itself
    inside an ``except`` block), and its message gives only the position of the fault, so
    nothing reachable from it holds the document.

    Args:
        document: The secret's ``SecretString``.
        secret_id: The secret the document belongs to, named in errors.
        invalid: How the message words invalid JSON, after the secret id; the position follows.
        hint: Appended to error messages after ``"; "``: what the caller needs the secret to be.

    Returns:
        The parsed document (dicts, lists, strings, numbers, booleans and ``None``).

    Raises:
        SecretFormatError: The document is not valid JSON, or is nested too deeply to parse.
    """
    problem: str
    try:
        return json.loads(document)
    except json.JSONDecodeError as err:
        problem = f"{invalid} (error at line {err.lineno}, column {err.colno})"
    except ValueError:  # valid syntax json refuses anyway, e.g. an integer over the digit limit
        problem = f"{invalid} (a value json cannot convert)"
    except RecursionError:
        problem = "is JSON nested too deeply to parse"
    advice = f"; {hint}" if hint else ""
    raise SecretFormatError(f"secret {secret_id!r} {problem}{advice}", secret_id=secret_id)


def select_key(document: Any, key: str, secret_id: str) -> Any:
    """The value of one top-level key of a parsed document (not a copy).

    Args:
        document: A parsed JSON document.
        key: The key to read.
        secret_id: The secret the document belongs to, named in errors.

    Raises:
        SecretFormatError: The document is not a JSON object, or has no ``key``. The message
            names the key, never the value.
    """
    if not isinstance(document, dict):
        raise SecretFormatError(
            f"secret {secret_id!r} is JSON but not an object; cannot read key {key!r}", secret_id=secret_id
        )
    if key not in document:
        raise SecretFormatError(f"secret {secret_id!r} has no JSON key {key!r}", secret_id=secret_id)
    return document[key]


def thaw(data: Any) -> Any:
    """Deep-copy parsed JSON so a caller can change it without touching the cached copy.

    Dicts and lists are copied; every other value is shared (JSON leaves are immutable). Works
    with an explicit stack rather than recursion, so any depth ``json.loads`` accepted is copied.

    Args:
        data: A parsed JSON document, or part of one (a tree: no container appears twice).

    Returns:
        An equal document whose dicts and lists are all new.
    """
    root = _empty_like(data)
    if root is None:
        return data
    stack: list[tuple[Any, Any]] = [(data, root)]
    while stack:
        source, target = stack.pop()
        if isinstance(source, dict):
            for key, item in source.items():
                child = _empty_like(item)
                target[key] = item if child is None else child
                if child is not None:
                    stack.append((item, child))
        else:
            for item in source:
                child = _empty_like(item)
                target.append(item if child is None else child)
                if child is not None:
                    stack.append((item, child))
    return root


def _empty_like(item: Any) -> dict[Any, Any] | list[Any] | None:
    """A new empty container of ``item``'s kind, or ``None`` if ``item`` is not a dict or list."""
    if isinstance(item, dict):
        return {}
    if isinstance(item, list):
        return []
    return None
