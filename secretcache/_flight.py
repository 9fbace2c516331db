"""Flights: the table, a fetch in flight, a read's claim, what it announces, what a waiter gets.

These are the store's working parts (:mod:`secretcache._store`): their fields change only under
the store's lock, and only the store changes them (:class:`Flights`' methods run under it). A
flight is made in one place, :meth:`Flights.claim`. :class:`Serving` takes no lock: a completed
flight's ``entry`` and ``error`` are final, and an entry's value and deadlines are read as the
hot path reads them (the store's invariant 5); each read is counted once it is decided, after the
state it counts is visible (invariant 4).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NoReturn

from secretcache._errors import SecretCacheError, SecretUnavailableError
from secretcache._logs import Facts, callable_name, facts
from secretcache._stats import Counters

if TYPE_CHECKING:
    from secretcache._entry import Entry
    from secretcache._keys import CacheKey
    from secretcache._logs import LogLine
    from secretcache._observe import Refresh
    from secretcache._value import ChangeListener, SecretChange

__all__ = ["DONE", "QUEUED", "RUNNING", "Claim", "Effects", "Flight", "Serving", "raise_copy"]

logger = logging.getLogger("secretcache")

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

    def log(self, level: int, message: str, *args: object, facts: Facts) -> None:
        """Log ``message % args`` at ``level``, with ``facts`` as the record's fields, when announced."""
        self.logs.append((level, message, args, facts))

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

    def announce(self, listeners: Iterable[ChangeListener]) -> None:
        """Outside the lock: emit the pending log lines, then call ``listeners`` with the pending changes.

        A listener that raises is logged and costs neither the other listeners nor the caller.
        """
        for level, message, args, fields in self.take_logs():
            logger.log(level, message, *args, extra=fields.extra())
        for change in self.take_changes():
            for listener in listeners:
                try:
                    listener(change)
                except Exception as err:
                    extra = facts("on_change", secret_name=change.name, version_id=change.new_version_id, error=err)
                    shown = callable_name(listener)  # its repr may show a value it holds
                    logger.exception("on_change listener %s failed for secret %r", shown, change.name, extra=extra)


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
        "began",
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
        "requeued",
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
        self.began: float | None = None  # the cache's clock then: the TTL of its answer counts from it
        self.rounds = 0  # fetches made again because an answer was older than a version served meanwhile
        self.faltered = False  # its first attempt failed transiently; retries go on
        self.requeued = False  # put back in the queue by a refused batch: readers may wait on it (Flights.requeue)
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.callbacks: list[Callable[[], None]] = []  # asyncio wake-ups, called once it completes (wake)
        self.settle_callbacks: list[Callable[[], None]] = []  # asyncio wake-ups, called once it settles
        self._done = threading.Event()
        self._settled = threading.Event()

    def restore_due(self, entries: dict[CacheKey, Entry]) -> None:
        """A queued refresh that came to nothing: its entry, if still held, gets its refresh point back.

        Queuing moved the point to the TTL (so reads take the hot path meanwhile); restored, the
        next read past it queues the refresh again instead of waiting for the TTL to fetch.
        """
        if self.due is not None and entries.get(self.key) is self.previous:
            self.previous.refresh_at = self.due  # type: ignore[union-attr]

    def wake(self, effects: Effects) -> None:
        """Wake every waiter, asyncio ones too; called once, when the flight is done (``entry``, ``error`` final).

        The wake-up lists are final by then (none is added to a flight that is done). A failing
        wake-up is logged to ``effects`` and costs none of the others.
        """
        self._done.set()  # before settled: a reader woken by settled must see the flight done, not serve its spare
        self._settled.set()
        for callback in (*self.callbacks, *self.settle_callbacks):
            try:
                callback()
            except Exception as err:
                secret_id = self.key.secret_id
                fields = Facts("wake", secret_name=secret_id, error=err)
                effects.log(logging.ERROR, "waking a reader of secret %r failed", secret_id, facts=fields)

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
    """What :meth:`Store.begin` hands a read that must wait, or that must hand a background refresh on.

    The flight; whether the reader claimed it (it starts the fetch); ``spare``, the entry whose
    value the reader may serve past its TTL if the fetch falters (``None`` if none); and
    ``served``, set when the read is answered at once and the flight is a background refresh
    it queued, for the caller to hand to the refresh pool.
    """

    __slots__ = ("flight", "owner", "served", "spare")

    def __init__(self, flight: Flight, owner: bool, spare: Entry | None = None, served: Entry | None = None) -> None:
        self.flight = flight
        self.owner = owner
        self.spare = spare
        self.served = served


