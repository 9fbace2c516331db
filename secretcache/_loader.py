"""Loading: running a fetch for a key (or a batch of keys) and turning its outcome into an entry."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from secretcache._entry import Entry, Failure, Flight
from secretcache._errors import SecretCacheError, SecretNotFoundError, SecretUnavailableError
from secretcache._fetcher import BATCH_SIZE, BatchRefusedError, Fetcher
from secretcache._keys import CacheKey, aliases, split_key

if TYPE_CHECKING:
    from secretcache._policy import RetryPolicy, Timing
    from secretcache._stats import Counters
    from secretcache._table import EntryTable
    from secretcache._value import SecretChange, SecretValue

__all__ = ["Loader"]

logger = logging.getLogger("secretcache")


class Loader:
    """Runs fetches for a cache and publishes their outcome to the table and the flight.

    Thread-safe: every method may run on any thread; shared state is only touched under the
    table's lock, and no lock is held while calling Secrets Manager.
    """

    def __init__(
        self,
        table: EntryTable,
        fetcher: Fetcher,
        timing: Timing,
        retry: RetryPolicy,
        counters: Counters,
        clock: Callable[[], float],
        notify: Callable[[SecretChange], None],
    ) -> None:
        self._table = table
        self._fetcher = fetcher
        self._timing = timing
        self._retry = retry
        self._counters = counters
        self._clock = clock
        self._notify = notify
        self._random = random.Random()  # noqa: S311 - spreads refresh times, not a secret

    def fetch(self, key: CacheKey, flight: Flight, previous: Entry | None) -> None:
        """Fetch ``key`` now (the caller owns ``flight``) and publish the outcome.

        Whatever happens, the flight is finished, so no waiter is left hanging. Unexpected
        exceptions reach every waiter; ``KeyboardInterrupt``/``SystemExit`` are re-raised here.
        """
        secret_id, version_stage, version_id = split_key(key)
        result: Entry | None = None
        unexpected: BaseException | None = None
        try:
            try:
                value = self._fetcher.get_secret_value(secret_id, version_stage, version_id)
            except SecretCacheError as err:
                result = self.failed(key, previous, err)
            else:
                result = self.fresh(value, key, previous, flight.ttl)
        except BaseException as err:  # not a botocore failure: hand it to every waiter as is
            unexpected = err
        finally:
            self.complete(key, flight, result, unexpected)
        if unexpected is not None and not isinstance(unexpected, Exception):
            raise unexpected

    def complete(
        self, key: CacheKey, flight: Flight, result: Entry | None, unexpected: BaseException | None = None
    ) -> None:
        """Install ``result`` unless the flight was orphaned, wake the waiters, report a change."""
        change = None
        try:
            change = self._table.finish(key, flight, result)
        finally:
            flight.finish(result, unexpected)
        if change is not None:
            self._notify(change)

    def fresh(self, value: SecretValue, key: CacheKey, previous: Entry | None, ttl: float | None) -> Entry:
        """The entry for a value just fetched: deadlines from the key's TTL, jittered."""
        now = self._clock()
        if split_key(key)[2] is not None:  # a version id: immutable, never refetched for age
            return Entry(value, refresh_at=float("inf"), fresh_until=float("inf"), stale_until=float("inf"))
        timing = self._timing
        if ttl is None:
            ttl = (
                previous.ttl if previous is not None and previous.ttl is not None else timing.ttl_for(split_key(key)[0])
            )
        lifetime = ttl * (1.0 - timing.ttl_jitter * self._random.random())
        ahead = timing.refresh_ahead
        return Entry(
            value,
            ttl=ttl,
            refresh_at=now + lifetime * ahead if ahead is not None else now + lifetime,
            fresh_until=now + lifetime,
            stale_until=now + lifetime + timing.max_stale,
        )

    def failed(self, key: CacheKey, previous: Entry | None, err: SecretCacheError) -> Entry:
        """The entry to keep after a failed fetch: the value still servable (outages only) + failure."""
        self._counters.add("errors")
        now = self._clock()
        count = previous.failure.count + 1 if previous is not None and previous.failure is not None else 1
        failure = Failure(err, now + self._retry.backoff_after(count), count)
        secret_id = split_key(key)[0]
        # Only outages pass; a definite answer (deleted, access revoked) stops serving the value.
        if previous is not None and previous.servable(now) and isinstance(err, SecretUnavailableError):
            assert previous.value is not None
            if previous.failure is None:
                logger.warning(
                    "serving the cached value of secret %r (version %s) while fetching fails: %s",
                    secret_id,
                    previous.value.version_id,
                    err,
                )
            return Entry(
                previous.value,
                ttl=previous.ttl,
                refresh_at=failure.retry_at,  # refresh-ahead tries again after the backoff
                fresh_until=previous.fresh_until,
                stale_until=previous.stale_until,
                failure=failure,
            )
        if not isinstance(err, SecretUnavailableError):
            # A definite answer the caller receives as an exception; not worth a warning.
            logger.debug("fetching secret %r failed: %s", secret_id, err)
        elif previous is None or previous.failure is None or previous.value is not None:
            # First failure, or the cached value just grew too old to serve: reads now fail.
            logger.warning("fetching secret %r failed and no cached value can be served: %s", secret_id, err)
        return Entry(None, ttl=previous.ttl if previous is not None else None, failure=failure)

    def prefetch(self, claimed: list[tuple[str, Flight, Entry | None]]) -> dict[str, SecretCacheError]:
        """Fetch AWSCURRENT of claimed keys ``BATCH_SIZE`` at a time and complete their flights.

        Falls back to one ``GetSecretValue`` per secret when the batch operation is refused.
        Returns the typed error of every secret that could not be warmed. Every claimed flight
        is finished, whatever happens; an unexpected exception reaches its waiters and is
        re-raised here.
        """
        failures: dict[str, SecretCacheError] = {}
        try:
            for start in range(0, len(claimed), BATCH_SIZE):
                self._prefetch_chunk(claimed[start : start + BATCH_SIZE], failures)
        except BaseException as err:
            for secret_id, flight, _ in claimed:
                if not flight.done:
                    self.complete(secret_id, flight, None, err)
            raise
        return failures

    def _prefetch_chunk(
        self, chunk: list[tuple[str, Flight, Entry | None]], failures: dict[str, SecretCacheError]
    ) -> None:
        try:
            values, errors = self._fetcher.batch_get_secret_values([secret_id for secret_id, _, _ in chunk])
        except BatchRefusedError as refusal:
            logger.info("BatchGetSecretValue refused (%s); fetching one secret at a time", refusal)
            for secret_id, flight, previous in chunk:
                self.fetch(secret_id, flight, previous)
                entry = flight.wait(secret_id)
                if entry.failure is not None:
                    failures[secret_id] = entry.failure.error
            return
        except SecretCacheError as err:  # the whole call failed, after retries
            for secret_id, flight, previous in chunk:
                failures[secret_id] = err
                self.complete(secret_id, flight, self.failed(secret_id, previous, err))
            return
        for secret_id, flight, previous in chunk:
            value = _match(secret_id, values)
            if value is not None:
                self.complete(secret_id, flight, self.fresh(value, secret_id, previous, flight.ttl))
                continue
            error = errors.get(secret_id) or SecretNotFoundError(
                f"BatchGetSecretValue returned nothing for secret {secret_id!r}", secret_id=secret_id
            )
            failures[secret_id] = error
            self.complete(secret_id, flight, self.failed(secret_id, previous, error))


def _match(secret_id: str, values: list[SecretValue]) -> SecretValue | None:
    """The value among ``values`` that ``secret_id`` (name, ARN or partial ARN) names."""
    wanted = aliases(secret_id)
    for value in values:
        if value.name in wanted or not aliases(value.arn).isdisjoint(wanted):
            return value
    return None
