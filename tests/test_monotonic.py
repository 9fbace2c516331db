"""Monotonic reads: once the cache returned a version of a label, it never returns an older one.

Each way back in time the issue found gets its regression test: a lagging replica, a late answer
under another spelling, an orphaned fetch; then the rollback the cache must accept, and a stress
run of threads and asyncio tasks with throttling and invalidation that checks the rule in
real-time order. Lag is moto's own replica answering from a snapshot (``tests/replication.py``);
late answers are held in botocore's ``after-call`` event, after moto answered.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from secretcache import AsyncSecretCache, RetryPolicy, SecretCache, SecretChange, SecretUnavailableError
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock, quiescent
from tests.replication import Lag
from tests.test_cache import make_cache, rotate
from tests.threads import Held, serialize_backend

REPLICA = "us-west-2"
THROTTLING = "ThrottlingException"


@pytest.fixture
def replica(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name=REPLICA)


def create(admin: Any, name: str, value: str) -> str:
    arn: str = admin.create_secret(Name=name, SecretString=value)["ARN"]
    admin.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": REPLICA}])
    return arn


def version_of(admin: Any, name: str) -> str:
    version: str = admin.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["VersionId"]
    return version


def test_a_lagging_replica_never_takes_the_cache_back(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock
) -> None:
    """Primary served v2, then fails; a replica still on v1 answers: v2 stays served (stale), no change reported."""
    create(admin, "db", "pw-1")
    lag = Lag("db", REPLICA)
    replica_calls = Calls(replica)
    cache = make_cache(client, clock, replica_regions=[replica])
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    assert cache.get_secret_string("db") == "pw-1"
    lag.freeze()  # the replica keeps answering v1
    rotate(admin, "db", "pw-2")
    clock.advance(61)
    assert cache.get_secret_string("db") == "pw-2"  # from the primary
    assert [change.new_version_id for change in changes] == [version_of(admin, "db")]
    stop = calls.fail_with(THROTTLING)
    clock.advance(61)
    for _ in range(3):  # the first read at the primary's first failure; then while it backs off
        assert cache.get_secret_string("db") == "pw-2"
        quiescent(cache)
        clock.advance(0.5)
    assert replica_calls["GetSecretValue"] >= 1, "the replica was not asked"
    stats = cache.stats()
    assert stats.stale_served == 3
    assert (stats.changes, len(changes)) == (1, 1)  # no v2 -> v1, and no v1 -> v2 on recovery below
    stop()
    lag.catch_up()
    clock.advance(120)
    assert cache.get_secret_string("db") == "pw-2"
    assert (cache.stats().changes, len(changes)) == (1, 1)


def served_newer_than_the_replica(client: Any, admin: Any, replica: Any, clock: FakeClock) -> tuple[SecretCache, Lag]:
    """A cache with a replica that stays on pw-1 (its ``Lag`` frozen) and has served pw-2 from the primary."""
    create(admin, "db", "pw-1")
    lag = Lag("db", REPLICA)
    cache = make_cache(client, clock, replica_regions=[replica])
    lag.freeze()
    rotate(admin, "db", "pw-2")
    assert cache.get_secret_string("db") == "pw-2"
    return cache, lag


def test_a_lagging_replica_is_no_answer_for_a_process_that_served_newer(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock
) -> None:
    """With nothing older to serve (invalidated), a replica behind what was served is an outage, not a value."""
    cache, lag = served_newer_than_the_replica(client, admin, replica, clock)
    cache.invalidate("db")
    calls.fail_with(THROTTLING)
    with pytest.raises(SecretUnavailableError, match="older than a version this cache has already served"):
        cache.get_secret_string("db")
    lag.catch_up()
    clock.advance(2)  # past the failure backoff: the replica, in sync now, answers v2
    assert cache.get_secret_string("db") == "pw-2"


def test_a_prefetch_answered_by_a_lagging_replica_reports_the_secret_not_warmed(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock
) -> None:
    """A batch a replica behind what was served answers leaves the secret unwarmed: prefetch says so, as a read does."""
    cache, _ = served_newer_than_the_replica(client, admin, replica, clock)
    calls.fail_with(THROTTLING)
    clock.advance(61)
    failures = cache.prefetch(["db"])  # the replica answers v1: the stale v2 stays served
    assert list(failures) == ["db"]
    assert isinstance(failures["db"], SecretUnavailableError)
    assert cache.get_secret_string("db") == "pw-2"
    cache.invalidate("db")  # as the SQS listener does before it warms the secret again
    clock.advance(FAST_RETRY.max_failure_backoff)
    failures = cache.prefetch(["db"])  # nothing to serve now: the listener must leave its message
    assert list(failures) == ["db"]
    with pytest.raises(SecretUnavailableError, match="older than a version this cache has already served"):
        cache.get_secret_string("db")


def served_and_watched(client: Any, admin: Any, clock: FakeClock) -> tuple[str, SecretCache, list[SecretChange]]:
    """Secret ``db`` at pw-1, served by a new cache whose changes are collected: its ARN, the cache, the changes."""
    arn = admin.create_secret(Name="db", SecretString="pw-1")["ARN"]
    cache = make_cache(client, clock)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    assert cache.get_secret_string("db") == "pw-1"
    return arn, cache, changes


def test_a_late_answer_under_another_spelling_is_not_installed(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A read by ARN answered v1 late, after refresh by name installed v2: both spellings serve v2, one change."""
    arn, cache, changes = served_and_watched(client, admin, clock)
    v1 = version_of(admin, "db")
    held = Held(client, "late-reader")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unused") as pool:
        late = pool.submit(lambda: _named("late-reader", lambda: cache.get_secret_string(arn)))
        assert held.arrived.wait(WATCHDOG)  # moto answered v1; the answer is on its way
        rotate(admin, "db", "pw-2")
        assert cache.refresh("db").secret_string == "pw-2"
        held.released.set()
        assert late.result(timeout=WATCHDOG) == "pw-2"  # the newer value served meanwhile, not v1
    made = calls["GetSecretValue"]
    assert [cache.get_secret_string(spelling) for spelling in ("db", arn, arn[:-7])] == ["pw-2"] * 3
    assert calls["GetSecretValue"] == made + 1  # only the partial ARN, never read before, was fetched
    assert [(change.old_version_id, change.new_version_id) for change in changes] == [(v1, version_of(admin, "db"))]
    assert cache.stats().changes == 1