class Flights(dict["CacheKey", Flight]):
    """The store's flights by key (queued or running), and the sequence that orders fetch starts.

    No lock of its own: the store (:mod:`secretcache._store`) calls every method under its lock,
    and every method is plain dict and attribute work.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seq = 0
        self.background: dict[Flight, None] = {}  # queued background refreshes, oldest first (take_next)

    def tick(self) -> int:
        """The next sequence number (fetch starts and version marks are ordered by it)."""
        self.seq += 1
        return self.seq

    def claim(
        self, key: CacheKey, entry: Entry | None, ttl: float | None, refresh: Refresh, runs_here: bool, now: float
    ) -> Claim | None:
        """Queue a refresh of ``key``, or join, take over or start a fetch of it; the one place flights are made.

        A background refresh or a prefetch is queued only if no fetch of the key exists (else
        ``None``); a background refresh moves the entry's refresh point, so reads take the hot
        path meanwhile. A read joins the running fetch, or takes over a queued one (it runs it
        now rather than wait for a worker), or starts one. Its claim's ``spare`` is the value it
        may serve if the fetch falters (past its TTL, within ``max_stale``; never for a forced
        read, which asks for Secrets Manager's answer); a reader with one never runs the fetch on
        its own thread. ``ttl`` is the TTL the answer will live (``None`` for a version id).
        """
        queue = refresh in ("background", "prefetch")
        spare = entry if refresh == "foreground" and entry is not None and entry.servable(now) else None
        flight = self.get(key)
        if flight is not None and (queue or flight.state is RUNNING):
            return None if queue else Claim(flight, owner=False, spare=spare)
        if flight is None:
            flight = self[key] = Flight(key, entry, ttl, QUEUED, refresh)
        if queue:
            if refresh == "background" and entry is not None:
                flight.due, entry.refresh_at = entry.refresh_at, entry.fresh_until
            return Claim(flight, owner=True, served=entry)
        self.background.pop(flight, None)  # a queued refresh taken over by this reader
        flight.state, flight.refresh, flight.started, flight.began = RUNNING, refresh, self.tick(), now
        flight.ttl = ttl if ttl is not None else flight.ttl
        flight.owner = threading.get_ident() if runs_here else None  # a thread it is handed to owns it then
        flight.adopter = threading.get_ident() if runs_here and spare is not None else None
        return Claim(flight, owner=True, spare=spare)

    def enqueue(self, flight: Flight) -> None:
        """Put a background refresh :meth:`claim` queued in :attr:`background`, unless taken over or dropped since.

        Not in :meth:`claim` itself: a refresh thread may take it from there at once, so the
        store first notes what queued it (``Flight.origin``, asked of the observer after the lock).
        """
        if flight.state is QUEUED and self.get(flight.key) is flight:
            self.background[flight] = None

    def falter(self, flights: tuple[Flight, ...]) -> tuple[list[Flight], list[Callable[[], None]]]:
        """Mark ``flights`` faltered (an attempt failed transiently); those newly so, and their settle wake-ups."""
        callbacks: list[Callable[[], None]] = []
        faltered = [flight for flight in flights if not flight.faltered and flight.state is not DONE]
        for flight in faltered:
            flight.faltered = True
            callbacks += flight.settle_callbacks
            flight.settle_callbacks = []
        return faltered, callbacks

    def take(self, flights: Iterable[Flight], now: float) -> list[Flight]:
        """Start, on this thread at ``now``, the queued ``flights`` that nobody took over or dropped meanwhile.

        A requeued flight dropped meanwhile is started too: readers may wait on it (:meth:`forget`).
        """
        taken = []
        for flight in flights:
            if flight.state is QUEUED and (self.get(flight.key) is flight or flight.requeued):
                flight.state, flight.started, flight.owner = RUNNING, self.tick(), threading.get_ident()
                flight.began = now
                self.background.pop(flight, None)
                taken.append(flight)
        return taken

    def take_next(self, now: float) -> list[Flight]:
        """Start, on this thread at ``now``, the oldest background refresh still queued, if any.

        A flight enters :attr:`background` once queued (:meth:`enqueue`) and leaves it as it
        starts (:meth:`take`, or a reader taking it over in :meth:`claim`) or is forgotten
        (:meth:`forget`); one found there that cannot start is dropped from it, so it never holds
        up the refreshes queued after it.
        """
        while self.background:
            oldest = next(iter(self.background))
            del self.background[oldest]
            taken = self.take((oldest,), now)
            if taken:
                return taken
        return []

    def requeue(self, flights: list[Flight]) -> list[Flight]:
        """Put running ``flights`` back in the queue, for readers to take over; return those dropped meanwhile."""
        dropped = [flight for flight in flights if self.get(flight.key) is not flight]
        for flight in flights:
            if flight not in dropped:
                flight.state, flight.requeued = QUEUED, True
        return dropped

    def clear_after_fork(self, entries: dict[CacheKey, Entry]) -> None:
        """In a forked child: drop every flight (their threads are not in the child).

        A background refresh queued or running at the fork comes to nothing there: its entry's
        refresh point is restored (:meth:`Flight.restore_due`).
        """
        for flight in self.values():
            flight.restore_due(entries)
        self.clear()
        self.background.clear()

    def forget(self, flight: Flight, entries: dict[CacheKey, Entry]) -> None:
        """Remove ``flight``; a queued one is done (nobody waits on it), its entry's refresh point restored.

        A requeued one (:meth:`requeue`) may have readers waiting since it ran in the batch: it
        stays queued, out of the table, and the batch still runs it for them (:meth:`take`).
        """
        if self.get(flight.key) is flight:
            del self[flight.key]
        self.background.pop(flight, None)
        if flight.state is QUEUED and not flight.requeued:
            flight.state = DONE
            flight.restore_due(entries)


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
