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

    def detach(self) -> Effects:
        """Move the pending logs and changes into a new :class:`Effects`, for another thread to announce."""
        moved = Effects()
        moved.logs, moved.changes = self.take_logs(), self.take_changes()
        return moved


class Flight:
    """A fetch of one key, queued or running; readers of the key wait on it instead of fetching.

    Fields other than the events change only under the store's lock; ``entry`` and ``error``
    are final once ``_done`` is set. A flight *settles* when it completes or when its first
    attempt fails transiently (it *falters*; its retries go on): a reader holding a servable
    value waits for the flight to settle, any other reader for it to complete.
    """

    __slots__ = (
        "_done",
        "_settled",
        "adopter",
        "announce",
        "callbacks",
        "due",
        "entry",
        "error",
        "faltered",
        "key",
        "origin",
        "owner",
        "previous",
        "refresh",
        "rounds",
        "settle_callbacks",
        "started",
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
        self.adopter: int | None = None  # a reader whose fetch runs on another thread, announcing it if it waits
        self.announce: Effects | None = None  # the logs and changes left for the adopter
        self.due: float | None = None  # refresh point to restore if a queued refresh comes to nothing
        self.started = 0  # the store's sequence number when its current fetch started (monotonic reads)
        self.rounds = 0  # fetches made again because an answer was older than a version served meanwhile
        self.faltered = False  # its first attempt failed transiently; retries go on
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.callbacks: list[Callable[[], None]] = []  # asyncio wake-ups, called once it completes
        self.settle_callbacks: list[Callable[[], None]] = []  # asyncio wake-ups, called once it settles
        self._done = threading.Event()
        self._settled = threading.Event()

    def wake(self) -> None:
        """Wake every waiter; the store calls it once ``entry`` and ``error`` are final."""
        self._settled.set()
        self._done.set()

    def wake_settled(self) -> None:
        """Wake the waiters that only wait for the flight to settle (it faltered)."""
        self._settled.set()

    def wait(self, timeout: float) -> bool:
        """Block until the flight completes or ``timeout`` seconds pass; whether it completed."""
        return self._done.wait(timeout)

    def wait_settled(self, timeout: float) -> bool:
        """Block until the flight completes or falters, or ``timeout`` seconds pass; whether it settled."""
        return self._settled.wait(timeout)

    @property
    def done(self) -> bool:
        """Whether the flight completed (``entry`` and ``error`` are final)."""
        return self._done.is_set()


class Claim:
    """What :meth:`Store.begin` hands a read that must wait.

    The flight; whether the reader claimed it (it starts the fetch); and ``spare``, the entry
    whose value the reader may serve past its TTL if the fetch falters (``None`` if none).
    """

    __slots__ = ("flight", "owner", "spare")

    def __init__(self, flight: Flight, owner: bool, spare: Entry | None = None) -> None:
        self.flight = flight
        self.owner = owner
        self.spare = spare
