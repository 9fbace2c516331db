"""The rotation grace of a connection factory shared by concurrent connects: one poll, one forced refresh.

The database is a scripted connect function raising PyMySQL's own errors; every wait runs on the
FakeClock. Covered: one call per poll across threads, connects refused at once sharing one forced
refresh (threads and tasks), a poll interrupted or cancelled leaving none stuck for the others, and
a connect abandoned by its closed loop closing inside the factory's lock.
"""

from __future__ import annotations

import asyncio
import faulthandler
import tempfile
import threading
import time
from typing import Any

import pymysql
import pytest

from secretcache import SecretCache
from secretcache.db import Failure, async_connection_factory, classify, connection_factory
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.grace import GRACE, POLLS, THREADS, Server, document, refused
from tests.grace import cache as cache  # a fixture
from tests.threads import start

pytestmark = pytest.mark.usefixtures("no_password_logged")

# -- one call per poll ----------------------------------------------------------------------------


def test_threads_in_a_grace_make_one_call_per_poll(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """8 threads failing at once: one Secrets Manager call per 250 ms of fake time, and never two sleepers."""
    admin.create_secret(Name="db", SecretString=document("wrong"))
    server = Server("right")
    lock = threading.Lock()
    sleepers = [0, 0]  # now, most at once

    def sleep(seconds: float) -> None:
        with lock:  # concurrent sleeps overlap in time, as real ones would: the clock moves once
            sleepers[0] += 1
            sleepers[1] = max(sleepers)
            start = clock.now
        time.sleep(0)  # lets other threads in: a yield, not a wait
        with lock:
            clock.sleeps.append(seconds)
            clock.now = max(clock.now, start + seconds)
            sleepers[0] -= 1

    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=sleep)
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait(WATCHDOG)
        try:
            factory()
        except BaseException as error:  # checked below
            errors.append(error)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    start = clock.now
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WATCHDOG)
    assert not [thread for thread in threads if thread.is_alive()], "a thread hung"
    assert len(errors) == THREADS
    assert all(classify(error) is Failure.AUTH for error in errors)
    assert sleepers[1] == 1
    assert GRACE <= clock.now - start <= GRACE + 0.25
    polls = (clock.now - start) / 0.25
    # Before the grace: the first read and the forced AWSCURRENT and AWSPENDING reads. A thread may
    # add a plain miss of AWSPENDING (it reads it before the forced read has installed anything),
    # and one that fails only after the fake clock has run past the 5 s rate limit forces both
    # labels once more. Then one call per poll: 8 threads never make 8 calls a poll.
    assert calls["GetSecretValue"] <= 3 + 3 + polls + 1


# -- connects refused at once share the forced refresh --------------------------------------------


def rotated_while_held(admin: Any, calls: Calls, server: Server) -> list[str]:
    """Finish a rotation (pw-1 to pw-2); hold every read until all THREADS logins with pw-1 were refused.

    Returns the labels read from then on (one entry per GetSecretValue call).
    """
    server.password = "pw-2"
    admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
    refused_before = server.tried.count("pw-1")
    stages: list[str] = []

    def hold(operation: str, params: dict[str, Any]) -> None:
        stages.append(params.get("VersionStage", "AWSCURRENT"))
        wait_until(lambda: server.tried.count("pw-1") == refused_before + THREADS)

    calls.add_fault(hold)
    return stages


@pytest.mark.parametrize("grace", [0.0, GRACE])
def test_threads_refused_at_once_share_one_forced_refresh(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock, grace: float
) -> None:
    """8 threads refused while one forces AWSCURRENT wait for its answer: all log in with pw-2, one call in all."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-1")
    factory = connection_factory(
        cache, "db", server.connect, mapping="pymysql", rotation_grace=grace, sleep=clock.sleep
    )
    assert factory() == "connection as pw-1"
    stages = rotated_while_held(admin, calls, server)
    barrier = threading.Barrier(THREADS)

    def worker() -> object:
        barrier.wait(WATCHDOG)
        try:
            return factory()
        except Exception as error:  # checked below
            return error

    pool = [start(worker, f"connect-{i}") for i in range(THREADS)]
    assert [future.result(WATCHDOG) for future in pool] == ["connection as pw-2"] * THREADS
    assert stages == ["AWSCURRENT"]  # the one forced read; no AWSPENDING, no poll
    assert clock.sleeps == []


async def test_tasks_refused_at_once_share_one_forced_refresh(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """The asyncio factory: 8 tasks refused while one forces AWSCURRENT all log in with pw-2, one call in all."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-1")

    async def connect(**kwargs: Any) -> str:
        return server.connect(**kwargs)

    factory = async_connection_factory(cache, "db", connect, mapping="aiomysql", rotation_grace=0, sleep=clock.asleep)
    assert await factory() == "connection as pw-1"
    stages = rotated_while_held(admin, calls, server)

    async def attempt() -> object:
        try:
            return await factory()
        except Exception as error:  # checked below
            return error

    outcomes = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(THREADS))), WATCHDOG)
    assert outcomes == ["connection as pw-2"] * THREADS
    assert stages == ["AWSCURRENT"]


