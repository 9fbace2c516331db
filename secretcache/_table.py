"""The entry table: entries by key, eviction, and the version history behind change reports.

It has no lock of its own: only the store (:mod:`secretcache._store`) uses it, always under the
store's lock, and every method is plain dict and attribute work.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cachetools import LRUCache

from secretcache._keys import DEFAULT_STAGE, CacheKey, Key, aliases, split_key
from secretcache._logs import facts
from secretcache._value import SecretChange, SecretValue

if TYPE_CHECKING:
    from secretcache._entry import Entry
    from secretcache._flight import Effects

__all__ = ["Table"]


class Table:
    """Entries by key, bounded by CLOCK eviction, and the last version id per (ARN, stage).

    ``entries`` is a plain dict the hot path reads without locking. Not thread-safe by itself:
    the store calls every method under its lock.
    """

    def __init__(self, max_size: int) -> None:
        self.entries: dict[CacheKey, Entry] = {}
        self.max_size = max_size
        self.retired_hits = 0
        """Hits of entries replaced, evicted or dropped, so :meth:`hits` never goes down."""
        # Kept across invalidation so a refetch after a rotation event still reports the
        # change; bounded like the entries. Keyed by ARN: one report per change, however spelled.
        self._versions: LRUCache[tuple[str, str], str] = LRUCache(maxsize=max_size)

    def hits(self) -> int:
        """Hits so far, of the entries held and of those gone."""
        return self.retired_hits + sum(entry.hits for entry in self.entries.values())

    def pop(self, key: CacheKey) -> None:
        """Drop the entry of ``key``."""
        self.retired_hits += self.entries.pop(key).hits

    def clear(self) -> None:
        """Drop every entry and the version history."""
        self.retired_hits = self.hits()
        self.entries.clear()
        self._versions.clear()

    def install(self, key: CacheKey, entry: Entry, effects: Effects) -> None:
        """Put ``entry`` in the table, evicting if full; note what to count and report."""
        old = self.entries.get(key)
        if old is not None:
            self.retired_hits += old.hits
            if old.value is not None and entry.failure is None:
                effects.count("refreshes")
            if old.hits > old.seen:
                entry.seen = -1  # keep the recency of the entry being replaced
            if old.failure is not None and entry.failure is None:
                secret_id = split_key(key)[0]
                version_id = entry.value.version_id if entry.value is not None else None
                effects.log(
                    logging.INFO,
                    "secret %r is readable again after %d failed fetches",
                    secret_id,
                    old.failure.count,
                    extra=facts("GetSecretValue", secret_name=secret_id, version_id=version_id),
                )
        self.entries[key] = entry
        if old is None:
            self._evict(key, effects)
        value = entry.value
        if entry.failure is not None or value is None or (isinstance(key, Key) and key.version_id is not None):
            return
        # Keyed by ARN, not by the id as requested: one report per change, however spelled.
        stage = _stage_of(key)
        previous_version = self._versions.get((value.arn, stage))
        self._versions[value.arn, stage] = value.version_id
        if previous_version is not None and previous_version != value.version_id:
            self._drop_other_spellings(key, value, stage)
            effects.changes.append(SecretChange(value.name, value.arn, stage, previous_version, value.version_id))
            effects.count("changes")

    def _drop_other_spellings(self, key: CacheKey, new: SecretValue, stage: str) -> None:
        """Drop entries of the same label under another spelling that hold an older version.

        A change is reported once per ARN and label, so a listener (or any reader) that reads the
        secret by its name, ARN or partial ARN must get the new version, not one cached earlier.
        A version created after ``new`` is kept (a slow fetch may install an older one last).
        """
        for other, entry in list(self.entries.items()):
            value = entry.value
            if (
                other != key
                and value is not None
                and value.arn == new.arn
                and value.version_id != new.version_id
                and _stage_of(other) == stage
                and not (isinstance(other, Key) and other.version_id is not None)
                and not _created_after(value, new)
            ):
                self.pop(other)

    def _evict(self, newest: CacheKey, effects: Effects) -> None:
        """Second-chance (CLOCK) eviction down to ``max_size``.

        Entries are kept in insertion order; one hit since the last sweep earns an entry a move
        to the back instead of eviction, and the entry just inserted (``newest``) is never the
        one evicted. This approximates LRU without the hot path having to reorder anything.
        """
        entries = self.entries
        chances = len(entries)
        while len(entries) > self.max_size:
            key = next(iter(entries))
            entry = entries.pop(key)
            if key == newest or (entry.hits > entry.seen and chances > 0):
                if key != newest:
                    chances -= 1
                    entry.seen = entry.hits
                entries[key] = entry
                continue
            self.retired_hits += entry.hits
            effects.count("evictions")

    def matches(self, key: CacheKey, targets: set[str]) -> bool:
        """Whether an entry or flight of ``key`` may belong to the secret with ``targets``."""
        names = aliases(split_key(key)[0])
        entry = self.entries.get(key)
        if entry is not None and entry.value is not None:
            names |= aliases(entry.value.arn)
            names.add(entry.value.name)
        return not names.isdisjoint(targets)


def _stage_of(key: CacheKey) -> str:
    """The staging label a key reads (AWSCURRENT for plain ids)."""
    return key.version_stage if isinstance(key, Key) and key.version_stage else DEFAULT_STAGE


def _created_after(value: SecretValue, other: SecretValue) -> bool:
    """Whether ``value`` is a version created after ``other`` (unknown dates: no)."""
    return value.created_date is not None and other.created_date is not None and value.created_date > other.created_date
