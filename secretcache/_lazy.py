"""Things built on first use with no lock held: a cache's clients, and the Lambda default cache.

Building a boto3 client resolves credentials, and botocore logs that ("Found credentials in
environment variables." at INFO); credential providers and event handlers may run user code
there too, and a log handler may read the cache on the building thread (building a cache logs
too, through botocore, when it looks up the default Region). So a build runs with no lock held,
and:

* **One build for concurrent first readers.** A thread that needs the client while another
  thread builds it waits for that build, at most ``wait`` seconds (the retry deadline) in all,
  however many builds of other threads fail meanwhile, then fails its call
  (:class:`ClientUnusableError`, an outage), never hangs. A build takes about 45 ms alone; 16
  at once took 1.8 s each on two cores (they compete for the GIL), so readers share one build
  rather than race.
* **Re-entrant reads build again, a bounded number of times.** The building thread cannot wait
  for itself: if it needs the client again while building it (a log handler reading another
  secret while botocore logs the build), it builds one of its own, at most
  :data:`MAX_NESTED_BUILDS` deep; the first build to finish is kept, later ones are dropped.
  Deeper than that its call fails fast, so a handler that logs while reading cannot recurse
  forever. (Failing fast at once would be simpler, but the store remembers a failed fetch for
  the failure backoff: the handler's secret would then be unreadable for a while after the
  build, though nothing failed.)
* **A failed build is no verdict.** Its error reaches its own caller; the threads waiting for it
  wake up, and the next one to need the client builds again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from secretcache._errors import SecretAccessDeniedError, SecretCacheError, SecretUnavailableError

__all__ = ["MAX_NESTED_BUILDS", "ClientUnusableError", "Lazy", "drop_connections", "reading_credentials"]

T = TypeVar("T")

MAX_NESTED_BUILDS = 3
"""Builds a thread may start while it is already building the same client, further down its stack."""


class ClientUnusableError(Exception):
    """No client for this call: another thread's build is stuck, builds nest too deep, or it was refused.

    Attributes:
        kind: The typed error a call failing with this raises (the fetcher names the secret).
    """

    def __init__(self, message: str, kind: type[SecretCacheError] = SecretUnavailableError) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.kind))


def reading_credentials(build: Callable[[], T]) -> T:
    """``build()`` a client, refusing it if its credentials cannot be read (no secret chained).

    A ``credential_process`` that prints invalid JSON fails botocore's credential chain with a
    ``json.JSONDecodeError``, whose ``doc`` holds everything the process printed, keys included:
    the client is refused as having no usable credentials (``SecretAccessDeniedError``), with
    nothing of that error kept. So is a credential provider that cannot read its file or run its
    program (an ``OSError``: a missing ``credential_process``, web identity token file).

    Raises:
        ClientUnusableError: The credentials could not be read.
    """
    try:
        return build()
    except json.JSONDecodeError:
        pass  # raised below, after the except block: the JSON error is not its context
    except OSError as err:  # a credential_process program or web identity token file that is missing
        raise ClientUnusableError(
            f"no usable AWS credentials: {type(err).__name__}: {err}", SecretAccessDeniedError
        ) from None
    raise ClientUnusableError(
        "no usable AWS credentials: the credential_process printed no valid JSON", SecretAccessDeniedError
    )


def drop_connections(client: Any) -> None:
    """Close a boto3 client's pooled connections (in a forked child: never share the parent's)."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    close = getattr(session, "close", None)
    if callable(close):
        close()


class _Build:
    """A build in progress: the thread running it, how deep it nests there, and its end."""

    __slots__ = ("depth", "done", "thread")

    def __init__(self, thread: int) -> None:
        self.thread = thread
        self.depth = 1
        self.done = threading.Event()


class Lazy(Generic[T]):
    """A thing (a client) given at construction, or built by ``build`` on first use (see the module docstring).

    Thread-safe. Under its lock runs only attribute work; ``build`` runs with no lock held.

    Args:
        client: A ready one, used as is; ``None`` to build one on first use.
        build: Builds it; its exceptions reach the caller of :meth:`get` that ran it.
        wait: Longest a call of :meth:`get` waits for other threads' builds, in seconds, in all.
        what: What it is, for error messages.
        clock: Measures that wait, in seconds (default ``time.monotonic``; the waits themselves
            are real time, so only a test simulating a slow build gives another).
    """

    __slots__ = ("_build", "_building", "_client", "_clock", "_lock", "_owned", "wait", "what")

    def __init__(
        self,
        client: T | None,
        build: Callable[[], T],
        wait: float,
        what: str = "the Secrets Manager client",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._owned = client is None
        self._build = build
        self._building: _Build | None = None
        self._lock = threading.Lock()
        self.wait = wait
        self.what = what
        self._clock = clock

    def peek(self) -> T | None:
        """The thing if there is one yet; never builds."""
        return self._client

    def get(self) -> T:
        """The thing: the one there is, the one another thread is building, or one built now.

        Raises:
            ClientUnusableError: Other threads' builds outlasted :attr:`wait`, or builds nest
                deeper than :data:`MAX_NESTED_BUILDS` on this thread.
            Exception: Whatever the build raised (botocore's ``NoRegionError``, say).
        """
        client = self._client
        if client is not None:
            return client
        me = threading.get_ident()
        ends: float | None = None  # of this call's wait for other threads' builds, however many fail
        while True:
            late = ends is not None and self._clock() >= ends
            with self._lock:
                client = self._client
                if client is not None:
                    return client
                build = self._building
                outer = build is None and not late
                if outer:  # nobody builds: this thread does, unless its wait took all its time
                    build = self._building = _Build(me)
                nested = build is not None and not outer and build.thread == me
                too_deep = nested and build is not None and build.depth > MAX_NESTED_BUILDS
                if nested and not too_deep and build is not None:
                    build.depth += 1
            if build is None:  # late: other threads' builds failed for all of this call's wait
                raise ClientUnusableError(f"{self.what} could not be built by other threads within {self.wait:g} s")
            if outer:
                return self._run(build, outer=True)
            if too_deep:
                raise ClientUnusableError(
                    f"{self.what} is being built further up this thread's stack "
                    f"({build.depth} builds deep, reading the cache from a log handler?)"
                )
            if nested:
                return self._run(build, outer=False)
            if ends is None:
                ends = self._clock() + self.wait
            left = ends - self._clock()
            if left <= 0 or not build.done.wait(left):
                raise ClientUnusableError(f"{self.what} is still being built by another thread after {self.wait:g} s")
            # Built (the loop returns it), or that build failed: build again unless another thread
            # does, or the wait took this call's time.

    def _run(self, build: _Build, *, outer: bool) -> T:
        """Build with no lock held; keep the first one built; wake the waiters once one is."""
        made: T | None = None
        client: T | None = None
        try:
            made = self._build()
        finally:
            with self._lock:
                if made is not None and self._client is None:
                    self._client = made
                client = self._client
                if outer:
                    self._building = None
                else:
                    build.depth -= 1
            if outer or client is not None:
                build.done.set()
        assert client is not None  # the build returned, so a client is kept: this one or an earlier one
        return client

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, no build; a client built here dropped, a given one's connections closed."""
        self._lock = threading.Lock()
        self._building = None
        if self._owned:
            self._client = None
        else:
            drop_connections(self._client)

    def close(self) -> None:
        """Close the pooled connections of a thing built here; a given one is its owner's to close.

        A request in progress on another thread finishes on its connection, which is closed after.
        """
        if self._owned:
            drop_connections(self._client)
