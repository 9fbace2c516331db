"""The store: the one owner of a cache's entries, its fetches in flight, and their lock.

A key (a secret plus a staging label or version id) moves through these states::

    absent --claim--> flight RUNNING --complete--> entry (value and/or remembered failure)
    entry --refresh-ahead / stale-while-revalidate--> flight QUEUED --worker or reader starts it--> RUNNING
    entry or flight --drop (invalidate, close)--> absent (a running flight is orphaned: it still
                                                          answers its waiters but installs nothing)
    flight RUNNING --first attempt fails transiently--> faltered (still RUNNING: retries go on)

Invariants, kept by every method of :class:`Store`; no code outside this module takes its lock:

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

   How: the table keeps, per ARN and label, a *mark*: the newest version served and the
   sequence number at which it was first served. Every fetch notes the sequence number when it
   starts. An answer is admitted if no version was served yet, or it is the marked version or
   one created after it (but not one the label was rolled back from), or it came from the
   primary Region and its fetch started after the mark was raised (the label's state then, a
   rollback included). An admitted answer raises the mark; a new version retires every
   entry of the label holding another one (under any spelling, and the entries flights keep to
   serve stale), and is reported to ``on_change`` once. An answer not admitted is stale
   information, never news: from the primary, the flight is answered with the newer value an
   entry of the label holds fresh (with that entry's deadlines), or, when none does, fetches again
   (its new fetch starts after the mark, so its answer is admitted unless the mark moved again
   meanwhile; after ``AGAIN_LIMIT`` such rounds the fetch fails); from a replica, the fetch
   counts as failed (the primary is failing), so the value served so far stays served.

   Monotonic reads and linearizable invalidation (after ``invalidate()`` returns, no read
   returns a value fetched before it was called) fit together as follows: an orphaned fetch
   installs nothing, so no later read is served its answer from the table; its answer goes only
   to the readers that joined it before ``invalidate()`` returned (reads concurrent with it), and
   it raises the mark. If that answer is newer than what a read started after the
   ``invalidate()`` installed meanwhile, the older entry is retired and the next read fetches
   again: the newer result is never thrown away in favour of the older one, and it is never
   installed either.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from secretcache._entry import Entry, failed_entry, fresh_entry
from secretcache._errors import SecretCacheError, SecretNotFoundError, SecretUnavailableError, fresh_copy
from secretcache._fetcher import BATCH_SIZE, BatchFailedError, BatchRefusedError
from secretcache._flight import DONE, QUEUED, RUNNING, Claim, Effects, Flight
from secretcache._keys import DEFAULT_STAGE, CacheKey, aliases
from secretcache._logs import facts
from secretcache._observe import FOREGROUND, Fetch
from secretcache._stats import Counters
from secretcache._table import Table
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from secretcache._fetcher import Fetcher
    from secretcache._observe import Observer, Refresh
    from secretcache._policy import RetryPolicy, Timing
    from secretcache._value import ChangeListener
    from secretcache._worker import BackgroundPool

__all__ = ["Store", "raise_copy"]

logger = logging.getLogger("secretcache")

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
        self._table = Table(max_size)
        self.entries = self._table.entries
        """Entries by key; changed only here, under the lock."""
        self.current = self._table.current
        """The hot index (AWSCURRENT entries by bare secret id): read without the lock by the hot
        path; changed only here, under the lock, always with ``entries``."""
        self._flights: dict[CacheKey, Flight] = {}
        self.max_size = max_size
        self._fetcher = fetcher
        self._timing = timing
        self._retry = retry
        self.counters = counters
        self._clock = clock
        self._pool = pool
        self._random = random.Random()  # noqa: S311 - spreads refresh times, not a secret
        self._listeners: tuple[ChangeListener, ...] = ()
        self._batch_refusals = 0
        self._batch_retry_at = float("-inf")
        self._seq = 0  # orders fetch starts and marks (monotonic reads)
        self.closed = False
        self.wait_bound = retry.deadline + fetcher.attempt_seconds()
        """Longest a reader waits for another thread's fetch, in seconds: the retry deadline, plus
        one attempt's timeouts in the primary Region and in each replica Region (each client's own)."""
        self.observer: Observer | None = None
        """Called around fetches when instrumented (:mod:`secretcache._observe`); never on a hit."""

    # -- reads ---------------------------------------------------------------------------------

    def hit(self, secret_id: str) -> Entry | None:
        """The lock-free fast path of AWSCURRENT: the entry if it holds a value before its refresh point.

        :class:`SecretCache`'s getters inline this very check (a call would cost a fifth of a
        hit); a change here must be made there too: ``tests/test_hit_copies.py`` checks that the
        four copies are one statement and that its parts are this method's.
        """
        try:
            entry = self.current[secret_id]
        except (KeyError, TypeError):
            return None
        if entry.refresh_at > self._clock():  # never true of an entry without a value
            entry.hits += 1
            return entry
        return None

    def read(self, key: CacheKey, force: bool, ttl: float | None) -> Entry:
        """The slow path of a read: serve without I/O if possible, else join or run a fetch.

        A reader with a value it may serve stale (``Claim.spare``) has its fetch run on a thread
        of its own and waits only until the fetch settles (invariant 3).
        """
        step = self.begin(key, force, ttl, runs_here=True)
        if isinstance(step, Entry):
            return step
        flight, spare = step.flight, step.spare
        if step.owner and (spare is None or not self._hand_off(flight)):
            self.run(flight)
            return self.outcome(flight)
        if not step.owner and flight.owner == threading.get_ident():
            return self.give_up(flight, "it is being fetched further up this thread's stack")
        deadline = time.monotonic() + self.wait_bound
        try:
            if spare is not None:
                if not flight.wait_settled(self.wait_bound):
                    return self.give_up(flight, f"its fetch took longer than {self.wait_bound:g} s")
                served = None if flight.done else self.serve_spare(spare)
                if served is not None:
                    return served
            if not flight.wait(max(0.0, deadline - time.monotonic())):
                return self.give_up(flight, f"its fetch took longer than {self.wait_bound:g} s")
            return self.outcome(flight)
        finally:
            if step.owner:
                self._adopted(flight)

    def _hand_off(self, flight: Flight) -> bool:
        """Start a fetch claimed by a reader with a spare value on a thread of its own; whether it started.

        The reader adopts the fetch's announcements: if the fetch completes without faltering
        while the reader waits, its log lines and listeners run on the reader's thread before the
        read returns, as when a reader fetches itself.
        """
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(self.run, flight), name="secretcache-fetch", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the reader runs the fetch itself
            with self._lock:
                flight.adopter = None
            return False
        return True

    def _adopted(self, flight: Flight) -> None:
        """For the reader that handed its fetch off, as it returns: announce what the fetch left it."""
        with self._lock:
            flight.adopter = None
            effects, flight.announce = flight.announce, None
        if effects is not None:
            self._announce(effects)

    def begin(self, key: CacheKey, force: bool, ttl: float | None, *, runs_here: bool) -> Entry | Claim:
        """Serve ``key`` without waiting if possible; else join its flight, or claim one.

        A QUEUED flight (a background refresh not started yet) is taken over: the caller runs
        it, so no reader waits behind a queue. ``runs_here`` says the calling thread will run a
        claimed fetch itself (else the caller starts a thread for it right away).

        Raises:
            RuntimeError: The cache is closed.
            SecretCacheError: The remembered error of a key backing off with nothing to serve.
        """
        now = self._clock()
        queued: Flight | None = None
        error: SecretCacheError | None = None
        served: Entry | None = None
        claim: Claim | None = None
        stale = False
        with self._lock:
            if self.closed:
                raise RuntimeError("this SecretCache is closed")
            entry = self.entries.get(key)
            if entry is not None and not force:
                served, queued, error, stale = self._serve(key, entry, now)
            if served is None and error is None:
                claim = self._claim(key, entry, ttl, force, runs_here, now)
        if stale:
            self.counters.add("stale_served")
        if queued is not None:
            observer = self.observer
            if observer is not None:
                queued.origin = observer.origin()
            self._submit(queued)
        if error is not None:
            self.counters.add("read_errors")
            raise_copy(error)
        if served is not None:
            return served
        assert claim is not None
        self.counters.add("misses")
        return claim

    def _claim(
        self, key: CacheKey, entry: Entry | None, ttl: float | None, force: bool, runs_here: bool, now: float
    ) -> Claim:
        """Locked. Join the running fetch of ``key``, or take over its queued one, or start one.

        The claim's ``spare`` is the value the reader may serve if the fetch falters (past its
        TTL, within ``max_stale``; never for a forced read, which asks for Secrets Manager's
        answer). A reader with one never runs the fetch on its own thread.
        """
        spare = entry if not force and entry is not None and entry.servable(now) else None
        flight = self._flights.get(key)
        if flight is not None and flight.state is RUNNING:
            return Claim(flight, owner=False, spare=spare)
        refresh: Refresh = "forced" if force else FOREGROUND
        if flight is None:
            flight = self._flights[key] = Flight(key, entry, ttl, RUNNING, refresh)
        else:  # queued: run it now rather than wait for a worker
            flight.state = RUNNING
            flight.refresh = refresh
            flight.ttl = ttl if ttl is not None else flight.ttl
        flight.started = self._tick()
        flight.owner = threading.get_ident() if runs_here and spare is None else None
        flight.adopter = threading.get_ident() if runs_here and spare is not None else None
        return Claim(flight, owner=True, spare=spare)

    def _serve(
        self, key: CacheKey, entry: Entry, now: float
    ) -> tuple[Entry | None, Flight | None, SecretCacheError | None, bool]:
        """Locked. What to do with a cached entry.

        Returns the entry to serve, a refresh to queue, an error to raise, and whether the
        value served is past its TTL.
        """
        timing = self._timing
        if entry.is_fresh(now):
            entry.hits += 1
            due = timing.refresh_ahead is not None and now >= entry.refresh_at and not entry.backing_off(now)
            return entry, self._queue(key, entry) if due else None, None, False
        if entry.backing_off(now):  # a recent fetch failed: the last good value or its error
            if entry.servable(now):
                return entry, None, None, True
            assert entry.failure is not None
            return None, None, entry.failure.error, False
        if entry.servable(now) and now < entry.fresh_until + timing.stale_while_revalidate:
            return entry, self._queue(key, entry), None, True
        return None, None, None, False

    def _queue(self, key: CacheKey, entry: Entry) -> Flight | None:
        """Locked. Queue one background refresh of ``key`` unless a fetch of it exists."""
        if key in self._flights:
            return None
        flight = self._flights[key] = Flight(key, entry, None, QUEUED, "background")
        flight.due = entry.refresh_at
        entry.refresh_at = entry.fresh_until  # reads take the hot path again meanwhile
        return flight

    def _submit(self, flight: Flight) -> None:
        """Hand a queued refresh to the pool; if it refuses (full, closed), un-queue it."""
        if self._pool.submit(lambda: self._run_queued(flight)):
            self.counters.add("background_refreshes")
            return
        with self._lock:
            if flight.state is not QUEUED:
                return
            self._forget(flight)
        flight.wake()

    def _run_queued(self, flight: Flight) -> None:
        """On a pool thread: run a queued refresh unless a reader took it over or it was dropped."""
        with self._lock:
            if flight.state is not QUEUED:
                return
            flight.state = RUNNING
            flight.started = self._tick()
            flight.owner = threading.get_ident()
        self.run(flight)

    def start(self, flight: Flight) -> None:
        """Run a claimed fetch on a new daemon thread (for readers that must not block).

        The thread runs in a copy of the caller's context (as ``asyncio.to_thread`` does), so
        the fetch belongs to the caller's trace.
        """
        context = contextvars.copy_context()
        try:
            thread = threading.Thread(
                target=context.run, args=(self.run, flight), name="secretcache-fetch", daemon=True
            )
            thread.start()
        except BaseException as err:
            self.complete(flight, None, err)
            raise

    def when_done(self, flight: Flight, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once ``flight`` completes: now, or on the completing thread."""
        with self._lock:
            if flight.state is not DONE:
                flight.callbacks.append(callback)
                return
        callback()

    def when_settled(self, flight: Flight, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once ``flight`` completes or falters: now, or on the fetching thread."""
        with self._lock:
            if flight.state is not DONE and not flight.faltered:
                flight.settle_callbacks.append(callback)
                return
        callback()

    def serve_spare(self, spare: Entry) -> Entry | None:
        """For a reader whose fetch faltered: its value past the TTL (counted stale), if still servable.

        ``None`` when it no longer is (too old now, or retired because a newer version was
        served meanwhile): the reader then waits for the fetch to complete.
        """
        if not spare.servable(self._clock()):
            return None
        self.counters.add("stale_served")
        return spare

    def outcome(self, flight: Flight) -> Entry:
        """The entry a completed flight gives its readers: its value, a stale value, or its error."""
        entry = flight.entry
        if entry is None:
            self.counters.add("read_errors")
            error = flight.error
            if isinstance(error, Exception):
                raise error
            secret_id = flight.key.secret_id
            raise SecretUnavailableError(
                f"the fetch of secret {secret_id!r} this read waited for was interrupted", secret_id=secret_id
            ) from error
        if entry.failure is None:
            self.counters.add(Counters.MISSES_SERVED)
            return entry
        return self._serve_failed(entry, entry.failure.error)

    def give_up(self, flight: Flight, why: str) -> Entry:
        """For a read that will not wait for ``flight``: the value it had before, or an error."""
        previous = flight.previous
        secret_id = flight.key.secret_id
        error = SecretUnavailableError(f"secret {secret_id!r} is not available yet: {why}", secret_id=secret_id)
        if previous is None:
            self.counters.add("read_errors")
            raise error
        return self._serve_failed(previous, error)

    def _serve_failed(self, entry: Entry, error: SecretCacheError) -> Entry:
        """For a read that waited: the entry's value if still servable (stale past its TTL), else ``error``."""
        now = self._clock()
        if entry.servable(now):
            self.counters.add(Counters.MISSES_SERVED if entry.is_fresh(now) else "stale_served")
            return entry
        self.counters.add("read_errors")
        raise_copy(error)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- fetching ------------------------------------------------------------------------------

    def run(self, flight: Flight, effects: Effects | None = None) -> None:
        """Fetch ``flight``'s key now and complete it, whatever happens.

        Unexpected exceptions reach every waiter; a ``BaseException`` that is not an
        ``Exception`` is re-raised here too. An answer older than a version served meanwhile is
        fetched again (invariant 6). With ``effects``, logs and listeners are left to the caller
        (a batch announces once every flight of it is complete).
        """
        if flight.owner is None:  # claimed for a thread started by a reader that must not block
            with self._lock:
                flight.owner = threading.get_ident()
        own = effects is None
        effects = Effects() if effects is None else effects
        key = flight.key
        secret_id = key.secret_id
        try:
            while True:
                fetch = Fetch(
                    "GetSecretValue",
                    (secret_id,),
                    refresh=flight.refresh,
                    origin=flight.origin,
                    version_stage=key.version_stage or (DEFAULT_STAGE if key.version_id is None else None),
                    version_id=key.version_id,
                )
                fetch.falter = functools.partial(self._falter, (flight,))
                answer: SecretValue | SecretCacheError
                try:
                    try:
                        with self._observing(fetch):
                            answer = self._fetcher.get_secret_value(secret_id, key.version_stage, key.version_id, fetch)
                    except SecretCacheError as err:
                        answer = err
                except BaseException as err:  # not a Secrets Manager failure: hand it to every waiter
                    if isinstance(err, Exception):  # a bug: say so even if nobody waits (a background refresh)
                        extra = facts(fetch.operation, secret_name=secret_id, attempt=fetch.attempts, error=err)
                        effects.log(
                            logging.ERROR, "fetching secret %r raised %s", secret_id, type(err).__name__, extra=extra
                        )
                    self.complete(flight, None, err, effects)
                    if not isinstance(err, Exception):
                        raise
                    return
                if fetch.replica is not None and isinstance(answer, SecretValue):
                    effects.count("failovers")
                if self.complete(flight, answer, None, effects, fetch=fetch):
                    return
        finally:
            if own:
                self._announce(effects)

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
        ``unexpected`` exception). An answer older than a version of its label served since
        the fetch started is not served (invariant 6): from the primary Region the flight gets
        the newer value an entry holds fresh, or is left running and ``False`` returned, for the
        caller to fetch again; from a replica (``fetch.replica``) it is a failure of the fetch.
        If the reader that handed this fetch off still waits and it never faltered, its logs and
        changes are left to that reader (:meth:`read`); else they go to ``effects`` (announced
        here when ``None``).

        Returns:
            Whether the flight completed.
        """
        own = effects is None
        effects = Effects() if effects is None else effects
        callbacks: list[Callable[[], None]] = []
        again = False
        try:
            with self._lock:
                result, again = self._settle(flight, answer, fetch, effects)
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
                    self._table.advance(
                        flight.key, value, self._tick(), effects, keep=flight.key if mine else None, spares=spares
                    )
                if mine:
                    if result is not None:
                        self._table.install(flight.key, result, effects)
                    elif flight.due is not None and self.entries.get(flight.key) is flight.previous:
                        flight.previous.refresh_at = flight.due  # type: ignore[union-attr]  # a later read retries
                flight.entry, flight.error, flight.state = result, unexpected, DONE
                callbacks = [*flight.callbacks, *flight.settle_callbacks]
                flight.callbacks, flight.settle_callbacks = [], []
                if flight.adopter is not None and not flight.faltered:  # its reader announces (read())
                    flight.announce = effects.detach()
            if result is not None and result.failure is not None:
                effects.count("errors")
            effects.apply_counts(self.counters)
        finally:
            if not again:
                flight.wake()
                for callback in callbacks:  # asyncio wake-ups: a failing one must not cost the others
                    try:
                        callback()
                    except Exception as err:
                        secret_id = flight.key.secret_id
                        extra = facts("wake", secret_name=secret_id, error=err)
                        effects.log(logging.ERROR, "waking a reader of secret %r failed", secret_id, extra=extra)
            if own:
                self._announce(effects)
        return True

    def _settle(
        self, flight: Flight, answer: SecretValue | SecretCacheError | None, fetch: Fetch | None, effects: Effects
    ) -> tuple[Entry | None, bool]:
        """Locked. The entry an answer makes, or ``(None, True)`` when the flight must fetch again (invariant 6)."""
        if answer is None:
            return None, False
        replica = fetch is not None and fetch.replica is not None
        if isinstance(answer, SecretValue):
            admitted, holder = self._table.judge(flight.key, answer, flight.started, replica, self._clock)
            if admitted:
                return self._fresh(flight, answer, replica), False
            if not replica:  # the service answers, but a newer version was served meanwhile
                if holder is not None and holder.value is not None:
                    return Entry(
                        holder.value,
                        ttl=holder.ttl,
                        refresh_at=holder.refresh_at,
                        fresh_until=holder.fresh_until,
                        stale_until=holder.stale_until,
                    ), False
                if flight.rounds < AGAIN_LIMIT:
                    flight.rounds += 1
                    flight.started = self._tick()
                    return None, True
            answer = self._behind(flight, answer, fetch)
        return self._failed(flight, answer, effects, fetch), False

    def _behind(self, flight: Flight, value: SecretValue, fetch: Fetch | None) -> SecretUnavailableError:
        """The failure of a fetch whose answer is older than a version already served (not admitted)."""
        secret_id = flight.key.secret_id
        region = fetch.replica if fetch is not None else None
        where = f"replica Region {region} (read while the primary Region is failing)" if region else "Secrets Manager"
        return SecretUnavailableError(
            f"{where} answered version {value.version_id} of secret {secret_id!r}, older than a version "
            "this cache has already served; the older version is not served",
            secret_id=secret_id,
        )

    def _fresh(self, flight: Flight, value: SecretValue, replica: bool = False) -> Entry:
        """Locked. The entry for a fetched value, living the key's TTL (a replica's: ``replica_ttl`` at most)."""
        if flight.key.version_id is not None:  # a version id: immutable, never refetched for age
            return fresh_entry(value, ttl=None, lifetime=float("inf"), now=self._clock(), timing=self._timing)
        previous = flight.previous
        ttl = flight.ttl
        if ttl is None:
            ttl = previous.ttl if previous is not None and previous.ttl is not None else None
        if ttl is None:
            ttl = self._timing.ttl_for(flight.key.secret_id)
        # From a replica: back to the primary Region soon after it recovers (the key keeps its TTL).
        lives = min(ttl, self._timing.replica_ttl) if replica else ttl
        lifetime = lives * (1.0 - self._timing.ttl_jitter * self._random.random())
        return fresh_entry(value, ttl=ttl, lifetime=lifetime, now=self._clock(), timing=self._timing)

    def _failed(self, flight: Flight, err: SecretCacheError, effects: Effects, fetch: Fetch | None) -> Entry:
        """Locked. The entry to keep after a failed fetch (the value, for outages only, plus the failure).

        The value kept is the flight's previous one, or, if a newer version of the label was
        served meanwhile under another spelling, that one's entry (never an older version).
        """
        secret_id = flight.key.secret_id
        operation = fetch.operation if fetch is not None else "GetSecretValue"
        extra = facts(operation, secret_name=secret_id, attempt=fetch.attempts if fetch else None, error=err)
        previous = flight.previous
        held = previous.value if previous is not None else None
        if held is not None and not self._table.is_newest(flight.key, held):
            previous = self._table.holder(flight.key, held.arn) or previous
        entry, line = failed_entry(previous, err, secret_id, self._clock(), self._retry, extra)
        if line is not None:
            effects.logs.append(line)
        return entry

    def _falter(self, flights: tuple[Flight, ...]) -> None:
        """On the fetching thread: an attempt failed transiently; release the readers waiting to settle."""
        callbacks: list[Callable[[], None]] = []
        faltered = []
        with self._lock:
            for flight in flights:
                if flight.faltered or flight.state is DONE:
                    continue
                flight.faltered = True
                faltered.append(flight)
                callbacks += flight.settle_callbacks
                flight.settle_callbacks = []
        for flight in faltered:
            flight.wake_settled()
        for callback in callbacks:
            try:
                callback()
            except Exception as err:
                logger.error("waking a reader failed: %s", type(err).__name__, extra=facts("wake", error=err))

    def _tick(self) -> int:
        """Locked. The next sequence number (fetch starts and marks are ordered by it)."""
        self._seq += 1
        return self._seq

    # -- batches -------------------------------------------------------------------------------

    def prefetch(self, secret_ids: Iterable[str]) -> dict[str, SecretCacheError]:
        """Warm AWSCURRENT of many secrets, ``BATCH_SIZE`` per ``BatchGetSecretValue`` call.

        Claims every key that is not fresh, fetching or backing off as a QUEUED flight (a reader
        that needs one before its batch starts runs it instead), completes each as soon as its
        answer is known, and announces logs and changes only once all are complete, so a
        listener reading another secret of the batch never waits on this thread.
        """
        now = self._clock()
        failures: dict[str, SecretCacheError] = {}
        claimed: list[Flight] = []
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
                claimed.append(Flight(key, entry, None, QUEUED, "prefetch"))
                self._flights[key] = claimed[-1]
        effects = Effects()
        try:
            for start in range(0, len(claimed), BATCH_SIZE):
                self._prefetch_chunk(claimed[start : start + BATCH_SIZE], failures, effects)
        except BaseException as err:
            me = threading.get_ident()
            mine = [flight for flight in claimed if flight.owner == me and flight.state is RUNNING]
            for flight in mine + self._take(claimed):
                self.complete(flight, None, err, effects)
            raise
        finally:
            self._announce(effects)
        return failures

    def _take(self, flights: list[Flight]) -> list[Flight]:
        """Start the queued flights of a batch that nobody took over or dropped meanwhile."""
        taken = []
        with self._lock:
            for flight in flights:
                if flight.state is QUEUED and self._flights.get(flight.key) is flight:
                    flight.state = RUNNING
                    flight.started = self._tick()
                    flight.owner = threading.get_ident()
                    taken.append(flight)
        return taken

    def _prefetch_chunk(self, chunk: list[Flight], failures: dict[str, SecretCacheError], effects: Effects) -> None:
        if self._clock() < self._batch_retry_at:
            return self._one_by_one(chunk, failures, effects)
        flights = self._take(chunk)
        if not flights:
            return None
        ids = [flight.key.secret_id for flight in flights]
        fetch = Fetch("BatchGetSecretValue", tuple(ids), refresh="prefetch", version_stage=DEFAULT_STAGE)
        fetch.falter = functools.partial(self._falter, tuple(flights))
        try:
            with self._observing(fetch):
                values, errors = self._fetcher.batch_get_secret_values(ids, fetch)
        except BatchRefusedError as refusal:
            with self._lock:
                self._batch_refusals += 1
                self._batch_retry_at = self._clock() + self._retry.backoff_after(self._batch_refusals)
                # Back in the queue for the single fetches below, so a reader can take one over;
                # one dropped meanwhile is no longer in the table: it is fetched for its waiters.
                dropped = [flight for flight in flights if self._flights.get(flight.key) is not flight]
                for flight in flights:
                    if flight not in dropped:
                        flight.state = QUEUED
            extra = facts("BatchGetSecretValue", attempt=fetch.attempts, error=refusal)
            effects.log(
                logging.INFO, "BatchGetSecretValue refused (%s); fetching one secret at a time", refusal, extra=extra
            )
            for flight in dropped:
                self.run(flight, effects)
            return self._one_by_one([flight for flight in flights if flight not in dropped], failures, effects)
        except BatchFailedError as failed:  # the call as a whole failed: each secret gets its own error
            errors, values = failed.errors, []
        else:
            with self._lock:
                self._batch_refusals = 0
            if fetch.replica is not None:
                effects.count("failovers")
        for flight, secret_id in zip(flights, ids, strict=True):
            value = _match(secret_id, values)
            if value is not None:
                if not self.complete(flight, value, None, effects, fetch=fetch):
                    self._run_one(flight, failures, effects)  # older than a version served meanwhile
                continue
            error = errors.get(secret_id) or SecretNotFoundError(
                f"BatchGetSecretValue returned nothing for secret {secret_id!r}", secret_id=secret_id
            )
            failures[secret_id] = error
            self.complete(flight, error, None, effects, fetch=fetch)
        return None

    def _one_by_one(self, chunk: list[Flight], failures: dict[str, SecretCacheError], effects: Effects) -> None:
        for flight in chunk:
            if self._take([flight]):
                self._run_one(flight, failures, effects)

    def _run_one(self, flight: Flight, failures: dict[str, SecretCacheError], effects: Effects) -> None:
        """Fetch one secret of a batch with ``GetSecretValue``, noting its failure."""
        self.run(flight, effects)
        if flight.entry is not None and flight.entry.failure is not None:
            failures[flight.key.secret_id] = flight.entry.failure.error

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
                self._forget(self._flights[key])
        return matched

    def _forget(self, flight: Flight) -> None:
        """Locked. Remove a flight from the table; a queued one is done (nobody waits on it)."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if flight.state is QUEUED:
            flight.state = DONE
            if flight.due is not None and self.entries.get(flight.key) is flight.previous:
                flight.previous.refresh_at = flight.due  # type: ignore[union-attr]

    def seed(self, key: CacheKey, entry: Entry) -> None:
        """Install ``entry`` as if fetched (for :mod:`secretcache.testing`)."""
        effects = Effects()
        with self._lock:
            value = entry.value
            if value is not None:
                self._table.advance(key, value, self._tick(), effects, keep=key)
            self._table.install(key, entry, effects)
        effects.apply_counts(self.counters)
        self._announce(effects)

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
                self._forget(flight)
        self._pool.close()

    def hits_size_flying(self) -> tuple[int, int, int]:
        """Hits so far (replaced and dropped entries included), entries held, fetches in flight."""
        with self._lock:
            return self._table.hits(), len(self.entries), len(self._flights)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and no flights (their threads are not in the child).

        Entries are kept: a child of a warmed parent (gunicorn ``--preload``) starts warm.
        """
        self._lock = threading.Lock()
        self._flights.clear()

    # -- internals -----------------------------------------------------------------------------

    def _observing(self, fetch: Fetch) -> AbstractContextManager[object]:
        """The observer's context around ``fetch``, or nothing when not instrumented."""
        observer = self.observer
        return nullcontext() if observer is None else observer.observe(fetch)

    def _announce(self, effects: Effects) -> None:
        """Outside the lock: emit the log lines, then call the listeners with the changes."""
        for level, message, args, extra in effects.take_logs():
            logger.log(level, message, *args, extra=extra)
        for change in effects.take_changes():
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception as err:
                    extra = facts("on_change", secret_name=change.name, version_id=change.new_version_id, error=err)
                    logger.exception("on_change listener %r failed for secret %r", listener, change.name, extra=extra)


def raise_copy(error: SecretCacheError) -> None:
    """Raise a fresh copy of a remembered error, with its cause chained and no cycle left behind."""
    copy = fresh_copy(error)
    try:
        raise copy from error.__cause__
    finally:
        del copy  # else the frame and the traceback keep each other alive until a GC pass


def _match(secret_id: str, values: list[SecretValue]) -> SecretValue | None:
    """The value among ``values`` that ``secret_id`` (name, ARN or partial ARN) names."""
    wanted = aliases(secret_id)
    for value in values:
        if value.name in wanted or not aliases(value.arn).isdisjoint(wanted):
            return value
    return None
