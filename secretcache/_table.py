"""The entry table: entries by key, eviction, and the newest version served of each label.

It has no lock of its own: only the store (:mod:`secretcache._store`) uses it, always under the
store's lock, and every method is plain dict and attribute work.

Monotonic reads (the store's invariant 6), how: the table keeps, per ARN and label, a *mark*: the
newest version served and the sequence number at which it was first served. Every fetch notes the
sequence number when it starts. An answer is admitted if no version was served yet, or it is the
marked version or one created after every version served (so not one the label was rolled back from,
nor one created before it), or it came from the primary Region and its fetch started after the mark
was raised (the label's state then, a rollback included). An admitted answer raises the mark; a new
version retires every entry of the label holding another one (under any spelling, and the entries
flights keep to serve stale), and is reported to ``on_change`` once. An answer not admitted is stale
information, never news: from the primary, the flight is answered with the newer value an entry of
the label holds fresh (with that entry's deadlines), or, when none does, fetches again (its new
fetch starts after the mark, so its answer is admitted unless the mark moved again meanwhile; after
``AGAIN_LIMIT`` such rounds the fetch fails); from a replica, the fetch counts as failed (the
primary is failing), so the value served so far stays served.

Monotonic reads and linearizable invalidation (after ``invalidate()`` returns, no read returns a
value fetched before it was called) fit together as follows: an orphaned fetch installs nothing, so
no later read is served its answer from the table; its answer goes only to the readers that joined
it before ``invalidate()`` returned (reads concurrent with it), and it raises the mark. If that
answer is newer than what a read started after the ``invalidate()`` installed meanwhile, the older
entry is retired and the next read fetches again: the newer result is never thrown away in favour of
the older one, and it is never installed either.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from secretcache._entry import behind_error, failed_entry, fresh_entry
from secretcache._errors import SecretCacheError
from secretcache._keys import CacheKey, aliases
from secretcache._logs import Facts
from secretcache._value import SecretChange, SecretValue

if TYPE_CHECKING:
    from datetime import datetime

    from secretcache._entry import Entry
    from secretcache._flight import Effects, Flight
    from secretcache._logs import LogLine
    from secretcache._observe import Fetch
    from secretcache._policy import RetryPolicy, Timing

__all__ = ["Mark", "Table", "supersedes"]

Label = tuple[str, str]
"""A secret's ARN and a staging label: what monotonic reads and change reports are kept per."""


ROLLED_BACK = 8
"""Most versions a mark remembers as rolled back from (the newest first)."""


class Mark:
    """The newest version of one label the cache has served, and when (the store's sequence number).

    ``rolled_back`` holds the versions the label was rolled back from since (newest first): though
    created later, they are older news, served again only on the primary Region's word. So is
    any version created before the newest one served before a rollback (``created`` stays that
    one's creation date): a late answer from before the rollback is no news either.
    """

    __slots__ = ("created", "raised", "rolled_back", "version_id")

    def __init__(
        self, version_id: str, created: datetime | None, raised: int, rolled_back: tuple[str, ...] = ()
    ) -> None:
        self.version_id = version_id
        self.created = created  # the newest creation date of a version served: never lowered by a rollback
        self.raised = raised
        self.rolled_back = rolled_back

    def precedes(self, value: SecretValue) -> bool:
        """Whether ``value`` was created after every version served (and is not one the label was rolled back from)."""
        return (
            value.created_date is not None
            and self.created is not None
            and value.created_date > self.created
            and value.version_id not in self.rolled_back
        )


