"""Monotonic reads and one ``on_change`` per real change, against a Hypothesis model.

A real ``SecretCache`` over in-process moto, with a replica Region, reads a secret by name, full
ARN and partial ARN (three keys of one label) while rules put new versions (the replica lagging
behind some of them, ``tests/replication.py``), roll AWSCURRENT back, make the primary Region
throttle during a read, hold reads whose answer arrives late (held before the request reaches
moto, or after moto answered), jump the clock far past the TTL and the retry deadline while they
are held (a process frozen mid-fetch, as Lambda freezes one), invalidate while they are held
(``invalidate()``, or a change event naming the secret's ARN in the replica Region), force
refreshes and move the clock. The cache holds ``MAX_SIZE`` entries, fewer than the spellings,
and a rule reads other secrets that never change: it serves ``2 * MAX_SIZE + 1`` labels, more than its entries hold,
and as many as it remembers the newest version of (``Table``: no mark of a label is forgotten
while at most ``2 * MAX_SIZE`` other labels not held have one).

The model is the history of AWSCURRENT per secret: the version it pointed to after each change,
its *positions*. A read is placed at the first position holding its version at or after the
*floor*: the highest position of the reads that ended before it started. No such position means
the cache went back in time (a rollback is a new position, so a confirmed rollback is fine; a
flip back to the version rolled back from is not). The ``on_change`` reports of a secret must
chain (each one's old version is the previous one's new) and climb the positions strictly, so
each real change is reported once and never as a step back and forth; every version a read
returned is one the listener heard of (or the first served); ``stats().changes`` counts the
reports. While the primary answers, a read that did not join another's fetch never returns a
version that stopped being AWSCURRENT a TTL or more before it started (the TTL counts from the
start of the fetch that read it, however long that fetch was held or frozen). A ``watch()`` of
the secret under each spelling (its values are JSON documents) must climb the same way: each
object it hands ``on_change`` is of a later position than the one before, and
:attr:`SecretWatch.current` never goes back.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from moto import mock_aws

from secretcache import RetryPolicy, SecretCache, SecretChange, SecretUnavailableError, SecretWatch
from secretcache.events import invalidate_from_event
from tests import atomic_moto
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock, wait_until
from tests.replication import Lag
from tests.test_model import machine_settings, sync_moto_current

REPLICA = "us-west-2"
SECRETS = ("app/db",)  # one secret, so the rules meet on it often; spellings make it several keys
SPELLINGS = ("name", "arn", "partial")
MAX_SIZE = 2
OTHERS = tuple(f"app/other{index}" for index in range(2 * MAX_SIZE + 1 - len(SECRETS)))
"""Secrets read, never changed: with ``SECRETS``, the cache serves ``2 * MAX_SIZE + 1`` labels."""
TTL = 10.0
RETRY = RetryPolicy(attempts=2, initial_delay=0.0, max_delay=0.0, failure_backoff=1.0, max_failure_backoff=4.0)
T = TypeVar("T")


@dataclass(frozen=True)
class Document:
    """What every version of the secret holds (``MonotonicMachine._value``), as watches validate it."""

    secret: str
    n: int


HOLD: contextvars.ContextVar[Late | None] = contextvars.ContextVar("HOLD", default=None)
"""The late read whose calls the current context makes (a fetch thread runs in a copy of it)."""


@dataclass
class Late:
    """A read whose GetSecretValue calls are held, before the request or after the answer."""

    name: str
    secret_id: str
    before: bool  # held before moto sees the request (its answer is as of the release)
    start: int
    fail: bool = False  # once released, its held call fails (a connection that died while frozen)
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    result: Future[str | None] = field(default_factory=Future)


def _run(function: Callable[[], T], context: contextvars.Context | None = None) -> Future[T]:
    """Run ``function`` on a daemon thread (in ``context`` if given): a hang fails the example, never pytest."""
    future: Future[T] = Future()

    def body() -> None:
        try:
            future.set_result(function())
        except BaseException as err:
            future.set_exception(err)

    target = body if context is None else (lambda: context.run(body))
    threading.Thread(target=target, name="model-read", daemon=True).start()
    return future


def _result(future: Future[T], what: str) -> T:
    try:
        return future.result(timeout=WATCHDOG)
    except FutureTimeout:
        raise AssertionError(f"{what} did not return within {WATCHDOG:g} s: a deadlock?") from None


class MonotonicMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.mock = mock_aws()
        self.mock.start()
        # moto handles one Secrets Manager request at a time, as the service is atomic per call
        # (tests/atomic_moto.py, installed by conftest).
        self.admin = boto3.client("secretsmanager", region_name=REGION)
        client = boto3.client("secretsmanager", region_name=REGION)
        replica = boto3.client("secretsmanager", region_name=REPLICA)
        self.calls = Calls(client)
        for each in (client, replica):
            each.meta.events.register("before-call.secretsmanager.GetSecretValue", self._hold_before)
            each.meta.events.register("after-call.secretsmanager.GetSecretValue", self._hold_after)
        self.clock = FakeClock()
        self.cache = SecretCache(
            client,
            ttl=TTL,
            max_size=MAX_SIZE,
            ttl_jitter=0.0,
            refresh_ahead=None,
            replica_regions=[replica],
            replica_ttl=5.0,
            retry=RETRY,
            clock=self.clock,
        )
        self.lock = threading.Lock()
        self.changes: list[SecretChange] = []
        self.cache.on_change(self._heard)
        self._ticks = itertools.count()
        self.history: dict[str, list[str]] = {}  # AWSCURRENT after each change: its positions
        self.since: dict[str, list[float]] = {}  # the clock when each position began
        self.primary_down = -float("inf")  # the clock at the end of the latest step the primary failed in
        self.reads: dict[str, list[tuple[int, int, int]]] = {name: [] for name in SECRETS}  # (start, end, position)
        self.returned: dict[str, set[str]] = {name: set() for name in SECRETS}
        self.first: dict[str, str] = {}  # the first version a read of the secret returned
        # The value of the read that returned first, as it returned (on its thread): reads are
        # recorded later, in the model's order, which is not the order in which they returned.
        self.first_value: dict[str, str] = {}
        self.spellings: dict[str, dict[str, str]] = {}
        self.lags = {name: Lag(name, REPLICA) for name in SECRETS}
        self.late: list[Late] = []
        self.count = 0
        for name in SECRETS:
            arn = self.admin.create_secret(Name=name, SecretString=self._value(name))["ARN"]
            self.admin.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": REPLICA}])
            self.spellings[name] = {"name": name, "arn": arn, "partial": arn[:-7]}
            self.history[name] = [self._current(name)]
            self.since[name] = [self.clock()]
        for name in OTHERS:  # replicated too: read while the primary fails, the replica answers
            self.admin.create_secret(Name=name, SecretString=name)
            self.admin.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": REPLICA}])
        # One watch per spelling of the first secret; what each handed on_change, in order.
        self.watched: dict[str, list[str]] = {spelling: [] for spelling in SPELLINGS}
        self.watch_positions = dict.fromkeys(SPELLINGS, 0)  # of the last ``current`` read
        self.watches: dict[str, SecretWatch[Document]] = {
            spelling: self.cache.watch(
                self.spellings[SECRETS[0]][spelling],
                Document,
                on_change=functools.partial(self._watched, spelling),
            )
            for spelling in SPELLINGS
        }

    def teardown(self) -> None:
        try:
            for late in self.late:
                late.gate.set()
            for late in self.late:
                _result(late.result, "a late read at teardown")
            self.cache.close()
        finally:
            self.mock.stop()

    # -- backend and hooks --------------------------------------------------------------------

    def _value(self, name: str) -> str:
        self.count += 1
        return json.dumps({"secret": name, "n": self.count})

    def _current(self, name: str) -> str:
        return next(
            version_id
            for version_id, (stages, _) in atomic_moto.versions(name, REGION).items()
            if "AWSCURRENT" in stages
        )

    def _tick(self) -> int:
        with self.lock:
            return next(self._ticks)

    def _heard(self, change: SecretChange) -> None:
        with self.lock:
            self.changes.append(change)

    def _watched(self, spelling: str, document: Document) -> None:
        with self.lock:
            self.watched[spelling].append(json.dumps(asdict(document)))

    def _hold(self, before: bool) -> None:
        late = HOLD.get()
        if late is not None and late.before == before and not late.gate.is_set():
            late.arrived.set()
            assert late.gate.wait(WATCHDOG), "a held call was never released"
            if late.fail:
                late.fail = False  # its retry goes through
                raise ReadTimeoutError(endpoint_url="https://secretsmanager")

    def _hold_before(self, **_: Any) -> None:
        self._hold(before=True)

    def _hold_after(self, **_: Any) -> None:
        self._hold(before=False)

    # -- the model -----------------------------------------------------------------------------

    def _version(self, name: str, value: str | None) -> str | None:
        """The version id whose value ``value`` is (values are unique per put)."""
        if value is None:
            return None
        for version_id, (_, held) in atomic_moto.versions(name, REGION).items():
            if held == value:
                return version_id
        raise AssertionError(f"{name} returned {value!r}, which is no version of it")

    def _returned(self, name: str, value: str | None) -> str | None:
        """On the reading thread, as a read returns ``value``: note it if it is the first to return."""
        if value is not None:
            with self.lock:
                self.first_value.setdefault(name, value)
        return value

    def _record(self, name: str, start: int, value: str | None) -> None:
        """Place a read that returned ``value`` (``None``: it raised) against the history."""
        end = self._tick()
        version = self._version(name, value)
        if version is None:
            return
        history = self.history[name]
        with self.lock:
            floor = max((position for _, ended, position in self.reads[name] if ended < start), default=0)
            positions = [index for index in range(floor, len(history)) if history[index] == version]
            assert positions, (
                f"{name}: a read returned {version}, older than position {floor} ({history[floor]}) "
                f"which a read that ended before it started had returned; history {history}"
            )
            self.reads[name].append((start, end, positions[0]))
            self.returned[name].add(version)
            if value == self.first_value.get(name):
                self.first[name] = version

    def _check_ttl(self, name: str, began: float, value: str | None) -> None:
        """A read that began at ``began`` and fetched or hit (joined no other's fetch) returned ``value``:
        it was AWSCURRENT less than a TTL before, unless the primary failed lately (stale or
        replica values then, within their own bounds)."""
        version = self._version(name, value)
        if version is None or began < self.primary_down + TTL:
            return
        history, since = self.history[name], self.since[name]
        ends = [since[index + 1] if index + 1 < len(history) else float("inf") for index in range(len(history))]
        assert any(history[index] == version and ends[index] > began - TTL for index in range(len(history))), (
            f"{name}: a read at {began:g} returned {version}, not AWSCURRENT since "
            f"{max(ends[i] for i in range(len(history)) if history[i] == version):g} (TTL {TTL:g}); history {history}"
        )

    def _read(self, name: str, secret_id: str, force: bool) -> None:
        """A read; if it joins a fetch a late read holds, that late answer arrives meanwhile."""
        start, began = self._tick(), self.clock()
        misses = self.cache.stats().misses

        def read() -> str | None:
            try:
                return self._returned(name, self.cache.get_secret(secret_id, force_refresh=force).secret_string)
            except SecretUnavailableError:
                return None  # the primary fails and nothing servable is left

        future = _run(read)
        joined = [late for late in self.late if late.secret_id == secret_id]
        if joined:  # it waits for the held fetch of its key (or took its value): let the answer arrive
            wait_until(lambda: future.done() or self.cache.stats().misses > misses)
            for late in joined:
                self._release(late)
        value = _result(future, f"a read of {secret_id}")
        self._record(name, start, value)
        if not joined:
            self._check_ttl(name, began, value)

    def _release(self, late: Late) -> None:
        self.late.remove(late)
        late.gate.set()
        self._record(late.name, late.start, _result(late.result, f"a late read of {late.secret_id}"))

    def _settle(self) -> None:
        """Wait until the fetches not held by a late read are over (their retries end behind readers)."""
        held = sum(1 for late in self.late if late.arrived.is_set())
        wait_until(lambda: self.cache.stats().in_flight <= held)

    # -- rules ---------------------------------------------------------------------------------

    @rule(name=st.sampled_from(SECRETS), spelling=st.sampled_from(SPELLINGS), force=st.booleans(), down=st.booleans())
    def read(self, name: str, spelling: str, force: bool, down: bool) -> None:
        """A read; ``down``: the primary Region throttles while it runs (and its retries with it)."""
        outage = self.calls.fail_with("ThrottlingException") if down else None
        if down:  # this very read may be served a stale or replica value: the TTL check skips it
            self.primary_down = self.clock()
        try:
            self._read(name, self.spellings[name][spelling], force)
            self._settle()
        finally:
            if outage is not None:
                outage()
                self.primary_down = self.clock()

    @precondition(lambda self: len(self.late) < 2)
    @rule(name=st.sampled_from(SECRETS), spelling=st.sampled_from(SPELLINGS), before=st.booleans())
    def start_late_read(self, name: str, spelling: str, before: bool) -> None:
        """A read whose call is held: before moto answers, or with moto's answer on its way."""
        if any(late.secret_id == self.spellings[name][spelling] for late in self.late):
            return  # it would join that one's fetch: ``read`` covers joining a held fetch
        late = Late(name, self.spellings[name][spelling], before, self._tick())
        context = contextvars.copy_context()
        context.run(HOLD.set, late)

        def read() -> str | None:
            try:
                return self._returned(name, self.cache.get_secret(late.secret_id).secret_string)
            except SecretUnavailableError:
                return None

        late.result = _run(read, context)
        wait_until(lambda: late.arrived.is_set() or late.result.done())  # held, or served without a call
        if late.result.done():
            self._record(name, late.start, _result(late.result, "a read"))
        else:
            self.late.append(late)

    @precondition(lambda self: self.late)
    @rule(data=st.data())
    def release_late_read(self, data: st.DataObject) -> None:
        self._release(self.late[data.draw(st.integers(0, len(self.late) - 1), label="late")])
        self._settle()

    @rule(
        picks=st.lists(st.sampled_from(list(itertools.product(SECRETS, SPELLINGS))), min_size=1, max_size=MAX_SIZE),
        down=st.booleans(),
        emptied=st.booleans(),
    )
    def prefetch(self, picks: list[tuple[str, str]], down: bool, emptied: bool) -> None:
        """``prefetch()`` of some spellings (``down``: the primary throttles, the replica answers, maybe lagging).

        ``emptied``: ``invalidate()`` first, so the entries are gone but the marks of the versions
        served stay (a replica's older answer is then refused with no newer value to keep).

        An id it reports no failure for is warmed: read at once (no put, no clock move between),
        it returns a value, with no API call and no miss unless the batch found a new version (a
        spelling it skipped as fresh held the old one: that entry is retired, not refilled). No
        read is checked when the prefetch evicted entries to make room (it may evict an id it
        skipped as fresh: the cache is full and LRU holds). A replica's answer older than a
        version served (refused) is reported as a failure, not as warmed. Ids a late read holds
        a fetch of are prefetched too (skipped: fetching) but not read after.
        """
        if emptied:
            self.invalidate(None, "name")
        start = self._tick()
        before = self.cache.stats()
        outage = self.calls.fail_with("ThrottlingException") if down else None
        try:
            ids = [self.spellings[name][spelling] for name, spelling in picks]
            failures = _result(_run(lambda: self.cache.prefetch(ids)), f"prefetch({ids})")
            assert set(failures) <= set(ids), f"prefetch failed for ids not asked: {sorted(set(failures) - set(ids))}"
            self._settle()
            held = {late.secret_id for late in self.late}
            after = self.cache.stats()
            evicted, changed = after.evictions > before.evictions, after.changes > before.changes
            for (name, _), secret_id in dict(zip(picks, ids, strict=True)).items():
                if secret_id in failures or secret_id in held or evicted:
                    continue
                was = self.cache.stats()

                def read(secret_id: str = secret_id, name: str = name) -> str | None:
                    try:
                        return self._returned(name, self.cache.get_secret(secret_id).secret_string)
                    except SecretUnavailableError:
                        return None

                value = _result(_run(read), f"a read of {secret_id} after prefetch()")
                now = self.cache.stats()
                calls = sum(now.api_calls.values()) - sum(was.api_calls.values())
                if value is None and changed:
                    # A spelling skipped as fresh held the version the batch replaced: its entry is
                    # retired, not refilled (docs/concepts.md), so the read fetched, from the
                    # replica while the primary fails or its outage episode's backoff lasts
                    # (moto's replica resolves no partial ARN).
                    continue
                assert value is not None, f"prefetch() warmed {secret_id}, whose read then failed"
                assert changed or (calls, now.misses - was.misses) == (0, 0), (
                    f"prefetch() warmed {secret_id}, whose read then made {calls} call(s)"
                )
                self._record(name, start, value)
        finally:
            if outage is not None:
                outage()
                self.primary_down = self.clock()
        self._settle()

    @rule(
        spelling=st.sampled_from(SPELLINGS),
        picks=st.lists(st.sampled_from(list(itertools.product(SECRETS[:1], SPELLINGS))), min_size=1, max_size=MAX_SIZE),
        lagging=st.booleans(),
        down=st.booleans(),
    )
    def rotate_then_prefetch(self, spelling: str, picks: list[tuple[str, str]], lagging: bool, down: bool) -> None:
        """A new version is served, the cache emptied, then prefetched: with the replica lagging and the
        primary down, the replica's answer is older than the version served, and no entry is left to serve."""
        name = SECRETS[0]
        self.put_value(name, lagging)
        self.read(name, spelling, force=True, down=False)
        self.prefetch(picks, down, emptied=True)

    @rule(names=st.permutations(OTHERS))
    def read_others(self, names: list[str]) -> None:
        """Reads of every secret that never changes: they evict the entries of ``SECRETS`` and add marks."""
        for name in names:

            def read(name: str = name) -> str | None:
                try:
                    return self.cache.get_secret_string(name)
                except SecretUnavailableError:
                    return None  # the primary fails (its backoff after a throttled read)

            assert _result(_run(read), f"a read of {name}") in {name, None}
        self._settle()

    @rule(spelling=st.sampled_from(SPELLINGS))
    def read_watch(self, spelling: str) -> None:
        """``current`` of a watch: never blocks; never older than what it held before."""
        name = SECRETS[0]
        version = self._version(
            name, json.dumps(asdict(_result(_run(lambda: self.watches[spelling].current), "current")))
        )
        history = self.history[name]
        floor = self.watch_positions[spelling]
        positions = [index for index in range(floor, len(history)) if history[index] == version]
        assert positions, f"watch by {spelling} went back to {version} from position {floor}; history {history}"
        self.watch_positions[spelling] = positions[0]
        self._settle()  # a due refresh it started in the background

    @rule(name=st.sampled_from([None, *SECRETS]), spelling=st.sampled_from(SPELLINGS), by_event=st.booleans())
    def invalidate(self, name: str | None, spelling: str, by_event: bool = False) -> None:
        """``invalidate()``; ``by_event``: a change event naming the secret's ARN in the replica Region instead."""
        if name is None or not by_event:
            self.cache.invalidate(None if name is None else self.spellings[name][spelling])
            return
        arn = self.spellings[name]["arn"].replace(f":{REGION}:", f":{REPLICA}:")
        event = {"source": "aws.secretsmanager", "detail-type": "Secret Label Updated", "resources": [arn]}
        event["detail"] = {"name": name}
        assert invalidate_from_event(self.cache, event) == [arn]

    @rule(name=st.sampled_from(SECRETS), lagging=st.booleans())
    def put_value(self, name: str, lagging: bool) -> None:
        """A new version; ``lagging``: the replica keeps what it holds now until a put that does not lag."""
        if lagging:
            self.lags[name].freeze()
        else:
            self.lags[name].catch_up()
        self.admin.put_secret_value(SecretId=name, SecretString=self._value(name))
        self.history[name].append(self._current(name))
        self.since[name].append(self.clock())

    @rule(name=st.sampled_from(SECRETS))
    def roll_back(self, name: str) -> None:
        """Move AWSCURRENT back to the AWSPREVIOUS version, as an operator undoing a rotation does."""
        held = atomic_moto.versions(name, REGION)
        previous = next((version for version, (labels, _) in held.items() if "AWSPREVIOUS" in labels), None)
        current = self.history[name][-1]
        if previous is None or previous == current:
            return
        self.admin.update_secret_version_stage(
            SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=previous, RemoveFromVersionId=current
        )
        sync_moto_current(name, previous)
        assert self.admin.get_secret_value(SecretId=name)["VersionId"] == previous  # moto serves the rollback
        self.history[name].append(previous)
        self.since[name].append(self.clock())

    @rule(seconds=st.sampled_from((1.0, 5.0, 11.0)))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.late)
    @rule(seconds=st.sampled_from((25.0, 1000.0)), fail=st.booleans())
    def freeze_held_reads(self, seconds: float, fail: bool) -> None:
        """The clock jumps past the TTL (25 s) or the retry deadline too (1000 s) while reads are held
        mid-call: a process frozen mid-fetch. ``fail``: their connections died meanwhile (the held
        calls fail once released, transiently: each is retried, the frozen time not counted)."""
        self.clock.advance(seconds)
        if fail:
            for late in self.late:
                late.fail = True

    # -- change reports ------------------------------------------------------------------------

    def _hear_all(self) -> None:
        """Wait until the listeners heard every change ``stats()`` counts (it counts them first)."""
        self._settle()

        def all_heard() -> bool:  # a fetch counts its changes, then calls the listeners on its thread
            counted = self.cache.stats().changes
            with self.lock:
                return len(self.changes) == counted

        try:
            wait_until(all_heard)
        except AssertionError:
            raise AssertionError(
                f"stats() counts {self.cache.stats().changes} changes, listeners heard others"
            ) from None

    @invariant()
    def every_change_is_reported_once_and_never_backwards(self) -> None:
        self._hear_all()
        with self.lock:
            changes = list(self.changes)
        by_name: dict[str, list[SecretChange]] = {}
        for change in changes:
            assert change.version_stage == "AWSCURRENT"
            by_name.setdefault(change.name, []).append(change)
        for name, reported in by_name.items():
            history = self.history[name]
            assert reported[0].old_version_id in history, f"{name}: {reported[0]} from no version it had"
            position = history.index(reported[0].old_version_id)
            for before, after in itertools.pairwise([None, *reported]):
                assert before is None or after.old_version_id == before.new_version_id, (
                    f"{name}: reports do not chain: {before} then {after}"
                )
                later = [index for index in range(position + 1, len(history)) if history[index] == after.new_version_id]
                assert later, f"{name}: {after} reports a step back (history {history})"
                position = later[0]
        assert self.cache.stats().changes == len(changes)

    @invariant()
    def every_watch_climbs(self) -> None:
        """What each watch hands ``on_change`` climbs the history, one later position per call."""
        self._settle()
        name = SECRETS[0]
        history = self.history[name]
        for spelling in SPELLINGS:
            with self.lock:
                watched = [self._version(name, value) for value in self.watched[spelling]]
            position = 0
            for version in watched:
                later = [index for index in range(position + 1, len(history)) if history[index] == version]
                assert later, f"watch by {spelling} went back: handed {watched} (history {history})"
                position = later[0]

    @invariant()
    def every_version_returned_was_reported(self) -> None:
        """Each version a read returned is the first served or one a change report announced.

        A change is counted before a read can return its version, and heard once all counted are
        (:meth:`_hear_all`): a version still unheard then was never reported.
        """
        self._hear_all()
        for name in SECRETS:
            with self.lock:
                news = {change.new_version_id for change in self.changes if change.name == name}
                unheard = self.returned[name] - news - ({self.first[name]} if name in self.first else set())
            assert not unheard, f"{name}: reads returned {unheard} but no change reported them"


# A failure takes a while to shrink (each example replays against moto); let it finish and print.
@pytest.mark.unmeasured  # randomized: run unmeasured (CONTRIBUTING.md, "Coverage")
@pytest.mark.timeout(600)
class TestMonotonicReadsAgainstModel(MonotonicMachine.TestCase):  # type: ignore[misc,valid-type]
    """Lagging replicas, spellings, late answers, invalidation mid-fetch and rollbacks never take a read back."""

    settings = machine_settings(examples=50, heavy_examples=300, steps=40, heavy_steps=60)
