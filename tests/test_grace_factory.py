"""The rotation grace of a connection factory: after the refresh and AWSPENDING failed, poll for a new version a while.

The database is a scripted connect function raising PyMySQL's own errors; every wait runs on the
FakeClock. Covered: one call per poll across threads, when the grace opens (and reopens), failures
during it, its arguments, and interrupted or cancelled waits.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from botocore.exceptions import ClientError

from secretcache import RetryPolicy, SecretCache
from secretcache.db import Failure, async_connection_factory, classify, connection_factory
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.grace import GRACE, POLLS, THREADS
from tests.threads import start


def document(password: str) -> str:
    return json.dumps({"username": "app", "password": password, "host": "db.invalid", "port": 3306})


class Server:
    """A connect function for PyMySQL's keywords that raises PyMySQL's own errors, as a server would."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.down = False
        self.tried: list[str] = []

    def connect(self, **kwargs: Any) -> str:
        self.tried.append(kwargs["password"])
        if self.down:
            raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db.invalid'")
        if kwargs["password"] != self.password:
            raise pymysql.err.OperationalError(1045, "Access denied for user 'app'")
        return f"connection as {kwargs['password']}"


@pytest.fixture
def cache(client: Any, clock: FakeClock) -> SecretCache:
    return SecretCache(client, ttl=3600, clock=clock)


def refused(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(pymysql.err.OperationalError) as info:
        call()
    assert classify(info.value) is Failure.AUTH
    return info.value


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


# -- when the grace opens, and when it does not -----------------------------------------------


def test_grace_reopens_after_a_success(cache: SecretCache, admin: Any, clock: FakeClock) -> None:
    """Spent on a wrong password, then a success: the next failure gets a whole grace again."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-0")
    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=clock.sleep)
    refused(factory)
    assert len(clock.sleeps) == POLLS
    refused(factory)
    assert len(clock.sleeps) == POLLS  # spent: at once
    server.password = "pw-1"  # the database catches up
    assert factory() == "connection as pw-1"
    server.password = "pw-2"
    start = clock.now
    refused(factory)
    assert len(clock.sleeps) == 2 * POLLS
    assert clock.now - start >= GRACE


def test_grace_reopens_when_the_version_changes(cache: SecretCache, admin: Any, clock: FakeClock) -> None:
    """Spent on one version; a new (still wrong) version gets a grace of its own, once."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    factory = connection_factory(cache, "db", Server("pw-0").connect, mapping="pymysql", sleep=clock.sleep)
    refused(factory)
    refused(factory)
    assert len(clock.sleeps) == POLLS
    admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
    cache.refresh("db")
    refused(factory)
    assert len(clock.sleeps) == 2 * POLLS
    refused(factory)
    assert len(clock.sleeps) == 2 * POLLS


def test_a_typo_after_a_working_version_costs_one_grace(cache: SecretCache, admin: Any, clock: FakeClock) -> None:
    """The database moved on and the secret has a typo: one grace in all, though two versions keep failing."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-1")
    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=clock.sleep)
    factory()  # pw-1 works
    server.password = "pw-2"
    admin.put_secret_value(SecretId="db", SecretString=document("pw-2-typo"))
    cache.invalidate("db")
    for _ in range(5):  # the cached typo and the version that used to work both fail, in turn
        refused(factory)
    assert len(clock.sleeps) == POLLS  # one grace, not one per version tried


def test_new_factory_gets_a_fresh_grace(cache: SecretCache, admin: Any, clock: FakeClock) -> None:
    """A spent grace belongs to its factory: another one on the same cache waits a whole grace."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-0")
    first = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=clock.sleep)
    refused(first)
    refused(first)
    assert len(clock.sleeps) == POLLS
    second = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=clock.sleep)
    refused(second)
    assert len(clock.sleeps) == 2 * POLLS


@pytest.mark.parametrize("moved", [False, True])
def test_an_unrecognised_postgres_error_gets_one_refresh_and_no_grace(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock, moved: bool
) -> None:
    """An error classify() calls UNKNOWN: one forced read of AWSCURRENT, a retry if it moved; no AWSPENDING or grace."""
    import psycopg

    admin.create_secret(Name="db", SecretString=document("pw-1"))
    cache.get_secret("db")
    if moved:
        admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
    tried: list[str] = []

    def connect(**kwargs: Any) -> str:
        tried.append(kwargs["password"])
        raise psycopg.OperationalError("FATAL:  Es sind bereits zu viele Verbindungen offen")  # a localised server

    factory = connection_factory(cache, "db", connect, mapping="psycopg", sleep=clock.sleep)
    before = calls["GetSecretValue"]
    with pytest.raises(psycopg.OperationalError) as info:
        factory()
    assert classify(info.value) is Failure.UNKNOWN
    assert tried == (["pw-1", "pw-2"] if moved else ["pw-1"])
    assert calls["GetSecretValue"] - before == 1
    assert clock.sleeps == []


