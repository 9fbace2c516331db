"""What a read that waited on a fetch is given: the fetch's value, a value past its TTL, or an error.

The store's readers (:meth:`Runner.read`, and :class:`AsyncSecretCache` through the same
:class:`Serving`) end here once they stop waiting. Nothing here takes a lock: a completed
flight's ``entry`` and ``error`` are final, and an entry's value and deadlines are read as the
hot path reads them (the store's invariant 5). Each read is counted once it is decided, after the
state it counts is visible (invariant 4).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from secretcache._errors import SecretCacheError, SecretUnavailableError
from secretcache._stats import Counters

if TYPE_CHECKING:
    from secretcache._entry import Entry
    from secretcache._flight import Flight

__all__ = ["Serving", "raise_copy"]


class Serving:
    """Hands a waiting reader its answer and counts it; thread-safe (it keeps no state of its own)."""

    __slots__ = ("_clock", "_counters")

    def __init__(self, clock: Callable[[], float], counters: Counters) -> None:
        self._clock = clock
        self._counters = counters

    def spare(self, spare: Entry) -> Entry | None:
        """For a reader whose fetch faltered: its value past the TTL (counted stale), if still servable.

        ``None`` when it no longer is (too old now, or retired because a newer version was
        served meanwhile): the reader then waits for the fetch to complete.
        """
        if not spare.servable(self._clock()):
            return None
        self._counters.add("stale_served")
        return spare

    def completed(self, flight: Flight) -> Entry:
        """The entry a completed flight gives its readers: its value, a stale value, or its error."""
        entry = flight.entry
        if entry is None:
            self._counters.add("read_errors")
            error = flight.error
            if isinstance(error, Exception):
                raise error
            secret_id = flight.key.secret_id
            raise SecretUnavailableError(
                f"the fetch of secret {secret_id!r} this read waited for was interrupted", secret_id=secret_id
            ) from error
        if entry.failure is None:
            self._counters.add(Counters.MISSES_SERVED)
            return entry
        return self._failed(entry, entry.failure.error)

    def give_up(self, flight: Flight, why: str) -> Entry:
        """For a read that will not wait for ``flight``: the value it had before, or an error."""
        previous = flight.previous
        secret_id = flight.key.secret_id
        error = SecretUnavailableError(f"secret {secret_id!r} is not available yet: {why}", secret_id=secret_id)
        if previous is None:
            self._counters.add("read_errors")
            raise error
        return self._failed(previous, error)

    def _failed(self, entry: Entry, error: SecretCacheError) -> Entry:
        """For a read that waited: the entry's value if still servable (stale past its TTL), else ``error``."""
        now = self._clock()
        if not entry.servable(now):
            self._counters.add("read_errors")
            raise_copy(error)
        self._counters.add(Counters.MISSES_SERVED if entry.is_fresh(now) else "stale_served")
        return entry


def raise_copy(error: SecretCacheError) -> NoReturn:
    """Raise a fresh copy of a remembered error, with its cause chained and no cycle left behind.

    Raising one exception object many times grows its traceback and shares it between threads,
    so each raise gets a copy, traceback-free, that keeps the chained cause.
    """
    fresh = copy.copy(error)
    fresh.__traceback__ = None
    try:
        raise fresh from error.__cause__
    finally:
        del fresh  # else the frame and the traceback keep each other alive until a GC pass
