"""Fork safety: objects that must reinitialise themselves in a forked child process."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["ForkAware", "track"]


class ForkAware(Protocol):
    """Something holding locks, threads or connections that a forked child must not reuse."""

    def _after_fork_in_child(self) -> None:
        """Replace locks, forget in-flight work and threads, drop shared connections."""


_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_tracked_lock = threading.Lock()


def track(obj: ForkAware) -> None:
    """Have ``obj._after_fork_in_child()`` called in every child forked from now on."""
    with _tracked_lock:
        _tracked.add(obj)


def _reinit_children() -> None:
    global _tracked_lock
    # Only the forking thread exists in the child; a lock another thread held is stuck.
    _tracked_lock = threading.Lock()
    for obj in list(_tracked):
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_reinit_children)
