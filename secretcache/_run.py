"""Where a claimed fetch runs, and how a blocking read waits for it: the store's side outside its lock.

The store (:mod:`secretcache._store`) decides under its lock who fetches what. This module does
what blocks or starts threads: a read runs its fetch itself, or hands it to a thread of its own
and waits; a background refresh runs on the refresh pool; an asyncio read's fetch runs on a
daemon thread. It reaches the store only through its methods, each of which takes the store's
lock and keeps its invariants; it never takes that lock itself.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from secretcache._entry import Entry
from secretcache._errors import SecretCacheError
from secretcache._flight import Effects
from secretcache._keys import DEFAULT_STAGE
from secretcache._logs import Facts, facts
from secretcache._observe import Fetch
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from secretcache._fetcher import Fetcher
    from secretcache._flight import Claim, Flight, Serving
    from secretcache._store import Store
    from secretcache._worker import BackgroundPool

__all__ = ["Runner"]

logger = logging.getLogger("secretcache")


class Runner:
    """Runs the fetches of one store's flights, on the calling thread, a new thread or the pool.

    Thread-safe: it keeps no state of its own beyond what it was built with.
    """

    def __init__(self, store: Store, fetcher: Fetcher, pool: BackgroundPool) -> None:
        self._store = store
        self._fetcher = fetcher
        self._pool = pool
        self._serving: Serving = store.serving

    def finish(self, step: Entry | Claim) -> Entry:
        """Finish a blocking read the store has begun (:meth:`Store.begin` with ``runs_here``).

        An entry is the answer. A read served at once that queued a background refresh hands it
        to the pool; any other claim is run, or waited for (:meth:`_wait`).
        """
        if isinstance(step, Entry):
            return step
        if step.served is None:
            return self._wait(step)
        self.submit(step.flight)
        return step.served

    def _wait(self, step: Claim) -> Entry:
        """Run the claimed fetch, or wait for it, and serve what it gives.

        A reader with a value it may serve stale (``Claim.spare``) has its fetch run on a thread
        of its own and waits only until the fetch settles (invariant 3). It adopts the fetch's
        announcements: if the fetch completes without faltering while it waits, its log lines and
        listeners run on the reader's thread before the read returns, as when it fetches itself.

        The serving (:class:`Serving`) counts the read by what it gives; a read cut off before
        that (an interrupt out of its own fetch or its wait) is counted a read error here, as its
        fellow readers of an interrupted fetch are, so every read that waited has one result.
        """
        flight, spare = step.flight, step.spare
        adopted = step.owner and spare is not None
        bound = self._store.wait_bound
        deadline = time.monotonic() + bound
        unstarted: BaseException | None = None
        serving = False  # the read is in the serving's hands, which counts it
        try:
            if adopted and (unstarted := self._spawn(flight)) is not None:
                if not isinstance(unstarted, RuntimeError):  # interrupted, out of memory: no fetch will run
                    raise unstarted  # (its flight is ended with no answer as the reader lets go of it, below)
                unstarted, spare = None, None  # no thread to be had: the reader runs its fetch itself (it owns it)
            if step.owner and spare is None:
                self.run(flight)
                serving = True
                return self._serving.completed(flight)
            serving = not step.owner and flight.owner == threading.get_ident()
            if serving:
                return self._serving.give_up(flight, "it is being fetched further up this thread's stack")
            if spare is not None:
                serving = not flight.wait_settled(bound)
                if serving:
                    return self._serving.give_up(flight, f"its fetch took longer than {bound:g} s")
                served = None if flight.done else self._serving.spare(spare)
                if served is not None:
                    return served
            serving = not flight.wait(max(0.0, deadline - time.monotonic()))
            if serving:
                return self._serving.give_up(flight, f"its fetch took longer than {bound:g} s")
            serving = True
            return self._serving.completed(flight)
        except BaseException:
            if not serving:
                self._store.counters.add("read_errors")
            raise
        finally:
            if adopted:  # announce what the fetch left this reader
                if unstarted is not None:  # its thread never started it, so nobody will: end it (invariant 2)
                    self._store.complete(flight, None, None)
                self._store.release(flight)

    def start(self, flight: Flight) -> None:
        """Run a claimed fetch on a new daemon thread, for a reader that must not block (asyncio).

        If no thread is to be had, the error is raised here and the flight completes with no
        answer: a reader that joined it meanwhile (its own thread is fine) gets a
        :class:`SecretUnavailableError` of its own, never the ``RuntimeError`` of a thread it did
        not start.
        """
        failed = self._spawn(flight)
        if failed is not None:
            self._store.complete(flight, None, None)
            raise failed

    def _spawn(self, flight: Flight) -> BaseException | None:
        """Start the daemon thread that owns ``flight``'s fetch and runs it.

        The thread runs in a copy of the caller's context (as ``asyncio.to_thread`` does), so
        the fetch belongs to the caller's trace.

        Returns:
            ``None`` once the thread has the fetch; what ``Thread.start`` raised if the thread
            will never run it (the flight is still the caller's to run or complete).

        Raises:
            BaseException: What ``Thread.start`` raised after the thread got under way (an
                interrupt while it waited for the thread): that thread runs the fetch.
        """
        token = threading.Lock()  # taken once: by the thread, to run the fetch, or by a failed start, to keep it
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(self._owned, flight, token), name="secretcache-fetch", daemon=True
        )
        try:
            thread.start()
        except BaseException as err:
            if token.acquire(blocking=False):
                return err
            raise
        return None

    def _owned(self, flight: Flight, token: threading.Lock) -> None:
        """On the thread started for ``flight``: own its fetch, then run it (unless its start was given up)."""
        if token.acquire(blocking=False):
            self._store.own(flight)
            self.run(flight)

    def submit(self, flight: Flight) -> None:
        """Have the pool run a queued background refresh; if it refuses (full, closed), end ``flight`` (just queued).

        A pool thread runs the oldest refresh still queued (:meth:`_run_next`): readers may have
        taken some over meanwhile, invalidation dropped some. A refused ``flight`` is ended with
        no answer unless it started meanwhile: its entry's refresh point is restored, so a later
        read queues it again.
        """
        if self._pool.submit(self._run_next):
            self._store.counters.add("background_refreshes")
            return
        for taken in self._store.take([flight]):  # unless it started meanwhile
            self._store.complete(taken, None, None)

    def defer(self, job: Callable[[], None]) -> bool:
        """Run ``job`` on a refresh thread (for work a reader must not do itself); whether the pool took it."""
        return self._pool.submit(job)

    def _run_next(self) -> None:
        """On a pool thread: run the oldest queued background refresh, if readers did not take them all over."""
        for flight in self._store.take():
            self.run(flight)

    def run(self, flight: Flight, effects: Effects | None = None) -> None:
        """Fetch ``flight``'s key now, on the thread that owns it, and complete it, whatever happens.

        Unexpected exceptions reach every waiter; a ``BaseException`` that is not an
        ``Exception`` is re-raised here too. An answer older than a version served meanwhile is
        fetched again (invariant 6). With ``effects``, logs and listeners are left to the caller
        (a batch announces once every flight of it is complete).
        """
        store = self._store
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
                fetch.falter = functools.partial(self.falter, (flight,))
                answer: SecretValue | SecretCacheError | None = None
                unexpected: BaseException | None = None
                answered = False  # the fetcher returned a value (which may yet be refused as older)
                try:
                    with self.observing(fetch):
                        answer = self._fetcher.fetch_value(secret_id, key.version_stage, key.version_id, fetch)
                        answered = True
                        refused = store.refused(flight, answer, fetch)
                        if refused is not None:  # older than what was served: the fetch fails, as observed
                            raise refused
                except SecretCacheError as err:
                    answer = err
                except BaseException as err:  # not a Secrets Manager failure: hand it to every waiter
                    unexpected = err
                    if isinstance(err, Exception):  # a bug: say so even if nobody waits (a background refresh)
                        fields = Facts(fetch.operation, secret_name=secret_id, attempt=fetch.attempts, error=err)
                        effects.log(
                            logging.ERROR, "fetching secret %r raised %s", secret_id, type(err).__name__, facts=fields
                        )
                if fetch.replica is not None and answered:  # a replica answered, even with a value refused
                    effects.count("failovers")
                if store.complete(flight, answer, unexpected, effects, fetch=fetch):
                    if unexpected is not None and not isinstance(unexpected, Exception):
                        raise unexpected
                    return
        finally:
            if own:
                store.announce(effects)

    def falter(self, flights: tuple[Flight, ...]) -> None:
        """On the fetching thread: an attempt failed transiently; release the readers waiting to settle."""
        faltered, callbacks = self._store.falter(flights)
        for flight in faltered:
            flight.wake_settled()
        for callback in callbacks:
            try:
                callback()
            except Exception as err:
                logger.error("waking a reader failed: %s", type(err).__name__, extra=facts("wake", error=err))

    def observing(self, fetch: Fetch) -> AbstractContextManager[object]:
        """The observer's context around ``fetch``, or nothing when not instrumented."""
        observer = self._store.observer
        return nullcontext() if observer is None else observer.observe(fetch)