async def reached(condition: Any) -> None:
    """Yield to the loop until ``condition()`` holds; fail (never hang) past the watchdog."""
    deadline = time.monotonic() + WATCHDOG
    while not condition():
        assert time.monotonic() < deadline, "condition not reached: deadlock or lost wake-up"
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("grace", [0.0, GRACE])
async def test_a_task_waiting_for_a_forced_refresh_whose_task_is_cancelled_gets_its_answer(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock, grace: float
) -> None:
    """The task that forced AWSCURRENT is cancelled; its fetch runs on, and the task waiting for it logs in with pw-2.

    It used to read the cache then, which still held pw-1 (refused): on to AWSPENDING and the
    grace's polls, or with no grace the login error, while the answer was one fetch away.
    """
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-1")

    async def connect(**kwargs: Any) -> str:
        return server.connect(**kwargs)

    factory = async_connection_factory(
        cache, "db", connect, mapping="aiomysql", rotation_grace=grace, sleep=clock.asleep
    )
    assert await factory() == "connection as pw-1"
    server.password = "pw-2"
    admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
    gate = calls.hold()
    forcing = asyncio.ensure_future(factory())
    await reached(lambda: calls.total >= 2)  # its forced read is held
    waiting = asyncio.ensure_future(factory())
    refreshes = factory._recovery._refreshes[None]
    await reached(lambda: bool(refreshes.waiters))  # refused with pw-1, it waits for that refresh
    forcing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forcing
    await reached(lambda: cache.stats().misses >= 3)  # the first read, the forced one, the waiting task's joining it
    gate.set()
    assert await asyncio.wait_for(waiting, WATCHDOG) == "connection as pw-2"
    assert calls["GetSecretValue"] == 2  # the cancelled task's forced read, joined: no AWSPENDING, no poll
    assert clock.sleeps == []


# -- interrupted or cancelled polls ------------------------------------------------------------


def test_interrupted_poll_leaves_no_poll_stuck(cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A KeyboardInterrupt in the grace's sleep ends that poll: the next connect polls (it does not wait on it)."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))

    def sleep(seconds: float) -> None:
        if not clock.sleeps:
            clock.sleeps.append(-1.0)
            raise KeyboardInterrupt
        clock.sleep(seconds)

    factory = connection_factory(cache, "db", Server("pw-0").connect, mapping="pymysql", sleep=sleep)
    with pytest.raises(KeyboardInterrupt) as interrupted:  # its traceback stays alive, as a logger's might
        factory()
    before = calls.total
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: outcome.append(refused(factory)), daemon=True)
    thread.start()
    thread.join(WATCHDOG)
    assert not thread.is_alive(), "the next connect waited for a poll nobody runs"
    assert interrupted.value is not None
    assert len(outcome) == 1
    assert len(clock.sleeps) > 1
    assert calls.total > before  # it polled


async def test_cancelled_poll_leaves_no_poll_stuck(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A task cancelled in the grace's sleep ends that poll: the next connect polls (it does not wait on it)."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    parked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        if not parked.is_set():
            parked.set()
            await asyncio.Event().wait()  # until cancelled
        await clock.asleep(seconds)

    async def connect(**kwargs: Any) -> str:
        return Server("pw-0").connect(**kwargs)

    factory = async_connection_factory(cache, "db", connect, mapping="aiomysql", sleep=sleep)
    task = asyncio.ensure_future(factory())
    await asyncio.wait_for(parked.wait(), WATCHDOG)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    before = calls.total
    with pytest.raises(pymysql.err.OperationalError):
        await asyncio.wait_for(factory(), WATCHDOG)
    assert len(clock.sleeps) == POLLS
    assert calls.total - before >= POLLS  # it polled
    assert task.cancelled()  # still referenced, as is the traceback of its cancellation


@pytest.mark.parametrize("parked_in", ["the grace's sleep", "a forced read"])
def test_a_connect_whose_loop_closed_under_it_closes_inside_the_factory_lock_without_waiting_for_it(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock, parked_in: str
) -> None:
    """A connect left pending by a closed loop is closed by the garbage collector wherever it runs: no deadlock.

    The collector may close it on a thread inside the factory's own lock (an allocation there sets
    it off); the ends its ``finally`` clauses make (the poll, the forced refresh, its place in the
    grace) must not wait for that lock, and must still be made: the next connect polls.
    ``coro.close()`` does what the collector does.
    """
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    parked = threading.Event()

    async def sleep(seconds: float) -> None:
        if not parked.is_set():
            parked.set()
            await asyncio.Event().wait()  # for good: its loop closes
        await clock.asleep(seconds)

    async def connect(**kwargs: Any) -> str:
        return Server("pw-0").connect(**kwargs)

    factory = async_connection_factory(cache, "db", connect, mapping="aiomysql", sleep=sleep)
    gate = threading.Event()
    if parked_in == "a forced read":
        cache.get_secret_string("db")  # the connect's first read is a hit; its forced read is held
        gate = calls.hold()
        parked.set()  # every sleep is the clock's
    loop = asyncio.new_event_loop()
    task = loop.create_task(factory())
    held = lambda: parked.is_set() if parked_in == "the grace's sleep" else calls.total >= 2  # noqa: E731

    async def until_parked() -> None:
        while not held():
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(until_parked(), WATCHDOG))
    loop.close()  # the connect stays pending for good
    coro = task.get_coro()
    lock = factory._recovery._lock

    def close_inside_the_lock() -> None:
        with lock:
            coro.close()  # type: ignore[union-attr]

    closer = threading.Thread(target=close_inside_the_lock, daemon=True)
    closer.start()
    closer.join(WATCHDOG)
    if closer.is_alive():
        with tempfile.TemporaryFile("w+") as stacks:
            faulthandler.dump_traceback(stacks, all_threads=True)
            stacks.seek(0)
            pytest.fail(f"closing the abandoned connect waited for a lock its own thread held:\n{stacks.read()}")
    gate.set()
    before = calls.total
    with pytest.raises(pymysql.err.OperationalError):
        asyncio.run(asyncio.wait_for(factory(), WATCHDOG))  # a poll or refresh left running would time out
    assert len(clock.sleeps) == POLLS
    assert calls.total - before >= POLLS  # it polled