def test_an_orphaned_fetch_with_a_newer_answer_wins_over_an_older_installed_since(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """An orphaned fetch answering v2 after invalidate() and a v1 install: its reader and every later read get v2."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    held = Held(client, "orphan", event="before-call")
    with ThreadPoolExecutor(max_workers=1) as pool:
        orphan = pool.submit(lambda: _named("orphan", lambda: cache.get_secret_string("db")))
        assert held.arrived.wait(WATCHDOG)  # its fetch started; Secrets Manager has not answered yet
        cache.invalidate("db")  # orphans it
        assert cache.get_secret_string("db") == "pw-1"  # a read after invalidate() installs v1
        rotate(admin, "db", "pw-2")
        held.released.set()  # the orphan's request reaches Secrets Manager now: v2
        assert orphan.result(timeout=WATCHDOG) == "pw-2"
    made = calls["GetSecretValue"]
    assert cache.get_secret_string("db") == "pw-2"  # never v1 again
    assert calls["GetSecretValue"] == made + 1  # the orphan's answer was not installed: fetched anew
    assert [change.new_version_id for change in changes] == [version_of(admin, "db")]


def test_invalidation_stays_linearizable_with_an_orphaned_fetch_older_than_the_invalidate(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """An orphan that read v1 before invalidate(): its reader gets what was served since; nobody else gets v1."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)
    held = Held(client, "orphan")
    with ThreadPoolExecutor(max_workers=1) as pool:
        orphan = pool.submit(lambda: _named("orphan", lambda: cache.get_secret_string("db")))
        assert held.arrived.wait(WATCHDOG)  # moto answered v1, before the invalidate()
        rotate(admin, "db", "pw-2")
        cache.invalidate("db")
        assert cache.get_secret_string("db") == "pw-2"  # fetched after invalidate(): v2
        held.released.set()
        assert orphan.result(timeout=WATCHDOG) == "pw-2"  # its v1 is older than what was served since
    assert cache.get_secret_string("db") == "pw-2"


def test_a_rollback_is_accepted_once_the_primary_confirms_it(client: Any, admin: Any, clock: FakeClock) -> None:
    """AWSCURRENT moved back to v1 on purpose: the next fetch from the primary returns v1, reported once."""
    admin.create_secret(Name="db", SecretString="pw-1")
    cache = make_cache(client, clock)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    assert cache.get_secret_string("db") == "pw-1"
    v1, v2 = rotate(admin, "db", "pw-2")
    clock.advance(61)
    assert cache.get_secret_string("db") == "pw-2"
    admin.update_secret_version_stage(
        SecretId="db", VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v2
    )
    assert cache.refresh("db").secret_string == "pw-1"
    assert cache.get_secret_string("db") == "pw-1"
    assert [(change.old_version_id, change.new_version_id) for change in changes] == [(v1, v2), (v2, v1)]


def test_after_a_rollback_a_late_answer_older_than_the_version_rolled_back_from_is_no_news(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """Served v1, v3, then the rollback to v1: a late answer of v2 (created between) is not served, nor reported."""
    arn, cache, changes = served_and_watched(client, admin, clock)
    v1, _ = rotate(admin, "db", "pw-2")
    held = Held(client, "late-reader")
    with ThreadPoolExecutor(max_workers=1) as pool:
        late = pool.submit(lambda: _named("late-reader", lambda: cache.get_secret_string(arn)))
        assert held.arrived.wait(WATCHDOG)  # moto answered v2; the answer is on its way
        _, v3 = rotate(admin, "db", "pw-3")
        assert cache.refresh("db").secret_string == "pw-3"
        admin.update_secret_version_stage(
            SecretId="db", VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v3
        )
        assert cache.refresh("db").secret_string == "pw-1"  # the primary vouches for the rollback
        held.released.set()
        assert late.result(timeout=WATCHDOG) == "pw-1"  # v2 is older than v3, served before the rollback
    assert [cache.get_secret_string(spelling) for spelling in ("db", arn)] == ["pw-1"] * 2
    assert [(change.old_version_id, change.new_version_id) for change in changes] == [(v1, v3), (v3, v1)]


class Answers:
    """Holds every GetSecretValue answer moto gave the thread named ``name``, one release each."""

    def __init__(self, client: Any, name: str) -> None:
        self.name = name
        self.arrived = threading.Semaphore(0)
        self.released = threading.Semaphore(0)
        client.meta.events.register("after-call.secretsmanager.GetSecretValue", self._hold)

    def _hold(self, **_: Any) -> None:  # returns None: an after-call result is ignored anyway
        if threading.current_thread().name == self.name:
            self.arrived.release()
            assert self.released.acquire(timeout=WATCHDOG), "a held answer was never released"


LATE_FETCHES = 3  # a late answer is fetched again at most twice (docs/concepts.md, "Monotonic reads")


@pytest.mark.parametrize("overtaken", [LATE_FETCHES - 1, LATE_FETCHES])
def test_a_read_overtaken_by_a_rotation_during_each_of_its_fetches_fails_after_the_third(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, overtaken: int
) -> None:
    """A read whose every answer is older than a version served meanwhile fetches again twice, then fails."""
    arn, cache, changes = served_and_watched(client, admin, clock)
    answers = Answers(client, "late-reader")
    with ThreadPoolExecutor(max_workers=1) as pool:
        late = pool.submit(lambda: _named("late-reader", lambda: cache.get_secret_string(arn)))
        for number in range(2, 2 + overtaken):
            assert answers.arrived.acquire(timeout=WATCHDOG)  # moto answered pw-<number - 1>; it is on its way
            rotate(admin, "db", f"pw-{number}")
            assert cache.refresh("db").secret_string == f"pw-{number}"  # served before the late answer lands
            clock.advance(61)  # and no longer fresh: no newer value to answer the late read with
            answers.released.release()
        if overtaken < LATE_FETCHES:
            assert answers.arrived.acquire(timeout=WATCHDOG)  # nothing served since this fetch started
            answers.released.release()
            assert late.result(timeout=WATCHDOG) == f"pw-{overtaken + 1}"
        else:
            with pytest.raises(SecretUnavailableError, match="older than a version this cache has already served"):
                late.result(timeout=WATCHDOG)
    assert calls["GetSecretValue"] == 1 + overtaken + LATE_FETCHES  # the first read, the refreshes, the late read's
    assert len(changes) == overtaken  # each rotation reported once, never a step back
    if overtaken == LATE_FETCHES:  # a failed fetch: the key backs off, then reads the newest version
        with pytest.raises(SecretUnavailableError, match="older than a version this cache has already served"):
            cache.get_secret_string(arn)
        clock.advance(FAST_RETRY.failure_backoff)
        assert cache.get_secret_string(arn) == f"pw-{overtaken + 1}"
        assert calls["GetSecretValue"] == 2 + overtaken + LATE_FETCHES


# -- the marks a small cache keeps ---------------------------------------------------------------
# With max_size=2 the cache holds 2 entries, and remembers the newest version of the labels they
# hold plus at least 2 more (docs/concepts.md, "Monotonic reads"); these read 5 or more labels.


def _fill(admin: Any, names: str) -> dict[str, str]:
    """Secrets named by the letters of ``names``, each holding ``<name>-1``; their ARNs."""
    return {name: admin.create_secret(Name=name, SecretString=f"{name}-1")["ARN"] for name in names}


def test_a_late_answer_cannot_undo_the_label_whose_read_filled_the_marks(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """The 5th label read when 4 are remembered keeps its mark: a v1 answered late is not served after v2."""
    arns = _fill(admin, "ABCDE")
    cache = make_cache(client, clock, max_size=2)
    for name in "ABDE":
        assert cache.get_secret_string(name) == f"{name}-1"
    held = Held(client, "late-reader")
    with ThreadPoolExecutor(max_workers=1) as pool:
        late = pool.submit(lambda: _named("late-reader", lambda: cache.get_secret_string(arns["C"])))
        assert held.arrived.wait(WATCHDOG)  # moto answered C's v1 by ARN; the answer is on its way
        rotate(admin, "C", "C-2")
        assert cache.get_secret_string("C") == "C-2"  # the 5th label: its mark must outlive this read
        held.released.set()
        assert late.result(timeout=WATCHDOG) == "C-2"  # not the v1 it fetched
    assert cache.get_secret_string(arns["C"]) == "C-2"
    assert cache.get_secret_string("C") == "C-2"


def test_a_rotation_of_the_label_whose_read_filled_the_marks_is_reported(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """The 5th label read keeps its mark while its entry is held: its next version is a change, reported once."""
    _fill(admin, "ABCDE")
    cache = make_cache(client, clock, max_size=2)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    for name in "ABDEC":
        assert cache.get_secret_string(name) == f"{name}-1"
    old, new = rotate(admin, "C", "C-2")
    assert cache.refresh("C").secret_string == "C-2"
    assert [(change.name, change.old_version_id, change.new_version_id) for change in changes] == [("C", old, new)]
    assert cache.stats().changes == 1


def test_max_size_labels_beyond_those_held_keep_their_marks(client: Any, admin: Any, clock: FakeClock) -> None:
    """After reading A..E, B and C (the 2 most recent of the labels no entry holds) still report their rotation."""
    _fill(admin, "ABCDE")
    cache = make_cache(client, clock, max_size=2)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    for name in "ABCDE":
        assert cache.get_secret_string(name) == f"{name}-1"  # D and E are held; A, B and C evicted
    rotated = {name: rotate(admin, name, f"{name}-2") for name in "BC"}
    for name in "BC":
        assert cache.get_secret_string(name) == f"{name}-2"
    assert [(change.name, change.old_version_id, change.new_version_id) for change in changes] == [
        (name, *rotated[name]) for name in "BC"
    ]


def test_the_marks_kept_stay_bounded(client: Any, admin: Any, clock: FakeClock) -> None:
    """However many labels are read, at most 3 x max_size + 1 marks are kept: the held, and 2 to 4 others."""
    names = "ABCDEFGHIJKL"
    _fill(admin, names)
    cache = make_cache(client, clock, max_size=2)
    sizes = []
    for name in names:
        cache.get_secret_string(name)
        sizes.append(len(cache._store._table._marks))
    # Reading H finds 5 marks of labels neither held (F, G) nor being served (H): the oldest 3 go.
    assert sizes == [1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 5, 6]
    assert max(sizes) == 3 * 2 + 1
    kept = [arn.rsplit(":", 1)[1][0] for arn, _ in cache._store._table._marks]
    assert kept == list("GHIJKL")  # K and L held; G to J not, the newest 2 of them kept at K's trim


# -- stress: threads and tasks, throttling, invalidation ---------------------------------------

THREADS = 8
TASKS = 8
ROUNDS = 150
SPELLINGS_OF = ("name", "arn", "partial")


class Timeline:
    """Reads with their start and end on one global order, and what they returned."""

    def __init__(self) -> None:
        self._ticks = itertools.count()
        self._lock = threading.Lock()
        self.reads: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # name -> (start, end, put number)

    def tick(self) -> int:
        with self._lock:
            return next(self._ticks)

    def record(self, name: str, start: int, number: int) -> None:
        end = self.tick()
        with self._lock:
            self.reads[name].append((start, end, number))

    def violations(self) -> list[str]:
        """Reads that returned a version older than one a read that had ended before they started returned."""
        found = []
        for name, reads in self.reads.items():
            ends = sorted((end, number) for _, end, number in reads)
            best, index = -1, 0
            for start, _, number in sorted(reads):
                while index < len(ends) and ends[index][0] < start:
                    best = max(best, ends[index][1])
                    index += 1
                if number < best:
                    found.append(f"{name}: read put #{number} after put #{best} had been returned")
        return found


def _named(name: str, function: Callable[[], Any]) -> Any:
    """Run ``function`` with the current thread renamed (so botocore hooks can pick its calls)."""
    thread = threading.current_thread()
    old, thread.name = thread.name, name
    try:
        return function()
    finally:
        thread.name = old


@pytest.fixture
def throttled(client: Any) -> Iterator[Calls]:
    calls = Calls(client)
    rng = random.Random(7)  # noqa: S311 - a reproducible fault pattern
    lock = threading.Lock()

    def fault(operation: str, _params: dict[str, Any]) -> None:
        with lock:
            fails = rng.random() < 0.3
        if fails:
            raise ClientError(
                {"Error": {"Code": THROTTLING, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                operation,
            )

    remove = calls.add_fault(fault)
    yield calls
    remove()


def test_threads_and_tasks_never_read_back_in_time_through_throttling_and_invalidation(
    client: Any, admin: Any, throttled: Calls, clock: FakeClock
) -> None:
    """8 threads and 8 tasks read by every spelling while puts, invalidations and 30 % throttling go on: monotonic."""
    names = ("alpha", "beta")
    spellings: dict[str, list[str]] = {}
    numbers: dict[str, dict[str, int]] = {name: {} for name in names}
    put_lock = threading.Lock()
    for name in names:
        arn = admin.create_secret(Name=name, SecretString=f"{name}#0")["ARN"]
        spellings[name] = [name, arn, arn[:-7]]
        numbers[name][f"{name}#0"] = 0
    retry = RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, failure_backoff=0.5, max_failure_backoff=1.0)
    serialize_backend(threading.Lock(), client, admin)  # in-process moto is not thread-safe; the service is
    cache = make_cache(client, clock, ttl=2.0, ttl_jitter=0.2, refresh_ahead=0.5, retry=retry)
    timeline = Timeline()
    stop = threading.Event()
    barrier = threading.Barrier(THREADS + 2)  # the threads, the tasks' thread, the clock

    def number_of(name: str, value: str) -> int:
        with put_lock:
            return numbers[name][value]

    def put(name: str) -> None:
        with put_lock:  # numbered in the order Secrets Manager creates the versions
            value = f"{name}#{len(numbers[name])}"
            numbers[name][value] = len(numbers[name])
            admin.put_secret_value(SecretId=name, SecretString=value)

    def reader(index: int) -> int:
        rng = random.Random(index)  # noqa: S311 - reproducible
        barrier.wait(WATCHDOG)
        done = 0
        for _ in range(ROUNDS):
            if stop.is_set():
                break
            name = rng.choice(names)
            choice = rng.random()
            if choice < 0.1:
                put(name)
            elif choice < 0.15:
                cache.invalidate(rng.choice(spellings[name]))
            else:
                start = timeline.tick()
                try:
                    value = cache.get_secret_string(rng.choice(spellings[name]))
                except SecretUnavailableError:
                    continue  # throttled with nothing to serve: no value returned
                timeline.record(name, start, number_of(name, value))
                done += 1
        return done

    async def task_reader(index: int, async_cache: AsyncSecretCache) -> int:
        rng = random.Random(100 + index)  # noqa: S311 - reproducible
        done = 0
        for _ in range(ROUNDS):
            if stop.is_set():
                break
            name = rng.choice(names)
            start = timeline.tick()
            try:
                value = await async_cache.get_secret_string(rng.choice(spellings[name]))
            except SecretUnavailableError:
                continue
            timeline.record(name, start, number_of(name, value))
            done += 1
            await asyncio.sleep(0)
        return done

    def tasks() -> int:
        async def main() -> int:
            async_cache = AsyncSecretCache(cache=cache)
            barrier.wait(WATCHDOG)
            counts = await asyncio.gather(*(task_reader(index, async_cache) for index in range(TASKS)))
            return sum(counts)

        return asyncio.run(main())

    with ThreadPoolExecutor(max_workers=THREADS + 1) as pool:
        futures = [pool.submit(reader, index) for index in range(THREADS)] + [pool.submit(tasks)]
        barrier.wait(WATCHDOG)
        began = time.monotonic()
        try:
            while not all(future.done() for future in futures):
                clock.advance(0.05)  # only this thread moves the clock
                time.sleep(0.002)
                assert time.monotonic() - began < 10 * WATCHDOG, "the run does not finish (a hang?)"
        finally:
            stop.set()
        reads = sum(future.result(timeout=WATCHDOG) for future in futures)
    quiescent(cache)
    cache.close()
    assert reads > (THREADS + TASKS) * ROUNDS // 4
    assert throttled.counts["GetSecretValue"] > 0
    assert timeline.violations() == []
