"""Counters kept by a cache and the immutable snapshot :meth:`SecretCache.stats` returns."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

__all__ = ["CacheStats", "Counters"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache's counters, taken by :meth:`SecretCache.stats`.

    Counters only ever grow; subtract two snapshots to measure an interval. Holds counts and
    operation names only, never a secret id or value. Immutable, hashable, picklable (send it
    from a worker process to its parent) and safe to share. ``repr`` and ``str`` read like a
    dataclass with plain dicts:
    ``CacheStats(hits=3, misses=1, api_calls={'GetSecretValue': 1}, ...)``.

    Attributes:
        hits: Reads answered from a fresh cached value without waiting. Counted without a lock
            on the hot path, so it may undercount slightly: a hit on an entry that another
            thread replaces or drops at that very moment can be lost (and, on a free-threaded
            build, concurrent increments too). Every other counter is exact.
        misses: Reads that had to wait for a fetch (cold key, expired value, forced refresh),
            whatever they then returned or raised.
        api_calls: Secrets Manager calls by operation name (``"GetSecretValue"``), one per
            attempt, retries included.
        refreshes: Fetches of a key that already held a value (expiry, refresh-ahead or
            forced refresh) that succeeded.
        background_refreshes: Background refreshes (refresh-ahead, stale-while-revalidate)
            handed to the refresh threads, including those a reader then ran itself or that
            were dropped (``invalidate()``, ``close()``) before a thread started them.
        stale_served: Reads answered with a value past its TTL: because fetching failed, or
            within ``stale_while_revalidate`` while the background refresh runs.
        errors: Fetches that failed, after their retries.
        evictions: Entries dropped to stay within ``max_size``.
        size: Entries held when the snapshot was taken.
        in_flight: Fetches queued or running when the snapshot was taken (a gauge, not a
            counter).
        api_errors: The calls of ``api_calls`` that failed, by error type: the AWS error code
            (``"ThrottlingException"``) or the botocore exception's class name
            (``"ReadTimeoutError"``); a call cut off by an exception that is not an
            ``Exception`` counts under its class name (``"KeyboardInterrupt"``). Counted when
            the call ends, where ``api_calls`` counts it as it starts.
        read_errors: Reads that raised because no value could be served: the fetch failed
            with nothing servable cached, a remembered failure was backing off, or the fetch
            took longer than the wait bound; and reads cut off while they waited for a fetch
            (a cancelled asyncio task, a ``KeyboardInterrupt``).
        changes: New versions seen: a fetch returned a version id other than the last one
            cached for the same secret and label (what ``on_change`` listeners hear of).
        failovers: Fetches answered by a replica Region because the primary failed
            (``replica_regions``); a batch call counts once.
    """

    hits: int = 0
    misses: int = 0
    api_calls: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    refreshes: int = 0
    background_refreshes: int = 0
    stale_served: int = 0
    errors: int = 0
    evictions: int = 0
    size: int = 0
    in_flight: int = 0
    api_errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    read_errors: int = 0
    changes: int = 0
    failovers: int = 0

    def __post_init__(self) -> None:
        for name in ("api_calls", "api_errors"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):  # built by hand or unpickled: freeze it
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    def __reduce__(self) -> tuple[type[CacheStats], tuple[object, ...]]:
        # A mappingproxy cannot be pickled: send a plain dict, which __post_init__ freezes again.
        return type(self), tuple(
            dict(value) if isinstance(value := getattr(self, item.name), Mapping) else value for item in fields(self)
        )

    def __repr__(self) -> str:
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Mapping):  # a read-only proxy: show the plain dict it reads as
                value = dict(value)
            parts.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__

    @property
    def total_api_calls(self) -> int:
        """All Secrets Manager calls, whatever the operation."""
        return sum(self.api_calls.values())

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``, or 0.0 before the first read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else 0.0


class Counters:
    """Mutable counters behind a cache. Thread-safe: every change takes a short private lock."""

    __slots__ = ("_api_calls", "_api_errors", "_api_ok", "_lock", "_values")

    _NAMES = (
        "misses",
        "refreshes",
        "background_refreshes",
        "stale_served",
        "errors",
        "evictions",
        "read_errors",
        "changes",
        "failovers",
    )
    MISSES_SERVED = "misses_served"
    """Not in :class:`CacheStats`: misses answered with a value within its TTL (see :meth:`reads`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()
        self._api_calls: Counter[str] = Counter()
        self._api_errors: Counter[tuple[str, str]] = Counter()
        self._api_ok: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (a :class:`CacheStats` counter or ``MISSES_SERVED``)."""
        with self._lock:
            self._values[name] += amount

    def api_call(self, operation: str) -> None:
        """Count one call of a Secrets Manager operation, as it starts."""
        with self._lock:
            self._api_calls[operation] += 1

    def api_ok(self, operation: str) -> None:
        """Count one call of ``operation`` (already counted by :meth:`api_call`) as ended without error."""
        with self._lock:
            self._api_ok[operation] += 1

    def api_error(self, operation: str, error_type: str) -> None:
        """Count one call of ``operation`` (already counted by :meth:`api_call`) as ended in failure."""
        with self._lock:
            self._api_errors[operation, error_type] += 1

    def api_outcomes(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """The calls that ended: the ones that succeeded by operation, the failed ones by operation and error type.

        A call in flight is in neither yet, so each count only ever grows (a call counted
        ``ok`` never turns into an error later).
        """
        with self._lock:
            return dict(self._api_ok), dict(self._api_errors)

    def reads(self, hits: int) -> dict[str, int]:
        """Every read once, by what it returned: ``hit``, ``miss``, ``stale`` or ``error``.

        ``miss`` is a read that waited for a fetch and got a value within its TTL; one that
        waited and got a stale value or an error counts as ``stale`` or ``error`` instead
        (:attr:`CacheStats.misses` counts every read that waited).
        """
        with self._lock:
            values = self._values
            return {
                "hit": hits,
                "miss": values[self.MISSES_SERVED],
                "stale": values["stale_served"],
                "error": values["read_errors"],
            }

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (counts carry on from the parent's)."""
        self._lock = threading.Lock()

    def snapshot(self, *, hits: int, size: int, in_flight: int = 0) -> CacheStats:
        """Return the counters as a :class:`CacheStats`, with the gauges given."""
        with self._lock:
            values = {name: self._values[name] for name in self._NAMES}
            api_calls = MappingProxyType(dict(self._api_calls))
            by_type: Counter[str] = Counter()
            for (_, error_type), count in self._api_errors.items():
                by_type[error_type] += count
        return CacheStats(
            hits=hits,
            api_calls=api_calls,
            size=size,
            in_flight=in_flight,
            api_errors=MappingProxyType(dict(by_type)),
            **values,
        )
