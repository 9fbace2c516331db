"""Prefetch: warming many secrets with ``BatchGetSecretValue``, ``BATCH_SIZE`` per call.

A client of the store (:mod:`secretcache._store`) through its narrow batch interface: it claims
queued flights (:meth:`Store.queue_all`), starts the ones nobody took over (:meth:`Store.take`),
puts them back after a refusal (:meth:`Store.requeue`) and completes each
(:meth:`Store.complete`, or :meth:`Runner.run` for a single fetch). It never takes the store's
lock; each of those methods does, and keeps the store's invariants.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from secretcache._batch_answer import BATCH_SIZE, BatchFailedError, BatchRefusedError
from secretcache._errors import SecretCacheError, SecretNotFoundError
from secretcache._flight import RUNNING, Effects, Flight
from secretcache._keys import DEFAULT_STAGE, names
from secretcache._logs import Facts
from secretcache._observe import Fetch

if TYPE_CHECKING:
    from collections.abc import Callable

    from secretcache._fetcher import Fetcher
    from secretcache._policy import RetryPolicy
    from secretcache._run import Runner
    from secretcache._store import Store
    from secretcache._value import SecretValue

__all__ = ["Batches"]


class Batches:
    """Prefetches for one store, and the backoff after ``BatchGetSecretValue`` is refused.

    Thread-safe: it keeps no lock of its own. The backoff is a count of refusals in a row (an
    ``itertools.count``, whose ``next`` is atomic) and the time before which no batch call is
    tried; concurrent prefetches may each write that time, the last one wins.
    """

    def __init__(
        self, store: Store, runner: Runner, fetcher: Fetcher, retry: RetryPolicy, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._runner = runner
        self._fetcher = fetcher
        self._retry = retry
        self._clock = clock
        self._refusals = itertools.count(1)
        self._retry_at = float("-inf")

    def prefetch(self, secret_ids: Iterable[str]) -> dict[str, SecretCacheError]:
        """Warm AWSCURRENT of many secrets, ``BATCH_SIZE`` per ``BatchGetSecretValue`` call.

        Claims every key that is not fresh, fetching or backing off as a QUEUED flight (a reader
        that needs one before its batch starts runs it instead), completes each as soon as its
        answer is known, and announces logs and changes only once all are complete, so a
        listener reading another secret of the batch never waits on this thread.

        Raises:
            RuntimeError: The cache is closed.
        """
        store = self._store
        claimed, failures = store.queue_all(secret_ids)
        effects = Effects()
        try:
            for start in range(0, len(claimed), BATCH_SIZE):
                self._chunk(claimed[start : start + BATCH_SIZE], failures, effects)
        except BaseException as err:
            me = threading.get_ident()
            mine = [flight for flight in claimed if flight.owner == me and flight.state is RUNNING]
            for flight in mine + store.take(claimed):
                store.complete(flight, None, err, effects)
            raise
        finally:
            store.announce(effects)
        return failures

    def _chunk(self, chunk: list[Flight], failures: dict[str, SecretCacheError], effects: Effects) -> None:
        store = self._store
        if self._clock() < self._retry_at:
            return self._one_by_one(chunk, failures, effects)
        flights = store.take(chunk)
        if not flights:
            return None
        ids = [flight.key.secret_id for flight in flights]
        fetch = Fetch("BatchGetSecretValue", tuple(ids), refresh="prefetch", version_stage=DEFAULT_STAGE)
        fetch.falter = functools.partial(self._runner.falter, tuple(flights))
        try:
            with self._runner.observing(fetch):
                values, errors = self._fetcher.batch_get_secret_values(ids, fetch)
        except BatchRefusedError as refusal:
            self._retry_at = self._clock() + self._retry.backoff_after(next(self._refusals))
            # Back in the queue for the single fetches below, so a reader can take one over;
            # one dropped meanwhile is no longer in the table: it is fetched for its waiters.
            dropped = store.requeue(flights)
            fields = Facts("BatchGetSecretValue", attempt=fetch.attempts, error=refusal)
            effects.log(  # the reason names no secret: the line has no one secret_name for serve's id filter
                logging.INFO,
                "BatchGetSecretValue refused for %d secret(s) (%s); fetching one secret at a time",
                len(ids),
                refusal.reason,
                facts=fields,
            )
            for flight in dropped:
                self._runner.run(flight, effects)
            return self._one_by_one([flight for flight in flights if flight not in dropped], failures, effects)
        except BatchFailedError as failed:  # the call as a whole failed: each secret gets its own error
            errors, values = failed.errors, []
        else:
            self._refusals = itertools.count(1)
            if fetch.replica is not None:
                effects.count("failovers")
        for flight, secret_id in zip(flights, ids, strict=True):
            value = _match(secret_id, values)
            if value is not None:
                if not store.complete(flight, value, None, effects, fetch=fetch):
                    self._run_one(flight, failures, effects)  # older than a version served meanwhile
                elif flight.entry is not None and flight.entry.failure is not None:
                    failures[secret_id] = flight.entry.failure.error  # a replica behind what was served: no answer
                continue
            error = errors.get(secret_id) or SecretNotFoundError(
                f"BatchGetSecretValue returned nothing for secret {secret_id!r}", secret_id=secret_id
            )
            failures[secret_id] = error
            store.complete(flight, error, None, effects, fetch=fetch)
        return None

    def _one_by_one(self, chunk: list[Flight], failures: dict[str, SecretCacheError], effects: Effects) -> None:
        for flight in chunk:
            if self._store.take([flight]):
                self._run_one(flight, failures, effects)

    def _run_one(self, flight: Flight, failures: dict[str, SecretCacheError], effects: Effects) -> None:
        """Fetch one secret of a batch with ``GetSecretValue``, noting its failure."""
        self._runner.run(flight, effects)
        if flight.entry is not None and flight.entry.failure is not None:
            failures[flight.key.secret_id] = flight.entry.failure.error


def _match(secret_id: str, values: list[SecretValue]) -> SecretValue | None:
    """The value among ``values`` that ``secret_id`` (name, ARN or partial ARN) names (:func:`names`)."""
    return next((value for value in values if names(secret_id, value.name, value.arn)), None)
