"""A Ctrl-C while the ``secretcache`` command starts ends it quietly with status 130.

The package's ``__init__`` imports this module before anything heavy (botocore takes a few
hundred milliseconds), which calls :func:`guard_command_start` once. When this interpreter is running the command
(``python -m secretcache`` or the ``secretcache`` console script) and SIGINT has Python's default
handler, it installs one that exits with status 130 at once: nothing is written yet, so nothing is
lost, and no ``KeyboardInterrupt`` traceback (with status -2) reaches the terminal. The command's
``main()`` calls :func:`release` first thing, which puts Python's default back, so that a Ctrl-C
while a command runs closes the cache and its client before exiting 130. Any other program
importing the package keeps its SIGINT handling untouched. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from types import FrameType

__all__ = ["guard_command_start", "release"]

_PACKAGE = "secretcache"
# Names a console-script launcher runs under (pip's script; setuptools' on Windows).
_SCRIPT_NAMES = (_PACKAGE, f"{_PACKAGE}-script.py", f"{_PACKAGE}-script.pyw")
# `-m NAME`, `-mNAME` or flags without a value before the m (`-Im NAME`).
_MODULE_FLAG = re.compile(r"-[bBdEiIOPqsSuvx]*m(.*)")
_VALUED = ("-W", "-X", "--check-hash-based-pycs")  # options whose value is the next argument


def _exit_130(signum: int, frame: FrameType | None) -> None:
    os._exit(130)  # 128 + SIGINT, as a shell reports it; nothing written yet to flush


def _module_run(orig_argv: Sequence[str]) -> str | None:
    """The module ``python -m`` runs, from the interpreter's original command line."""
    index = 1
    while index < len(orig_argv):
        arg = orig_argv[index]
        match = _MODULE_FLAG.fullmatch(arg)
        if match is not None:
            if match.group(1):
                return match.group(1)
            return orig_argv[index + 1] if index + 1 < len(orig_argv) else None
        if arg in ("-c", "-") or not arg.startswith("-"):
            return None  # code, stdin or a script: no module is run
        index += 2 if arg in _VALUED else 1
    return None


def _running_the_command() -> bool:
    if not sys.argv:
        return False
    if sys.argv[0] == "-m":  # runpy is importing the package of the module `python -m` runs
        return _module_run(getattr(sys, "orig_argv", ())) in (_PACKAGE, f"{_PACKAGE}.__main__")
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    return isinstance(script, str) and os.path.basename(script) in _SCRIPT_NAMES


def guard_command_start() -> None:
    """When this process is the ``secretcache`` command, make SIGINT exit 130 until :func:`release`."""
    if _running_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with contextlib.suppress(ValueError):  # not the main thread (an embedding program): leave it
            signal.signal(signal.SIGINT, _exit_130)


def release() -> None:
    """Give SIGINT back to Python's default (``KeyboardInterrupt``) if :func:`guard_command_start` took it."""
    if signal.getsignal(signal.SIGINT) is _exit_130:
        signal.signal(signal.SIGINT, signal.default_int_handler)


guard_command_start()
