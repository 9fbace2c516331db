"""The store: the one owner of a cache's entries, its fetches in flight, and their lock.

A key (a secret plus a staging label or version id) moves through these states::

    absent --claim--> flight RUNNING --complete--> entry (value and/or remembered failure)
    entry --refresh-ahead / stale-while-revalidate--> flight QUEUED --worker or reader starts it--> RUNNING
    entry or flight --drop (invalidate, close)--> absent (a running flight is orphaned: it still
                                                          answers its waiters but installs nothing)
    flight RUNNING --first attempt fails transiently--> faltered (still RUNNING: retries go on)

Invariants, kept by every method of :class:`Store`; no code outside this module takes its lock
(the runner, :mod:`secretcache._run`, and prefetch, :mod:`secretcache._batch`, call its methods):

1. Under the lock runs only dict and attribute work: no logging, no listener, no thread start,
   no I/O, no user code (a log handler or a listener may call back into the cache). What a
   change has to announce is collected in an :class:`Effects` and run after the lock is
   released: counters first, then the waiters are woken, then log lines, then listeners.
2. Every claimed flight completes on every path: success, typed failure, any other exception
   or ``BaseException`` (``complete`` runs whatever the fetch raised), a dead worker or a closed
   cache (a QUEUED flight is run by the first reader that needs it, so nothing waits on a queue),
   and a cancelled asyncio task (the claim and the start of its fetch thread happen together,
   with no ``await`` between them).
3. No reader waits longer than :attr:`Store.wait_bound` (the retry deadline plus one attempt's
   timeouts); a thread never waits for a fetch it is itself running further up its stack. A
   reader holding a value it may serve (past its TTL, within ``max_stale``) waits only until its
   fetch *settles*: completes, or falters (an attempt failed transiently); it then gets that
   value at once while the retries go on behind it. Such a reader never runs the fetch itself:
   it is started on a thread of its own, so its retries cannot hold the reader.
4. Counters change after the state they count is visible.
5. The hot path (:meth:`Store.hit`, inlined in the getters of :class:`SecretCache`) reads
   ``current`` (the entries of ``entries`` that read AWSCURRENT, by bare secret id) without the
   lock; an entry's value and deadlines never change once installed, except ``refresh_at``,
   moved under the lock when a background refresh is queued, and all deadlines when the entry
   is retired (below).
6. Monotonic reads. For one secret and staging label, however spelled (name, ARN, partial ARN),
   once the cache has returned version N, it never afterwards returns a version that Secrets
   Manager created before N: not from another spelling, not from a replica Region, not from a
   response that arrives late, not after ``invalidate()`` orphans a fetch. The only way back is a
   deliberate rollback (the label moved to an older version), which the cache accepts once a
   fetch from the primary Region that started after the newer value was installed confirms it.
   Reads by version id are unaffected.

   Invalidation is linearizable: after ``invalidate()`` returns, no read returns a value fetched
   before it was called (an orphaned fetch installs nothing). How the table keeps monotonic reads,
   across invalidation too (marks, admission, retiring): :mod:`secretcache._table`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from secretcache._entry import Entry
from secretcache._errors import SecretCacheError
from secretcache._flight import DONE, Claim, Effects, Flight, Flights, Serving, raise_copy
from secretcache._keys import CacheKey, aliases
from secretcache._observe import FOREGROUND
from secretcache._table import Table
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from secretcache._fetcher import Fetcher
    from secretcache._observe import Fetch, Observer, Refresh
    from secretcache._policy import RetryPolicy, Timing
    from secretcache._stats import Counters
    from secretcache._value import ChangeListener
    from secretcache._worker import BackgroundPool

__all__ = ["Store"]

AGAIN_LIMIT = 2
"""Most times one flight fetches again because its answer was older than a version served meanwhile."""


class Store:
    """Entries by key, flights in flight, version history and listeners, behind one lock.

    Thread-safe; see the module docstring for the invariants every method keeps.
    """

    def __init__(
        self,
        *,
        max_size: int,
        fetcher: Fetcher,
        timing: Timing,
        retry: RetryPolicy,
        counters: Counters,
        clock: Callable[[], float],
        pool: BackgroundPool,
    ) -> None:
        self._lock = threading.Lock()
        self._table = Table(max_size, timing, retry)
        self.entries = self._table.entries
        """Entries by key; changed only here, under the lock."""
        self.current = self._table.current
        """The hot index (AWSCURRENT entries by bare secret id): read without the lock by the hot
        path; changed only here, under the lock, always with ``entries``."""
        self._flights = Flights()
        self.max_size = max_size
        self._timing = timing
        self.counters = counters
        self._clock = clock
        self._pool = pool
        self._listeners: tuple[ChangeListener, ...] = ()
        self.closed = False
        self.wait_bound = retry.deadline + fetcher.attempt_seconds()
        """Longest a reader waits for another thread's fetch, in seconds: the retry deadline, plus
        one attempt's timeouts in the primary Region and in each replica Region (each client's own)."""
        self.observer: Observer | None = None
        """Called around fetches when instrumented (:mod:`secretcache._observe`); never on a hit."""
        self.serving = Serving(clock, counters)
        """What a reader that waited is given (:class:`secretcache._flight.Serving`)."""

    def hit(self, secret_id: str) -> Entry | None:
        """The lock-free fast path of AWSCURRENT: the entry if it holds a value before its refresh point.

        :class:`SecretCache`'s getters inline this very check (a call would cost a fifth of a hit):
        ``tests/test_hit_copies.py`` checks that the copies are one statement made of its parts.
        """
        try:
            entry = self.current[secret_id]
        except (KeyError, TypeError):
            return None
        if entry.refresh_at > self._clock():  # never true of an entry without a value
            entry.hits += 1
            return entry
        return None

    # -- claim ---------------------------------------------------------------------------------

    def begin(self, key: CacheKey, force: bool, ttl: float | None, *, runs_here: bool) -> Entry | Claim:
        """Serve ``key`` without waiting if possible; else join its flight, or claim one.

        A QUEUED flight (a background refresh not started yet) is taken over: the caller runs
        it, so no reader waits behind a queue. ``runs_here`` says the calling thread will run a
        claimed fetch itself (else the caller starts a thread for it right away). A read served
        at once that queued a background refresh gets a claim with ``served`` set: the caller
        hands the refresh to the pool (:meth:`Runner.submit`) and returns ``served``.

        Raises:
            RuntimeError: The cache is closed.
            SecretCacheError: The remembered error of a key backing off with nothing to serve.
        """
        now = self._clock()
        served: Entry | None = None
        error: SecretCacheError | None = None
        claim: Claim | None = None
        due = stale = False
        with self._lock:
            if self.closed:
                raise RuntimeError("this SecretCache is closed")
            entry = self.entries.get(key)
            if entry is not None and not force:
                served, due, error, stale = self._serve(entry, now)
            if error is None and (served is None or due):
                ttl = self._ttl(key, entry, ttl)
                refresh: Refresh = "background" if served is not None else "forced" if force else FOREGROUND
                claim = self._flights.claim(key, entry, ttl, refresh, runs_here, now)
        if stale:
            self.counters.add("stale_served")
        if served is not None:
            if claim is None:
                return served
            observer = self.observer
            origin = None if observer is None else observer.origin()
            with self._lock:  # only now may a refresh thread take it (the oldest queued): its origin is noted
                claim.flight.origin = origin
                self._flights.enqueue(claim.flight)
            return claim
        if error is not None:
            self.counters.add("read_errors")
            raise_copy(error)
        assert claim is not None
        self.counters.add("misses")
        return claim

    def _ttl(self, key: CacheKey, entry: Entry | None, ttl: float | None) -> float | None:
        """Locked. The TTL a fetch's answer will live: the read's, the key's (its entry's), or the configured one."""
        if key.version_id is not None:
            return None  # a lookup by version id is immutable: cached until evicted, never refetched for age
        if ttl is None and entry is not None:
            ttl = entry.ttl
        if ttl is not None:
            return ttl
        overrides, default = self._timing.overrides, self._timing.ttl
        return next((seconds for prefix, seconds in overrides if key.secret_id.startswith(prefix)), default)

    def _serve(self, entry: Entry, now: float) -> tuple[Entry | None, bool, SecretCacheError | None, bool]:
        """Locked. What to do with a cached entry.

        Returns the entry to serve, whether a background refresh of it is due, an error to
        raise, and whether the value served is past its TTL.
        """
        timing = self._timing
        if entry.is_fresh(now):
            entry.hits += 1
            due = timing.refresh_ahead is not None and now >= entry.refresh_at and not entry.backing_off(now)
            return entry, due, None, False
        if entry.backing_off(now):  # a recent fetch failed: the last good value or its error
            if entry.servable(now):
                return entry, False, None, True
            assert entry.failure is not None
            return None, False, entry.failure.error, False
        if entry.servable(now) and now < entry.fresh_until + timing.stale_while_revalidate:
            return entry, True, None, True
        return None, False, None, False

    def when_done(self, flight: Flight, callback: Callable[[], None], *, settled: bool = False) -> None:
        """Call ``callback()`` once ``flight`` completes (or, if ``settled``, falters): now, or later on its thread."""
        with self._lock:
            if flight.state is not DONE and not (settled and flight.faltered):
                (flight.settle_callbacks if settled else flight.callbacks).append(callback)
                return
        callback()

    # -- complete ------------------------------------------------------------------------------

    def complete(
        self,
        flight: Flight,
        answer: SecretValue | SecretCacheError | None,
        unexpected: BaseException | None,
        effects: Effects | None = None,
        *,
        fetch: Fetch | None = None,
    ) -> bool:
        """Complete ``flight`` with its fetch's answer: install it unless the flight was dropped, count, wake.

        ``answer`` is the value fetched or the typed error of the fetch (``None`` with an
        ``unexpected`` exception, or with neither when no fetch was made: a refresh the pool
        refused ends with nothing, and its entry's refresh point is restored). An answer older
        than a version of its label served since the fetch started is not served (invariant 6;
        :meth:`Table.settle`): the flight may be left running, ``False`` returned, for the caller
        to fetch again. If the reader that handed this fetch off still waits and it never
        faltered, its logs and changes are left to that reader (:meth:`Runner.finish`); else they
        go to ``effects`` (announced here when ``None``).

        Returns:
            Whether the flight completed.
        """
        own = effects is None
        effects = Effects() if effects is None else effects
        again = False
        now = self._clock()
        try:
            with self._lock:
                result, again = self._settle(flight, answer, fetch, now, effects)
                if again:
                    return False
                mine = self._flights.get(flight.key) is flight
                if mine:
                    del self._flights[flight.key]
                value = result.value if result is not None and result.failure is None else None
                if value is not None:  # a new version retires the older ones, the flights' spares too
                    spares = (
                        (other.key, other.previous) for other in itertools.chain((flight,), self._flights.values())
                    )
                    seq, keep = self._flights.tick(), flight.key if mine else None
                    self._table.advance(flight.key, value, seq, effects, keep=keep, spares=spares)
                if mine and result is not None:
                    self._table.install(flight.key, result, effects)
                elif mine:  # a refresh that ended with nothing: a later read queues it again
                    flight.restore_due(self.entries)
                if result is not None and result.failure is not None:
                    effects.count("errors")
                effects.apply_counts(self.counters)  # before DONE: a reader that sees it done sees its counts
                flight.entry, flight.error, flight.state = result, unexpected, DONE
                if flight.adopter is not None and not flight.faltered:  # its reader announces (Runner.finish)
                    flight.announce = effects.detach()
        finally:
            if not again:
                flight.wake(effects)
            if own:
                effects.announce(self._listeners)
        return True

    def _settle(
        self,
        flight: Flight,
        answer: SecretValue | SecretCacheError | None,
        fetch: Fetch | None,
        now: float,
        effects: Effects,
    ) -> tuple[Entry | None, bool]:
        """Locked. The entry an answer makes (:meth:`Table.settle`), or ``(None, True)``: fetch again (invariant 6)."""
        if answer is None:
            return None, False
        entry, line = self._table.settle(flight, answer, fetch, now, again=flight.rounds < AGAIN_LIMIT)
        if entry is None:
            flight.rounds, flight.started, flight.began = flight.rounds + 1, self._flights.tick(), now
            return None, True
        if line is not None:
            effects.logs.append(line)
        return entry, False

    # -- for the runner (:mod:`secretcache._run`) and batches (:mod:`secretcache._batch`) --------

    def refused(self, flight: Flight, value: SecretValue, fetch: Fetch) -> SecretCacheError | None:
        """The error ``value`` (``fetch``'s answer) would complete ``flight`` with, being older than what was served.

        Asked by the runner while the fetch is still observed, so its span and duration record
        the failure that :meth:`complete` then counts (invariant 6; :meth:`Table.refused`).
        ``None`` when the value is admitted, or answered otherwise (a fresh newer entry, or a
        new round of fetching from the primary Region).
        """
        now = self._clock()
        with self._lock:
            return self._table.refused(flight, value, fetch, now, again=flight.rounds < AGAIN_LIMIT)

    def own(self, flight: Flight) -> None:
        """The calling thread runs ``flight``'s fetch (started on a thread of its own)."""
        with self._lock:
            flight.owner = threading.get_ident()

    def release(self, flight: Flight) -> None:
        """For the reader that handed its fetch off, as it stops waiting: announce what the fetch left it."""
        with self._lock:
            flight.adopter = None
            effects, flight.announce = flight.announce, None
        if effects is not None:
            effects.announce(self._listeners)

    def falter(self, flights: tuple[Flight, ...]) -> tuple[list[Flight], list[Callable[[], None]]]:
        """An attempt failed transiently: mark ``flights`` faltered; those newly so, and their settle wake-ups."""
        with self._lock:
            return self._flights.falter(flights)

    def queue_all(self, secret_ids: Iterable[str]) -> tuple[list[Flight], dict[str, SecretCacheError]]:
        """Queue a prefetch of AWSCURRENT of each secret that is not fresh, fetching or backing off.

        Returns the flights queued (a reader may take one over until :meth:`take` starts it), and
        the remembered error of each secret backing off with no value to serve.

        Raises:
            RuntimeError: The cache is closed.
        """
        now = self._clock()
        failures: dict[str, SecretCacheError] = {}
        queued: list[Flight] = []
        with self._lock:
            if self.closed:
                raise RuntimeError("this SecretCache is closed")
            for secret_id in secret_ids:
                key = CacheKey(secret_id)
                entry = self.entries.get(key)
                if key in self._flights or (entry is not None and entry.is_fresh(now)):
                    continue
                if entry is not None and entry.backing_off(now):
                    if not entry.servable(now) and entry.failure is not None:
                        failures[secret_id] = entry.failure.error
                    continue
                claim = self._flights.claim(key, entry, self._ttl(key, entry, None), "prefetch", False, now)
                if claim is not None:
                    queued.append(claim.flight)
        return queued, failures

    def take(self, flights: Iterable[Flight] | None = None) -> list[Flight]:
        """Start, on this thread, the queued ``flights`` that nobody took over or dropped meanwhile.

        ``None``: the oldest background refresh still queued, if any (:meth:`Flights.take_next`).
        """
        now = self._clock()
        with self._lock:
            return self._flights.take(flights, now) if flights is not None else self._flights.take_next(now)

    def requeue(self, flights: list[Flight]) -> list[Flight]:
        """Put running ``flights`` back in the queue, for readers to take over; return those dropped meanwhile."""
        with self._lock:
            return self._flights.requeue(flights)

    def announce(self, effects: Effects) -> None:
        """Outside the lock: emit the log lines of ``effects``, then call the listeners with its changes."""
        effects.announce(self._listeners)

    # -- control -------------------------------------------------------------------------------

    def drop(self, secret_id: str | None) -> list[CacheKey]:
        """Drop every entry of a secret (any spelling), or all; orphan its flights.

        An orphaned running flight still wakes the readers waiting on it but installs nothing,
        and later readers start a new one: this makes invalidation linearizable.

        Returns:
            The keys of the entries dropped.
        """
        targets = None if secret_id is None else aliases(secret_id)
        with self._lock:
            matched = [key for key in self.entries if targets is None or self._table.matches(key, targets)]
            flying = [key for key in self._flights if targets is None or self._table.matches(key, targets)]
            for key in matched:
                self._table.pop(key)
            for key in flying:
                self._flights.forget(self._flights[key], self.entries)
        return matched

    def seed(self, key: CacheKey, entry: Entry) -> None:
        """Install ``entry`` as if fetched (for :mod:`secretcache.testing`)."""
        effects = Effects()
        with self._lock:
            if entry.value is not None:
                self._table.advance(key, entry.value, self._flights.tick(), effects, keep=key)
            self._table.install(key, entry, effects)
        effects.apply_counts(self.counters)
        effects.announce(self._listeners)

    def newest(self, key: CacheKey, arn: str) -> tuple[str | None, Entry | None]:
        """The newest version served of ``key``'s label (secret ``arn``), if any, and an entry holding it."""
        with self._lock:
            return self._table.newest(key, arn)

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Add a change listener; return the function that removes it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(item for item in self._listeners if item is not listener)

        return unsubscribe

    def close(self) -> None:
        """Refuse reads from now on, drop every entry and flight, and stop the refresh pool."""
        with self._lock:
            self.closed = True
            self._table.clear()
            for flight in list(self._flights.values()):
                self._flights.forget(flight, self.entries)
        self._pool.close()

    def hits_size_flying(self) -> tuple[int, int, int]:
        """Hits so far (replaced and dropped entries included), entries held, fetches in flight."""
        with self._lock:
            return self._table.hits(), len(self.entries), len(self._flights)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and no flights (their threads are not in the child).

        Entries are kept: a child of a warmed parent (gunicorn ``--preload``) starts warm; one
        whose background refresh was in flight is due for it again (:meth:`Flights.clear_after_fork`).
        """
        self._lock = threading.Lock()
        self._flights.clear_after_fork(self.entries)
