"""The seam instrumentation plugs into: one :class:`Fetch` record per fetch, and its observer.

A cache's store has at most one :class:`Observer` (``Store.observer``, ``None`` when not
instrumented). The store calls it only around fetches, never on a hit, and never under its lock:

- :meth:`Observer.origin` in the thread that queues a background refresh (a read that crossed
  the refresh point), so the refresh can be related to what triggered it;
- :meth:`Observer.observe` in the thread that runs a fetch, as a context manager around the
  Secrets Manager call with its retries; the fetcher fills in ``attempts`` meanwhile.

:mod:`secretcache.otel` is the observer the library ships.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, Protocol

__all__ = ["FOREGROUND", "Fetch", "Observer", "Refresh"]

Refresh = Literal["foreground", "background", "forced", "prefetch"]
"""Why a fetch runs: a read waits for it, refresh-ahead, ``refresh()``/``force``, ``prefetch()``."""

FOREGROUND: Refresh = "foreground"


class Fetch:
    """One fetch (one Secrets Manager request with its retries), as an observer sees it.

    Holds ids, labels and counts, never a value. ``secret_ids`` has one id, or up to 20 for a
    ``BatchGetSecretValue`` call. ``attempts`` counts the calls made so far, and ``replica``
    names the replica Region that answered when the primary failed. The store sets ``falter``,
    which the fetcher calls on the fetching thread each time an attempt fails transiently (so
    readers holding a value they may serve stop waiting for the retries).
    """

    __slots__ = (
        "attempts",
        "falter",
        "operation",
        "origin",
        "refresh",
        "replica",
        "secret_ids",
        "version_id",
        "version_stage",
    )

    def __init__(
        self,
        operation: str,
        secret_ids: tuple[str, ...],
        *,
        refresh: Refresh,
        origin: object = None,
        version_stage: str | None = None,
        version_id: str | None = None,
    ) -> None:
        self.operation = operation
        self.secret_ids = secret_ids
        self.refresh = refresh
        self.origin = origin
        self.version_stage = version_stage
        self.version_id = version_id
        self.attempts = 0
        self.replica: str | None = None
        self.falter: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Fetch({self.operation}, {len(self.secret_ids)} secret(s), {self.refresh}, attempts={self.attempts})"


class Observer(Protocol):
    """What the store calls around fetches; see the module docstring for when and where."""

    def origin(self) -> object:
        """In the thread that queues a background refresh: a token to find its trigger by."""

    def observe(self, fetch: Fetch) -> AbstractContextManager[object]:
        """A context manager around ``fetch``; an exception leaving it means the fetch failed."""
