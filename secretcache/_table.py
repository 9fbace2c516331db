"""The entry table: bounded storage of entries and fetches in flight, behind one lock."""

from __future__ import annotations

import logging
import threading

from cachetools import LRUCache

from secretcache._entry import Entry, Flight
from secretcache._keys import DEFAULT_STAGE, CacheKey, Key, aliases, split_key
from secretcache._stats import Counters
from secretcache._value import SecretChange

__all__ = ["EntryTable"]

logger = logging.getLogger("secretcache")


class EntryTable:
    """Entries by cache key, the single-flight map, and version tracking for change reports.

    ``entries`` is a plain dict that the hot path reads without the lock; every change to it,
    to ``flights`` and to the version map happens under ``lock``, which is never held across
    I/O. Methods marked *Locked* expect the caller to hold ``lock``.
    """

    def __init__(self, max_size: int, counters: Counters) -> None:
        self.lock = threading.Lock()
        self.entries: dict[CacheKey, Entry] = {}
        self.flights: dict[CacheKey, Flight] = {}
        self.max_size = max_size
        self._counters = counters
        # Last version id seen per (ARN, stage), kept across invalidation so a refetch after a
        # rotation event still reports the change; bounded like the entries.
        self._versions: LRUCache[tuple[str, str], str] = LRUCache(maxsize=max_size)
        self._retired_hits = 0

    def install(self, key: CacheKey, entry: Entry) -> SecretChange | None:
        """Put ``entry`` in the table, evicting if full; return a change to report. Locked."""
        old = self.entries.get(key)
        if old is not None:
            self._retired_hits += old.hits
            if old.value is not None and entry.failure is None:
                self._counters.add("refreshes")
            if old.hits > old.seen:
                entry.seen = -1  # keep the recency of the entry being replaced
            if old.failure is not None and entry.failure is None:
                logger.info("secret %r is readable again after %d failed fetches", split_key(key)[0], old.failure.count)
        self.entries[key] = entry
        if old is None:
            self._evict(key)
        value = entry.value
        if entry.failure is not None or value is None or (isinstance(key, Key) and key.version_id is not None):
            return None
        # Keyed by ARN, not by the id as requested: one report per change, however spelled.
        stage = key.version_stage if isinstance(key, Key) and key.version_stage else DEFAULT_STAGE
        previous_version = self._versions.get((value.arn, stage))
        self._versions[value.arn, stage] = value.version_id
        if previous_version is None or previous_version == value.version_id:
            return None
        return SecretChange(value.name, value.arn, stage, previous_version, value.version_id)

    def _evict(self, newest: CacheKey) -> None:
        """Second-chance (CLOCK) eviction down to ``max_size``. Locked.

        Entries are kept in insertion order; one hit since the last sweep earns an entry a move
        to the back instead of eviction, and the entry just inserted (``newest``, the most
        recently used of all) is never the one evicted. This approximates LRU without the hot
        path having to reorder anything.
        """
        entries = self.entries
        chances = len(entries)
        while len(entries) > self.max_size:
            key = next(iter(entries))
            entry = entries.pop(key)
            if key == newest:
                entries[key] = entry
                continue
            if entry.hits > entry.seen and chances > 0:
                chances -= 1
                entry.seen = entry.hits
                entries[key] = entry
                continue
            self._retired_hits += entry.hits
            self._counters.add("evictions")

    def drop(self, secret_id: str | None) -> list[CacheKey]:
        """Drop every entry of a secret (any spelling), or all; orphan matching flights.

        Returns the keys dropped.

        An orphaned flight finishes for the readers already waiting on it but installs
        nothing, and later readers start a new one: this makes invalidation linearizable.
        """
        targets = None if secret_id is None else aliases(secret_id)
        with self.lock:
            matched = [key for key in self.entries if targets is None or self._matches(key, targets)]
            flying = [key for key in self.flights if targets is None or self._matches(key, targets)]
            for key in matched:
                self._retired_hits += self.entries.pop(key).hits
            for key in flying:
                del self.flights[key]
        return matched

    def _matches(self, key: CacheKey, targets: set[str]) -> bool:
        """Whether an entry or flight of ``key`` may belong to the secret with ``targets``. Locked."""
        names = aliases(split_key(key)[0])
        entry = self.entries.get(key)
        if entry is not None and entry.value is not None:
            names |= aliases(entry.value.arn)
            names.add(entry.value.name)
        return not names.isdisjoint(targets)

    def finish(self, key: CacheKey, flight: Flight, result: Entry | None) -> SecretChange | None:
        """End ``flight``: unless orphaned, remove it and install ``result``. Takes the lock."""
        with self.lock:
            if self.flights.get(key) is not flight:
                return None
            del self.flights[key]
            return self.install(key, result) if result is not None else None

    def hits_and_size(self) -> tuple[int, int]:
        """Hits so far (including those of replaced and dropped entries) and entries held."""
        with self.lock:
            return self._retired_hits + sum(entry.hits for entry in self.entries.values()), len(self.entries)

    def clear(self) -> None:
        """Drop everything, including version history. Takes the lock."""
        with self.lock:
            self._retired_hits += sum(entry.hits for entry in self.entries.values())
            self.entries.clear()
            self.flights.clear()
            self._versions.clear()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, no flights (their fetching threads are gone).

        Entries are kept: a child of a warmed parent (gunicorn ``--preload``) starts warm.
        """
        self.lock = threading.Lock()
        self.flights.clear()
