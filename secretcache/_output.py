"""What the ``secretcache`` command writes: standard output, its one error line, and how ids are shown.

Every write to standard output goes through :func:`out` or :func:`out_bytes`, so that a failure to
write (a closed descriptor, a full disk, an I/O error) surfaces as one :class:`OutputError`
instead of a traceback; a reader that went away stays a :class:`BrokenPipeError` (exit 141).
Human-readable lines show ids with :func:`shown_id` and other outside text with :func:`printable`,
so that an id holding a newline or an ESC sequence cannot forge a line or reach the terminal raw.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

__all__ = [
    "OutputError",
    "QueryError",
    "discard_stdout",
    "flush",
    "out",
    "out_bytes",
    "printable",
    "render",
    "say",
    "shown_id",
]

# What Secrets Manager allows in a name, plus the ARN's colons: shown bare, anything else quoted.
_PLAIN_ID = re.compile(r"[A-Za-z0-9/_+=.@:-]+")


class OutputError(Exception):
    """Standard output could not be written (closed, full, an I/O error); the command exits 74."""


class QueryError(Exception):
    """``--query`` failed on the document (a function given the wrong type, an unknown function); exit 2.

    Its message names the failure and never quotes the document, which may hold the value.
    """


def shown_id(secret_id: str) -> str:
    """``secret_id`` fit for a human-readable line: as is when plain, else quoted and escaped (``''``)."""
    return secret_id if _PLAIN_ID.fullmatch(secret_id) else repr(secret_id)


def printable(text: str) -> str:
    r"""``text`` with every non-printable character escaped (``\n``, ``\x1b``), for one terminal line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def render(document: dict[str, object], *, query: Any = None, as_text: bool = False) -> str:
    """A command's JSON document, or what the compiled JMESPath ``query`` selects of it, as JSON or text.

    Text is the AWS CLI's: a string as it is, ``None``/``True``/``False``, a list or object of
    scalars on one tab-separated line, one line per element otherwise.

    Raises:
        QueryError: ``query`` failed on the document (its message never quotes the document).
    """
    selected = document if query is None else _search(query, document)
    return _text(selected) if as_text else json.dumps(selected, indent=2)


def _search(query: Any, document: dict[str, object]) -> object:
    """``query.search(document)``; a failure is a :class:`QueryError` whose message holds no value."""
    try:
        return query.search(document)
    except (TypeError, ValueError) as err:  # jmespath's own errors are ValueErrors
        raise QueryError(f"argument --query: cannot be applied to the document: {_query_failure(err)}") from None


def _query_failure(err: Exception) -> str:
    """The error's type, and what of its message cannot quote the document."""
    from jmespath.exceptions import ArityError, JMESPathTypeError, UnknownFunctionError

    name = type(err).__name__
    if isinstance(err, JMESPathTypeError):  # its own message quotes the value it was given
        expected = " or ".join(map(str, err.expected_types))
        return f"{name}: function {err.function_name}() expects {expected}, got {err.actual_type}"
    if isinstance(err, (ArityError, UnknownFunctionError)):  # a function's name and counts only
        return f"{name}: {err}"
    # jmespath lets Python's own errors through, whose messages may quote a value: a TypeError
    # from comparing a string with a number (a filter, min_by), a ValueError from a slice step of 0.
    return name


def _text(value: object) -> str:
    items = list(value.values()) if isinstance(value, dict) else value
    if isinstance(items, list):
        if all(not isinstance(item, (list, dict)) for item in items):
            return "\t".join(_text(item) for item in items)
        return "\n".join(_text(item) for item in items)
    return value if isinstance(value, str) else str(value)


def _failed(err: BaseException) -> OutputError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
    return OutputError(f"cannot write to standard output: {reason}")


def _stdout() -> object:
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        raise OutputError("cannot write to standard output: it is closed")
    return sys.stdout


def out(text: str) -> None:
    """Write ``text`` and a newline to standard output.

    Raises:
        BrokenPipeError: The reader of a pipe went away.
        OutputError: Any other failure to write.
    """
    _stdout()
    try:
        # Two writes, as print() makes them: a large write the pipe's reader cut short can end
        # without an error (the buffered writer drops it); the next write then reports it.
        sys.stdout.write(text)
        sys.stdout.write("\n")
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as err:  # ValueError: the stream was closed
        raise _failed(err) from None


def out_bytes(data: bytes) -> None:
    """Write raw bytes to standard output, after what :func:`out` wrote; errors as for :func:`out`."""
    flush()
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except (AttributeError, OSError, ValueError) as err:  # AttributeError: a stream without bytes
        raise _failed(err) from None


def flush() -> None:
    """Flush standard output, so that a failure is seen here and not in the interpreter's flush at exit."""
    _stdout()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as err:
        raise _failed(err) from None


def say(line: str) -> None:
    """Write one line to standard error, if it can be written at all (never to standard output)."""
    stream = sys.stderr
    if stream is None:  # print(file=None) would write to standard output
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def discard_stdout() -> None:
    """Point standard output's descriptor at devnull, after a write to it failed.

    What the Python docs advise (library/signal.html, "Note on SIGPIPE"): the interpreter flushes
    ``sys.stdout`` at exit, and that flush would fail again and print "Exception ignored ...".
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or replaced by an object without one
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
