"""The rotation recovery of the connection factories, written once for blocking and asyncio code.

:func:`plan` is a generator that decides; it never does I/O. It yields what it needs done (read
credentials, connect, sleep, wait for another caller's poll) and the factory that drives it does
that (blocking, or awaiting) and sends the result back, or throws the error in. The sync
:class:`~secretcache.db.ConnectionFactory` and the async
:class:`~secretcache.db.AsyncConnectionFactory` are thin drivers of the same plan (the two loops
are in ``_drive.py``), so they cannot drift apart.

:class:`Recovery` is what a factory remembers across connects (the versions the database refused,
the one that worked, when each label was last force-refreshed and whether that refresh is still in
flight, the rotation grace and its shared poll). Its lock guards only attribute work: it is never
held across a read, a connect or a sleep, so asyncio code may take it too. What the plan's
``finally`` clauses end never waits for it (:class:`~secretcache.db._handoff.HandOffLock`): the
garbage collector may run them, closing a connect its event loop left pending, on a thread that
holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from secretcache._errors import SecretCacheError
from secretcache.db._auth import Failure, scrub
from secretcache.db._credentials import DbCredentials
from secretcache.db._handoff import HandOffLock

__all__ = ["POLL_INTERVAL", "AwaitPoll", "AwaitRefresh", "Connect", "Op", "Read", "Recovery", "Sleep", "plan"]

POLL_INTERVAL = 0.25
"""Seconds between two polls of Secrets Manager by one factory during the rotation grace."""


@dataclass(frozen=True, slots=True)
class Read:
    """Read the secret's credentials (``stage`` ``None`` is AWSCURRENT).

    A missing label other than AWSCURRENT (no AWSPENDING: no rotation in progress) may come back
    as ``None`` or be thrown in as :class:`~secretcache.SecretNotFoundError`.
    """

    stage: str | None
    force: bool
    poll: bool = False  # a poll of the rotation grace (logged at DEBUG, not as a new recovery)
    # For the factory's log line only (so not compared): the logins this connect has had refused
    # so far, and the last refusal's error (already scrubbed).
    logins: int = field(default=0, compare=False)
    error: BaseException | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection with ``creds``; the driver's error is thrown back into the plan."""

    creds: DbCredentials


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` with the factory's sleep."""

    seconds: float


@dataclass(frozen=True, slots=True)
class AwaitPoll:
    """Wait until another caller's poll ends (its generation passes ``generation``), within a bound."""

    generation: int


@dataclass(frozen=True, slots=True)
class AwaitRefresh:
    """Wait until another caller's forced refresh of ``stage`` ends (passes ``generation``), within a bound."""

    stage: str | None
    generation: int


Op = Read | Connect | Sleep | AwaitPoll | AwaitRefresh


@dataclass(slots=True)
class _Turn:
    """Something one caller does for all (a poll, a forced refresh), and the callers waiting for its end.

    Changed only under :class:`Recovery`'s lock.
    """

    running: int = 0  # callers doing it now
    generation: int = 0  # how many times it has ended
    read: int = 0  # the generation at which it last ended with its read done (not cancelled, not interrupted)
    waiters: list[Callable[[], None]] = field(default_factory=list)

    def end(self) -> list[Callable[[], None]]:
        """End one run; the waiters to wake (after the lock is released)."""
        self.running -= 1
        self.generation += 1
        waiters, self.waiters = self.waiters, []
        return waiters

    def subscribe(self, generation: int, wake: Callable[[], None]) -> bool:
        """Wake ``wake`` at the end after ``generation``; ``False`` if it has come already."""
        if self.generation > generation or not self.running:
            return False
        self.waiters.append(wake)
        return True


class Recovery:
    """What one factory remembers across connects; thread-safe, shared by all its callers.

    Args:
        clock: Monotonic seconds (the cache's clock).
        min_refresh_interval: Seconds between forced refreshes of one label in the recovery.
        rotation_grace: Seconds to keep polling for a new version after the refresh and the
            AWSPENDING attempt failed too (0 turns the grace off).
    """

    def __init__(self, clock: Callable[[], float], min_refresh_interval: float, rotation_grace: float) -> None:
        self.clock = clock
        self.min_refresh_interval = min_refresh_interval
        self.rotation_grace = rotation_grace
        self._lock = HandOffLock()
        self._refreshed_at: dict[str | None, float] = {}
        self._refreshes: dict[str | None, _Turn] = {}  # forced refreshes per label
        self._refused: set[str] = set()  # versions the database refused
        self._working: DbCredentials | None = None
        self._grace_until: float | None = None  # the open grace period's end
        self._grace_spent: set[str] = set()  # versions tried in a grace that ran out without a success
        self._in_grace = 0  # callers given the open grace's deadline that have not left it yet
        self._poll = _Turn()
        self._next_poll = 0.0
        self._latest: DbCredentials | None = None
        self._latest_generation = 0  # the poll that read ``_latest``

    # -- connects --------------------------------------------------------------------------------

    def preferred(self, creds: DbCredentials) -> DbCredentials:
        """``creds``, or the version that worked while ``creds``' version is one the database refused."""
        with self._lock:
            working = self._working
            if creds.version_id in self._refused and working is not None and working.version_id not in self._refused:
                return working
        return creds

    def succeeded(self, creds: DbCredentials) -> None:
        """A connect with ``creds`` worked: remember them, close any grace."""
        with self._lock:
            self._working = creds
            self._refused.discard(creds.version_id)
            self._grace_until = None
            self._grace_spent.clear()

    def refused(self, creds: DbCredentials) -> None:
        """The database refused ``creds`` (an authentication failure)."""
        with self._lock:
            self._refused.add(creds.version_id)

    def claim_refresh(self, stage: str | None) -> tuple[bool, int | None]:
        """``(force, generation)``: how a caller reads ``stage`` in its recovery.

        ``force`` is ``True`` when it may force-refresh ``stage`` now (rate limit per factory and
        label); it then calls :meth:`finish_refresh` once the read ends, however it ends. Else,
        while another caller's forced refresh of ``stage`` is in flight, ``generation`` is the
        one to wait past (:meth:`subscribe_refresh`) before reading the cache, which would
        otherwise answer at once with the version cached before that refresh; ``None`` when
        none is in flight (the cache holds what the last one read).
        """
        now = self.clock()
        with self._lock:
            turn = self._refreshes.setdefault(stage, _Turn())
            last = self._refreshed_at.get(stage)
            if last is not None and now - last < self.min_refresh_interval:
                return False, (turn.generation if turn.running else None)
            self._refreshed_at[stage] = now
            turn.running += 1
            return True, None

    def finish_refresh(self, stage: str | None, *, read: bool) -> None:
        """End a forced refresh of ``stage`` claimed by :meth:`claim_refresh`, waking the callers waiting for it.

        ``read`` says its read ended (with an answer or an error); else it was abandoned (the
        caller cancelled or interrupted), and its fetch may still be running in the cache. Never
        waits for the lock (a ``finally`` clause's end: see :class:`HandOffLock`).
        """

        def end() -> list[Callable[[], None]]:
            turn = self._refreshes[stage]
            waiters = turn.end()
            if read:
                turn.read = turn.generation
            return waiters

        self._lock.hand_off(end)

    def abandoned(self, stage: str | None, generation: int) -> bool:
        """Whether the forced refreshes of ``stage`` that ended after ``generation`` were all abandoned (and one did).

        A caller that waited for one and reads a version already refused forces its read then: it
        joins the fetch the abandoned one left running in the cache (or makes it anew if the
        fetch was interrupted with it), where a plain read gets the version cached before it.
        """
        with self._lock:
            turn = self._refreshes[stage]
            return turn.generation > generation and turn.read <= generation

    def subscribe_refresh(self, stage: str | None, generation: int, wake: Callable[[], None]) -> bool:
        """Call ``wake`` when the forced refresh of ``stage`` after ``generation`` ends; ``False`` if it already has."""
        with self._lock:
            return self._refreshes.setdefault(stage, _Turn()).subscribe(generation, wake)

    # -- the rotation grace ----------------------------------------------------------------------

    def grace_deadline(self, tried: set[str]) -> float | None:
        """The end of the grace to wait in for a new version after ``tried`` failed, or ``None``.

        The grace opens on the first failure after a success and is shared by every caller. Once it
        ran out without a success, it stays closed for every version tried in it: later connects
        fail at once until one succeeds or a version not yet tried appears. A caller given a
        deadline calls :meth:`leave_grace` when it leaves, however it leaves.
        """
        if self.rotation_grace <= 0:
            return None
        now = self.clock()
        with self._lock:
            if tried <= self._grace_spent:
                return None
            if self._grace_until is None:
                self._grace_until = now + self.rotation_grace
                self._next_poll = max(self._next_poll, now + POLL_INTERVAL)
            if now >= self._grace_until:
                self._spend(tried)
                return None
            self._in_grace += 1
            return self._grace_until

    def leave_grace(self) -> None:
        """A caller given a deadline by :meth:`grace_deadline` leaves the grace, however it leaves.

        When the last one leaves a grace that neither ran out nor ended in a success (the
        callers met an error that is not about credentials, were cancelled or interrupted), the
        grace ends unspent: else it would stay open past its end, and the next refusal, even of
        a version never tried, would find it run out and get no grace at all. Never waits for
        the lock (a ``finally`` clause's end: see :class:`HandOffLock`).
        """

        def leave() -> tuple[()]:
            self._in_grace -= 1
            if not self._in_grace:
                self._grace_until = None
            return ()

        self._lock.hand_off(leave)

    def expire(self, tried: set[str]) -> None:
        """The grace ran out without a success; ``tried`` are the versions the caller tried."""
        with self._lock:
            self._spend(tried)

    def _spend(self, tried: set[str]) -> None:
        self._grace_until = None
        self._grace_spent.update(tried)

    def claim_poll(self) -> tuple[int, float | None]:
        """``(generation, delay)``: poll after ``delay`` seconds, or (``None``) wait for the running poll."""
        now = self.clock()
        with self._lock:
            poll = self._poll
            if poll.running:
                return poll.generation, None
            poll.running = 1
            return poll.generation, max(0.0, self._next_poll - now)

    def finish_poll(self, latest: DbCredentials | None) -> None:
        """End the running poll with what it read, and wake the callers waiting for it.

        Never waits for the lock (a ``finally`` clause's end: see :class:`HandOffLock`).
        """
        next_poll = self.clock() + POLL_INTERVAL

        def end() -> list[Callable[[], None]]:
            waiters = self._poll.end()
            self._next_poll = next_poll
            if latest is not None:
                self._latest = latest
                self._latest_generation = self._poll.generation
            return waiters

        self._lock.hand_off(end)

    def subscribe(self, generation: int, wake: Callable[[], None]) -> bool:
        """Call ``wake`` when the poll after ``generation`` ends; ``False`` if it already has."""
        with self._lock:
            return self._poll.subscribe(generation, wake)

    def polls(self) -> int:
        """How many polls have ended (the current generation)."""
        with self._lock:
            return self._poll.generation

    def latest(self, since: int) -> DbCredentials | None:
        """What the last poll read, if that poll ended after ``since`` polls had; else ``None``.

        A caller passes the count from before its own first read, so it never takes for new a
        version some poll read long before (which its own read may have superseded).
        """
        with self._lock:
            return self._latest if self._latest_generation > since else None


def plan(recovery: Recovery, classify: Callable[[BaseException], Failure]) -> Generator[Op, Any, Any]:
    """Open a connection with the secret's credentials, recovering from a rotation; return it.

    1. Connect with AWSCURRENT as cached (or the version that worked, while AWSCURRENT still
       holds one the database refused).
    2. On an authentication failure: force-refresh AWSCURRENT (rate-limited; a caller refused
       while another's forced refresh of the label is in flight waits for it, then reads the
       cache) and, if the version changed, connect with it; then AWSPENDING the same way. A
       failure that only may be one (:attr:`Failure.UNKNOWN`) gets that refresh of AWSCURRENT
       and its retry, nothing more.
    3. If that failed too (after an authentication failure): poll AWSCURRENT for a new version
       during the rotation grace (one shared poll per factory, at most every
       :data:`POLL_INTERVAL` seconds) and connect with each new version found.
    4. Raise the first error. Any error that is not about credentials is raised at once; a read
       of Secrets Manager that fails on the way is a label with nothing new, never raised.
    """
    since = recovery.polls()  # polls ending from now on read a version at least as new as ours
    first: DbCredentials = yield Read(None, False)
    creds = recovery.preferred(first)
    try:
        connection = yield Connect(creds)
    except Exception as error:
        scrub(error)  # before it goes anywhere: psycopg keeps the password on its errors
        failure = classify(error)
        if failure is Failure.OTHER:
            raise
        recovery.refused(creds)
        return (yield from _recover(recovery, classify, error, creds, failure, since, first.version_id))
    recovery.succeeded(creds)
    return connection


def _recover(
    recovery: Recovery,
    classify: Callable[[BaseException], Failure],
    error: Exception,
    failed: DbCredentials,
    failure: Failure,
    since: int,
    current: str,
) -> Generator[Op, Any, Any]:
    tried = {failed.version_id}  # one login per version: its size is the count of logins refused
    last: Exception = error
    unknown = failure is Failure.UNKNOWN  # only may be about credentials: one refresh and one retry, no more
    stages: tuple[str | None, ...] = (None,) if unknown else (None, "AWSPENDING")
    for stage in stages:
        force, generation = recovery.claim_refresh(stage)
        abandoned = read = False
        if generation is not None:
            # Another connect's forced refresh of this label is in flight: its answer, once the
            # cache has it, not the version cached before it (which this connect was refused).
            yield AwaitRefresh(stage, generation)
            abandoned = recovery.abandoned(stage, generation)
        try:
            creds: DbCredentials | None = yield Read(stage, force, logins=len(tried), error=last)
            if abandoned and (creds is None or creds.version_id in tried):
                # That refresh's task was cancelled before its answer, and its fetch may still be
                # running in the cache: a forced read joins it (or fetches, if it ended unanswered).
                creds = yield Read(stage, True, logins=len(tried), error=last)
            read = True
        except SecretCacheError:
            # No AWSPENDING (no rotation in progress), or Secrets Manager failing (throttled, an IAM
            # policy that allows AWSCURRENT only): nothing new from this label. The login error, not
            # this one, is what the connect raises if nothing works.
            read = True
            continue
        finally:
            if force:
                recovery.finish_refresh(stage, read=read)
        if creds is None or creds.version_id in tried:
            continue
        tried.add(creds.version_id)
        opened, refusal = yield from _attempt(recovery, classify, creds)
        if opened is not None:
            return opened
        last = refusal if refusal is not None else last
    # The grace is about the versions Secrets Manager gave: not the older one that used to work
    # (tried first while AWSCURRENT held a refused version), or a typo would cost a grace each.
    secret_versions = (tried | {current}) - ({failed.version_id} if failed.version_id != current else set())
    deadline = None if unknown else recovery.grace_deadline(secret_versions)
    # The clock ends the grace; the count of rounds bounds it too, should the clock stand still.
    rounds = int(recovery.rotation_grace / POLL_INTERVAL) + 2
    try:
        while deadline is not None:
            # First what a poll already found (one that ended while this caller read and failed: it
            # connects at once, instead of polling again), then after each poll what that one read.
            creds = recovery.latest(since)
            if creds is not None and creds.version_id not in tried:
                tried.add(creds.version_id)
                opened, refusal = yield from _attempt(recovery, classify, creds)
                if opened is not None:
                    return opened
                last = refusal if refusal is not None else last
            if recovery.clock() >= deadline or rounds <= 0:
                recovery.expire(secret_versions | (tried - {failed.version_id}))
                break
            rounds -= 1
            generation, delay = recovery.claim_poll()
            if delay is None:
                yield AwaitPoll(generation)
            else:
                latest: DbCredentials | None = None
                try:
                    if delay > 0:
                        yield Sleep(delay)
                    latest = yield Read(None, True, poll=True, logins=len(tried), error=last)
                except SecretCacheError:
                    pass  # Secrets Manager failing too: keep waiting for the grace to end
                finally:
                    recovery.finish_poll(latest)
    finally:
        if deadline is not None:
            recovery.leave_grace()  # however it leaves: a grace nobody waits in any more ends
    raise error


def _attempt(
    recovery: Recovery, classify: Callable[[BaseException], Failure], creds: DbCredentials
) -> Generator[Op, Any, Any]:
    """Connect with ``creds``: ``(connection, None)``, or ``(None, error)`` after an authentication failure."""
    try:
        connection = yield Connect(creds)
    except Exception as error:
        scrub(error)
        if classify(error) is Failure.OTHER:
            raise
        recovery.refused(creds)
        return None, error
    recovery.succeeded(creds)
    return connection, None
