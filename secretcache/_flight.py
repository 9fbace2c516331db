"""A fetch in flight, the claim a read holds on it, and what a change announces after the lock.

These are the store's working parts (:mod:`secretcache._store`): their fields change only under
the store's lock, and only the store changes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secretcache._entry import Entry
    from secretcache._keys import CacheKey
    from secretcache._logs import LogLine
    from secretcache._observe import Refresh
    from secretcache._stats import Counters
    from secretcache._value import SecretChange

__all__ = ["DONE", "QUEUED", "RUNNING", "Claim", "Effects", "Flight"]

QUEUED, RUNNING, DONE = "queued", "running", "done"
"""A flight's states: waiting for a worker (any reader may take it over), fetching, completed."""


class Effects:
    """What changes under the lock have to announce once it is released: counts, logs, changes."""

    __slots__ = ("changes", "counts", "logs")

    def __init__(self) -> None:
        self.counts: list[str] = []
        self.logs: list[LogLine] = []
        self.changes: list[SecretChange] = []

    def count(self, name: str) -> None:
        """Count one ``name`` (a :class:`CacheStats` counter) when :meth:`apply_counts` runs."""
        self.counts.append(name)

    def log(self, level: int, message: str, *args: object, extra: dict[str, object]) -> None:
        """Log ``message % args`` at ``level``, with the ``extra`` fields, when announced."""
        self.logs.append((level, message, args, extra))

    def apply_counts(self, counters: Counters) -> None:
        """Add the pending counts to ``counters`` (each once)."""
        counts, self.counts = self.counts, []
        for name in counts:
            counters.add(name)

    def take_logs(self) -> list[LogLine]:
        """The pending log lines, once."""
        logs, self.logs = self.logs, []
        return logs

    def take_changes(self) -> list[SecretChange]:
        """The pending changes, once."""
        changes, self.changes = self.changes, []
        return changes


class Flight:
    """A fetch of one key, queued or running; readers of the key wait on it instead of fetching.

    Fields other than ``_done`` change only under the store's lock; ``entry`` and ``error``
    are final once ``_done`` is set.
    """

    __slots__ = (
        "_done",
        "callbacks",
        "due",
        "entry",
        "error",
        "key",
        "origin",
        "owner",
        "previous",
        "refresh",
        "state",
        "ttl",
    )

    def __init__(self, key: CacheKey, previous: Entry | None, ttl: float | None, state: str, refresh: Refresh) -> None:
        self.key = key
        self.previous = previous
        self.ttl = ttl
        self.state = state
        self.refresh = refresh  # why it runs, for observers; a reader taking a queued one over makes it foreground
        self.origin: object = None  # the observer's token for what queued a background refresh
        self.owner: int | None = None  # thread running the fetch
        self.due: float | None = None  # refresh point to restore if a queued refresh comes to nothing
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.callbacks: list[Callable[[], None]] = []
        self._done = threading.Event()

    def wake(self) -> None:
        """Wake every waiter; the store calls it once ``entry`` and ``error`` are final."""
        self._done.set()

    def wait(self, timeout: float) -> bool:
        """Block until the flight completes or ``timeout`` seconds pass; whether it completed."""
        return self._done.wait(timeout)


class Claim:
    """What :meth:`Store.begin` hands a read that must wait: the flight, and whether it runs it."""

    __slots__ = ("flight", "owner")

    def __init__(self, flight: Flight, owner: bool) -> None:
        self.flight = flight
        self.owner = owner