def test_zero_grace_is_the_behaviour_before_it(cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """rotation_grace=0: no sleep, the first read plus one forced AWSCURRENT and one AWSPENDING, then the error."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-0")
    sleeps: list[float] = []
    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", rotation_grace=0, sleep=sleeps.append)
    refused(factory)
    assert calls.total == 3
    assert server.tried == ["pw-1"]
    refused(factory)
    assert calls.total == 3  # rate-limited on the fake clock
    assert sleeps == []
    assert clock.now == 1000.0


# -- failures during the grace ------------------------------------------------------------------


def test_server_down_during_the_grace_is_raised_at_once(cache: SecretCache, admin: Any, clock: FakeClock) -> None:
    """A new version appears at the second poll but the server is down: that error is raised, the grace ends."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-2")

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 2:
            admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
            server.down = True

    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=sleep)
    start = clock.now
    with pytest.raises(pymysql.err.OperationalError) as info:
        factory()
    assert info.value.args[0] == 2003
    assert server.tried == ["pw-1", "pw-2"]
    assert clock.now - start == 0.5
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("left_by", ["server down", "interrupt"])
def test_a_grace_left_without_running_out_leaves_the_next_gap_a_grace(
    cache: SecretCache, admin: Any, clock: FakeClock, left_by: str
) -> None:
    """A connect that leaves its grace by a non-auth error or an interrupt ends it: a later gap is waited out."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-1")
    at_next_sleep: list[Callable[[], None]] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if at_next_sleep:
            at_next_sleep.pop()()

    def catch_up_and_go_down() -> None:
        admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
        server.down = True

    def interrupt() -> None:
        raise KeyboardInterrupt

    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=sleep)
    assert factory() == "connection as pw-1"
    server.password = "pw-2"  # gap 1: the first poll finds pw-2, but the server is down by then
    at_next_sleep.append(catch_up_and_go_down if left_by == "server down" else interrupt)
    with pytest.raises((pymysql.err.OperationalError, KeyboardInterrupt)):
        factory()
    clock.advance(600)
    server.down, server.password = False, "pw-3"  # gap 2, long after: the secret follows at the next poll
    at_next_sleep.append(lambda: admin.put_secret_value(SecretId="db", SecretString=document("pw-3")))
    assert factory() == "connection as pw-3"


@pytest.mark.parametrize("recovers", [True, False])
def test_secrets_manager_failing_during_the_grace(
    cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock, recovers: bool
) -> None:
    """Polls that fail do not end the grace, nor replace the login error with a SecretCacheError."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-2")
    removers: list[Callable[[], None]] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:  # the database moves and Secrets Manager starts failing
            admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))
            removers.append(calls.fail_with("AccessDeniedException", times=4 if recovers else None))

    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=sleep)
    before = calls.total
    try:
        if recovers:
            assert factory() == "connection as pw-2"  # found at the fifth poll, after four failed
            assert len(clock.sleeps) == 5
        else:
            refused(factory)
            assert len(clock.sleeps) == POLLS
            assert server.tried == ["pw-1"]
        assert calls.total - before == 3 + len(clock.sleeps)  # every poll made its one call
    finally:
        for remove in removers:
            remove()


def fail_reads_of(calls: Calls, stage: str, code: str) -> None:
    """Make every GetSecretValue of ``stage`` fail with the service error ``code``."""

    def fault(operation: str, params: dict[str, Any]) -> None:
        if params.get("VersionStage", "AWSCURRENT") == stage:
            error = {
                "Error": {"Code": code, "Message": f"injected {code}"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(error, operation)  # type: ignore[arg-type]

    calls.add_fault(fault)


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        ("AWSPENDING", "AccessDeniedException"),  # an IAM policy that allows AWSCURRENT only
        ("AWSPENDING", "ThrottlingException"),
        ("AWSCURRENT", "AccessDeniedException"),
        ("AWSCURRENT", "ResourceNotFoundException"),
    ],
)
def test_secrets_manager_failing_in_steps_1_and_2_keeps_the_login_error(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, stage: str, code: str
) -> None:
    """A read of the refresh or of AWSPENDING that fails is a stage with nothing new: the login error is raised."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    cache = SecretCache(client, ttl=3600, clock=clock, retry=RetryPolicy(attempts=1))
    server = Server("pw-2")
    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", rotation_grace=0)
    cache.get_secret("db")
    fail_reads_of(calls, stage, code)
    refused(factory)
    assert server.tried == ["pw-1"]


def test_pending_denied_still_gets_the_grace(cache: SecretCache, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """AWSPENDING denied by IAM, then the secret catches up at the first poll: the connect logs in with it."""
    admin.create_secret(Name="db", SecretString=document("pw-1"))
    server = Server("pw-2")

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        admin.put_secret_value(SecretId="db", SecretString=document("pw-2"))

    factory = connection_factory(cache, "db", server.connect, mapping="pymysql", sleep=sleep)
    cache.get_secret("db")
    fail_reads_of(calls, "AWSPENDING", "AccessDeniedException")
    assert factory() == "connection as pw-2"
    assert len(clock.sleeps) == 1


# -- arguments, and interrupted waits ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rotation_grace": -1}, ValueError),
        ({"rotation_grace": math.nan}, ValueError),
        ({"rotation_grace": math.inf}, ValueError),
        ({"rotation_grace": True}, TypeError),
        ({"rotation_grace": "5"}, TypeError),
        ({"sleep": "x"}, TypeError),
        ({"sleep": None}, TypeError),
    ],
)
@pytest.mark.parametrize("make", [connection_factory, async_connection_factory])
def test_bad_grace_arguments_fail_before_any_call(
    cache: SecretCache, calls: Calls, make: Callable[..., Any], options: dict[str, Any], error: Any
) -> None:
    with pytest.raises(error, match=r"rotation_grace|sleep"):
        make(cache, "db", Server("pw").connect, mapping="pymysql", **options)
    assert calls.total == 0


def test_async_factory_refuses_a_blocking_sleep(cache: SecretCache) -> None:
    """time.sleep would block the event loop during a grace: refused when the factory is built."""

    async def connect(**kwargs: Any) -> str:
        return "connection"

    with pytest.raises(TypeError, match=r"async function such as asyncio\.sleep"):
        async_connection_factory(cache, "db", connect, mapping="asyncpg", sleep=time.sleep)


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
