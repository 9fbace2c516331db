"""A lock for attribute work whose :meth:`~HandOffLock.hand_off` never waits for it.

The rotation recovery ends what a connect claimed (a poll, a forced refresh, its place in the
grace) in ``finally`` clauses. An async connect left pending by a closed event loop is closed by
the garbage collector, which runs those clauses on whatever thread set it off and inside whatever
lock that thread holds: the recovery's own, say, if an allocation under it triggered the
collection. Taking that lock there would wait for ever for the thread itself. So those ends are
handed off: done at once when the lock is free, else left to its holder, who does them before it
lets go. A reentrant lock would not do: the end would run in the middle of the holder's own work.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType

__all__ = ["HandOffLock", "Work"]

Work = Callable[[], Iterable[Callable[[], None]]]
"""Attribute work to do under the lock; returns what to call once the lock is released (wake-ups)."""


class HandOffLock:
    """A non-reentrant lock (``with lock:``) that also takes work handed to it without waiting.

    Work handed off is done under the lock, in the order handed, before the holder of the moment
    lets go (or by the hander itself when the lock is free); a thread's later ``with lock:`` sees
    the work it handed off done. What the work returns is called after the lock is released. A
    work or wake-up that raises stops no other: the thread that ran it gets the first error once
    the lock is released, every work left done and every wake-up called. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: deque[Work] = deque()  # handed off, not done yet (appends are atomic)
        self._wakes: list[Callable[[], None]] = []  # to call once the lock is released; the holder's

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._do_left()  # the state the holder reads includes the work handed off before it took the lock
        except BaseException:
            self._release()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._release()

    def hand_off(self, work: Work) -> None:
        """Do ``work`` under the lock now if it is free, else leave it to the holder; never waits."""
        self._left.append(work)
        if self._lock.acquire(blocking=False):
            self._release()

    def _do_left(self) -> None:
        """Do the work left, in order; the first error is raised once none is left."""
        errors: list[BaseException] = []
        while self._left:
            try:
                self._wakes.extend(self._left.popleft()())
            except BaseException as err:
                errors.append(err)
        _raise_first(errors)

    def _release(self) -> None:
        """Do the work left, let go, call the wake-ups; again while work was handed off meanwhile."""
        errors: list[BaseException] = []
        while True:
            try:
                self._do_left()
            except BaseException as err:
                errors.append(err)
            finally:
                wakes, self._wakes = self._wakes, []
                self._lock.release()
            for wake in wakes:
                try:
                    wake()
                except BaseException as err:
                    errors.append(err)
            # Handed off after the work above was done, while the lock was still held: its hander
            # found the lock taken and left it here.
            if not self._left or not self._lock.acquire(blocking=False):
                break
        _raise_first(errors)


def _raise_first(errors: list[BaseException]) -> None:
    """Raise the first of ``errors``, if any (and drop the list's references: no cycle through the frame)."""
    if errors:
        try:
            raise errors[0]
        finally:
            errors.clear()