class Table:
    """Entries by key, bounded by CLOCK eviction, and the newest version served per label.

    ``current`` is the hot index: the entries of AWSCURRENT read by stage, keyed by bare secret
    id, a plain dict the hot path reads without locking (a lookup by a bare string costs half
    one by a tuple). It always holds exactly the entries of ``entries`` whose key is
    :attr:`CacheKey.current`: every change of ``entries`` goes through this class. Not
    thread-safe by itself: the store calls every method under its lock.

    Marks (the newest version served of each label, keyed by ARN so every spelling shares one)
    outlive invalidation, so a refetch after a rotation event still reports the change and a late
    answer cannot go back in time. A mark is kept while an entry holds a value of its label,
    the label being served included (its mark is raised just before its entry is installed). Of
    the others, the ``max_size`` most recently raised are always kept, and none is forgotten
    while they number ``2 * max_size`` or fewer; as entries hold at most ``max_size`` labels,
    there are at most ``3 * max_size + 1`` marks.
    """

    def __init__(self, max_size: int, timing: Timing, retry: RetryPolicy) -> None:
        self._timing = timing
        self._retry = retry
        self._random = random.Random()  # noqa: S311 - spreads refresh times, not a secret
        self.entries: dict[CacheKey, Entry] = {}
        self.current: dict[str, Entry] = {}
        """The hot index: ``entries`` of AWSCURRENT by stage, by bare secret id."""
        self.max_size = max_size
        self.retired_hits = 0
        """Hits of entries replaced, evicted or dropped, so :meth:`hits` never goes down."""
        self._marks: dict[Label, Mark] = {}  # in order of raising, oldest first
        self._held: Counter[Label] = Counter()  # entries holding a value, per label

    def hits(self) -> int:
        """Hits so far, of the entries held and of those gone."""
        return self.retired_hits + sum(entry.hits for entry in self.entries.values())

    def pop(self, key: CacheKey) -> None:
        """Drop the entry of ``key``."""
        entry = self.entries.pop(key)
        self.retired_hits += entry.hits
        self._release(key, entry)

    def clear(self) -> None:
        """Drop every entry and every mark."""
        self.retired_hits = self.hits()
        self.entries.clear()
        self.current.clear()
        self._held.clear()
        self._marks.clear()

    def install(self, key: CacheKey, entry: Entry, effects: Effects) -> None:
        """Put ``entry`` in the table, evicting if full; note what to count and log.

        An entry of the version the replaced one holds (a refresh that found no new version, or a
        failed fetch keeping that value to serve while fetching fails) shares its :class:`Memo`
        (JSON parse, validated models): parsed and validated once per version, even by a reader
        still validating on the replaced entry.
        """
        old = self.entries.get(key)
        if old is not None and _same_version(old.value, entry.value):
            entry.memo = old.memo
        self.entries[key] = entry
        if key.current:  # replaced in place: a lock-free reader finds the old entry or the new one
            self.current[key.secret_id] = entry
        label = _label(key, entry.value)
        if label is not None:
            self._held[label] += 1
        if old is None:
            self._evict(key, effects)
            return
        self.retired_hits += old.hits
        self._release(key, old)
        if old.value is not None and entry.failure is None:
            effects.count("refreshes")
        if old.hits > old.seen:
            entry.seen = -1  # keep the recency of the entry being replaced
        if old.failure is not None and entry.failure is None:
            version_id = entry.value.version_id if entry.value is not None else None
            effects.log(
                logging.INFO,
                "secret %r is readable again after %d failed fetches",
                key.secret_id,
                old.failure.count,
                facts=Facts("GetSecretValue", secret_name=key.secret_id, version_id=version_id),
            )

    # -- monotonic reads -----------------------------------------------------------------------

    def admits(self, key: CacheKey, value: SecretValue, started: int, replica: bool) -> bool:
        """Whether a fetched ``value`` may be served: it is not older than what was served of its label.

        It is if no version of its label was served yet, or the newest served is the same version
        or was created before it (unless the label was rolled back from it), or the fetch was sent
        to the primary Region after the newest was served (``started`` after its mark was raised:
        what the primary says then is the label's state, a rollback included). A lookup by version
        id always is.
        """
        label = _label(key, value)
        mark = self._marks.get(label) if label is not None else None
        if mark is None or mark.version_id == value.version_id or mark.precedes(value):
            return True
        return not replica and started > mark.raised

    def refused(
        self, flight: Flight, value: SecretValue, fetch: Fetch | None, now: float, *, again: bool
    ) -> SecretCacheError | None:
        """The error a fetched ``value`` makes its fetch fail with, as :meth:`settle` would decide now, or ``None``.

        A value older than a version of its label served since (not admitted, :meth:`admits`) is
        a failure when it came from a replica, or from the primary Region with no fresh entry of
        the newer version to answer with and no round left to fetch again (``again``).
        """
        key, replica = flight.key, fetch.replica if fetch is not None else None
        if self.admits(key, value, flight.started, replica is not None):
            return None
        if replica is None:
            holder = self.holder(key, value.arn)
            if again or (holder is not None and holder.is_fresh(now)):
                return None
        return behind_error(key.secret_id, value, replica)

    def settle(
        self, flight: Flight, answer: SecretValue | SecretCacheError, fetch: Fetch | None, now: float, *, again: bool
    ) -> tuple[Entry | None, LogLine | None]:
        """The entry a fetch's answer makes of its key, and the line it deserves; ``(None, None)``: fetch again.

        A value admitted (:meth:`admits`) lives the flight's TTL (:func:`fresh_entry`), counted
        from when its fetch began: a value is never older than its TTL, however long the fetch
        took (retries, or a process frozen mid-fetch, as Lambda freezes one between invocations). One from
        the primary Region that is not (older than a version served since the fetch started) is
        answered with the newer value an entry holds fresh (:meth:`holder`), or, if ``again``,
        fetched again; else it is a failure, as a replica's is, and as an error is. A failure keeps
        the value of the flight's previous entry (outages only, :func:`failed_entry`), or, if a
        newer version of its label was served since under another spelling, that one's holder.
        """
        key, replica = flight.key, fetch.replica if fetch is not None else None
        value = answer if isinstance(answer, SecretValue) else None
        if value is not None and self.admits(key, value, flight.started, replica is not None):
            draw = self._random.random()
            began = now if flight.began is None else min(flight.began, now)
            return fresh_entry(
                value, ttl=flight.ttl, replica=replica is not None, draw=draw, now=began, timing=self._timing
            ), None
        holder = None if value is None or replica is not None else self.holder(key, value.arn)
        if holder is not None and holder.is_fresh(now):
            return holder.copy(), None
        if value is not None and replica is None and again:
            return None, None
        previous = flight.previous
        held = previous.value if previous is not None else None
        if held is not None and not self.is_newest(key, held):
            previous = self.holder(key, held.arn) or previous
        error = answer if isinstance(answer, SecretCacheError) else behind_error(key.secret_id, answer, replica)
        operation, attempts = (fetch.operation, fetch.attempts) if fetch is not None else ("GetSecretValue", None)
        fields = Facts(operation, secret_name=key.secret_id, attempt=attempts, error=error)
        return failed_entry(previous, error, key.secret_id, now, self._retry, fields)

    def is_newest(self, key: CacheKey, value: SecretValue) -> bool:
        """Whether ``value`` is the newest version served of its label (or none was)."""
        label = _label(key, value)
        mark = self._marks.get(label) if label is not None else None
        return mark is None or mark.version_id == value.version_id

    def advance(
        self,
        key: CacheKey,
        value: SecretValue,
        seq: int,
        effects: Effects,
        *,
        keep: CacheKey | None,
        spares: Iterable[tuple[CacheKey, Entry | None]] = (),
    ) -> None:
        """Record ``value`` (admitted) as served; if it is a new version of its label, retire the older ones.

        Raises the label's mark (:meth:`raise_mark`); on a change of version, retires every
        entry of the label holding another version (:meth:`retire_older`, sparing ``keep``'s
        from the drop) and every spare entry (``(key, entry)`` pairs the caller keeps outside
        the table, such as the entries fetches keep to serve stale) that holds one.
        """
        if not self.raise_mark(key, value, seq, effects):
            return
        self.retire_older(key, value, keep=keep)
        for other, spare in spares:
            if spare is not None and supersedes(key, value, other, spare.value):
                spare.retire()

    def raise_mark(self, key: CacheKey, value: SecretValue, seq: int, effects: Effects) -> bool:
        """Record ``value`` (admitted) as the newest served of its label; report a change of version.

        Returns:
            Whether the label's version changed (older entries of it must then be retired).
        """
        label = _label(key, value)
        if label is None:
            return False
        mark = self._marks.pop(label, None)
        if mark is not None and mark.version_id == value.version_id:
            self._marks[label] = mark  # the same version: most recent again, raised when first served
            return False
        rolled_back: tuple[str, ...] = ()
        created = value.created_date
        if mark is not None:
            rolled_back = tuple(version for version in mark.rolled_back if version != value.version_id)
            if not mark.precedes(value):  # a step back the primary vouched for: a rollback
                rolled_back = (mark.version_id, *rolled_back)[:ROLLED_BACK]
                created = max((date for date in (created, mark.created) if date is not None), default=None)
        self._marks[label] = Mark(value.version_id, created, seq, rolled_back)
        # The left side never exceeds the number of marks of labels neither held nor ``label``:
        # past 2 x max_size of those, all but the max_size most recent go (so the scan it takes
        # forgets more than max_size marks, and costs O(1) per raise amortized).
        if len(self._marks) - len(self._held) - (label not in self._held) > 2 * self.max_size:
            self._forget_marks(serving=label)
        if mark is None:
            return False
        effects.changes.append(SecretChange(value.name, value.arn, label[1], mark.version_id, value.version_id))
        effects.count("changes")
        return True

    def retire_older(self, key: CacheKey, value: SecretValue, *, keep: CacheKey | None = None) -> None:
        """Retire the entries of ``value``'s label that hold another version; drop all but ``keep``'s.

        A change is reported once per ARN and label, so a listener (or any reader) that reads the
        secret by its name, ARN or partial ARN must get the new version, not one cached earlier.
        ``keep`` is the key about to be replaced by an install (which counts the refresh).
        """
        for other, entry in list(self.entries.items()):
            if supersedes(key, value, other, entry.value):
                entry.retire()
                if other != keep:
                    self.pop(other)

    def newest(self, key: CacheKey, arn: str) -> tuple[str | None, Entry | None]:
        """The newest version served of ``key``'s label (ARN ``arn``), if any, and the entry holding it longest."""
        mark = self._marks.get((arn, key.stage))
        return (None, None) if mark is None else (mark.version_id, self.holder(key, arn))

    def holder(self, key: CacheKey, arn: str) -> Entry | None:
        """The entry holding the newest version served of ``key``'s label (ARN ``arn``) longest, if any."""
        label = (arn, key.stage)
        mark = self._marks.get(label)
        if mark is None:
            return None
        holders = [
            entry
            for other, entry in self.entries.items()
            if entry.value is not None
            and entry.value.version_id == mark.version_id
            and _label(other, entry.value) == label
        ]
        return max(holders, key=lambda entry: entry.fresh_until, default=None)

    def _forget_marks(self, *, serving: Label) -> None:
        """Forget the oldest marks of labels no entry holds, keeping the ``max_size`` most recently raised.

        ``serving`` is the label whose mark was just raised: its entry is installed just after,
        under the same lock, so it counts as held.
        """
        idle = [label for label in self._marks if label not in self._held and label != serving]
        for label in idle[: len(idle) - self.max_size]:
            del self._marks[label]

    def _release(self, key: CacheKey, entry: Entry) -> None:
        """Forget ``entry`` (replaced, or gone from ``entries``): in the hot index, and as a holder of its label."""
        if key.current and self.current.get(key.secret_id) is entry:
            del self.current[key.secret_id]
        label = _label(key, entry.value)
        if label is not None:
            self._held[label] -= 1
            if self._held[label] <= 0:
                del self._held[label]

    # -- eviction ------------------------------------------------------------------------------

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
            self._release(key, entry)
            effects.count("evictions")

    def matches(self, key: CacheKey, targets: set[str]) -> bool:
        """Whether an entry or flight of ``key`` may belong to the secret with ``targets``.

        Once an entry holds a value, its ARN and name say which secret the key reads, so the
        key's own spelling is not guessed at: a partial ARN ``...:secret:a-bcdefg`` would
        otherwise also pass for the full ARN of a secret ``a`` (:func:`aliases` over-matches).
        """
        entry = self.entries.get(key)
        value = entry.value if entry is not None else None
        if value is not None and value.arn:
            names = aliases(value.arn)
            names.update((value.name, key.secret_id))
        else:
            names = aliases(key.secret_id)
        return not names.isdisjoint(targets)


def _same_version(held: SecretValue | None, value: SecretValue | None) -> bool:
    """Whether two values are one version: a known, equal version id and the same content."""
    return (
        held is not None
        and value is not None
        and bool(value.version_id)
        and held.version_id == value.version_id
        and held.secret_string == value.secret_string
        and held.secret_binary == value.secret_binary
    )


def _label(key: CacheKey, value: SecretValue | None) -> Label | None:
    """The label a value read under ``key`` is a version of.

    ``None`` without a value, for a version id lookup, or for a value whose ARN or version id
    is unknown (a minimal answer, as test stubs give): such a value is never a change.
    """
    if value is None or not value.arn or not value.version_id or key.version_id is not None:
        return None
    return value.arn, key.stage


def supersedes(key: CacheKey, value: SecretValue, other_key: CacheKey, other: SecretValue | None) -> bool:
    """Whether ``value`` (read under ``key``) is another version of the label ``other`` (under ``other_key``) holds."""
    label = _label(key, value)
    return (
        label is not None
        and other is not None
        and other.version_id != value.version_id
        and _label(other_key, other) == label
    )
