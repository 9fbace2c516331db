"""The rotation grace: after the refresh and AWSPENDING failed, poll for a new version a while.

Every wait runs on the FakeClock: the factories sleep with a function that moves it, and the
"gap" (the database changed, the secret follows 0.3 s later) is crossed by that sleep, so nothing
here depends on machine speed. Real-time bounds (the watchdog) are only reached on a hang.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from secretcache import SecretCache
from secretcache.db import DbCredentials, Failure, async_connection_factory, classify, connection_factory
from secretcache.db._recovery import AwaitPoll, Connect, Read, Recovery, Sleep, plan
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.test_db import Database

GRACE = 5.0
POLLS = 20  # polls in one grace: one per 250 ms
GAP = 0.3  # fake seconds between the database's new password and the secret's new version
THREADS = 8
BEFORE = 16  # successful connects before the password changes
AFTER = 32  # successful connects with the new password before the load stops
MAX_CONNECTS = 400  # per thread or task: the load stops by itself after this many


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


# -- the gap: the database moves first, the secret follows 0.3 s later --------------------------


class Gap:
    """The sleep the factory waits with; it crosses the gap once the database has changed.

    The clock moves only when the grace sleeps, so "0.3 s after the database changed" is a point
    on the fake clock; the sleep that passes it puts the new version (a plain PutSecretValue,
    which makes it AWSCURRENT), exactly once.
    """

    def __init__(self, clock: FakeClock, admin: Any, new_document: str) -> None:
        self.clock = clock
        self.admin = admin
        self.new_document = new_document
        self.lock = threading.Lock()
        self.changed_at: float | None = None
        self.version: str | None = None

    def change_database(self, db: Database, password: str) -> None:
        with self.lock:
            self.changed_at = self.clock.now  # the clock cannot move before a login fails
        db.set_password(db.user, password)

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.clock.sleep(seconds)
            if self.changed_at is not None and self.version is None and self.clock.now >= self.changed_at + GAP:
                self.version = self.admin.put_secret_value(SecretId="db", SecretString=self.new_document)["VersionId"]

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


class Load:
    """Connects made by the workers, counted under one lock."""

    def __init__(self, new_password: str) -> None:
        self.lock = threading.Lock()
        self.new_password = new_password
        self.ok = 0
        self.ok_new = 0
        self.failures: list[BaseException] = []

    def record(self, password: str | None, error: BaseException | None) -> None:
        with self.lock:
            if error is not None:
                self.failures.append(error)
            else:
                self.ok += 1
                self.ok_new += password == self.new_password

    def reached(self, ok: int = 0, ok_new: int = 0) -> bool:
        with self.lock:
            return bool(self.failures) or (self.ok >= ok and self.ok_new >= ok_new)


def gap_database(request: pytest.FixtureRequest, driver: str) -> Database:
    engine = "postgres" if driver in ("psycopg", "asyncpg") else "mysql"
    server = request.getfixturevalue("pg_server" if engine == "postgres" else "maria_server")
    db = Database(server, driver, f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    return db


def assert_gap_crossed(gap: Gap, load: Load, clock: FakeClock, calls_during: int) -> None:
    assert load.failures == []  # zero failed connects
    assert gap.version is not None  # the grace waited out the gap
    assert gap.changed_at is not None
    assert set(clock.sleeps) == {0.25}
    assert clock.now - gap.changed_at <= 0.75  # found at the first poll past the gap (+0.5), maybe one more
    assert calls_during <= 12


@pytest.mark.parametrize("driver", ["psycopg", "pymysql"])
def test_threads_wait_out_the_gap(
    request: pytest.FixtureRequest, driver: str, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """8 threads connect in a loop; the password changes and the secret follows 0.3 s later: no connect fails."""
    db = gap_database(request, driver)
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    new_password = f"pw-{secrets.token_hex(8)}"
    gap, load = Gap(clock, admin, db.secret(db.user, new_password)), Load(new_password)
    overrides = {"ssl_disabled": True} if driver == "pymysql" else {}
    login = threading.local()

    def driver_connect(**kwargs: Any) -> Any:
        connection = db.connect(**kwargs)
        login.password = kwargs["password"]
        return connection

    cache = SecretCache(client, ttl=3600, clock=clock)
    factory = connection_factory(cache, "db", driver_connect, mapping=driver, overrides=overrides, sleep=gap.sleep)
    stop = threading.Event()

    def worker() -> None:
        for _ in range(MAX_CONNECTS):
            if stop.is_set():
                return
            try:
                factory().close()
            except Exception as error:  # reported by the assertion
                load.record(None, error)
            else:
                load.record(login.password, None)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: load.reached(ok=BEFORE))
        calls_before = calls.total
        gap.change_database(db, new_password)
        wait_until(lambda: load.reached(ok_new=AFTER))
    finally:
        stop.set()
        for thread in threads:
            thread.join(WATCHDOG)
    assert not [thread for thread in threads if thread.is_alive()], "a worker hung"
    calls_during = calls.total - calls_before
    print(f"sync {driver}: {calls_during} Secrets Manager call(s) for the rotation")  # reported figure
    assert_gap_crossed(gap, load, clock, calls_during)


@pytest.mark.parametrize("driver", ["asyncpg", "aiomysql"])
async def test_tasks_wait_out_the_gap(
    request: pytest.FixtureRequest, driver: str, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """8 tasks connect in a loop; the password changes and the secret follows 0.3 s later: no connect fails."""
    db = gap_database(request, driver)
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    new_password = f"pw-{secrets.token_hex(8)}"
    gap, load = Gap(clock, admin, db.secret(db.user, new_password)), Load(new_password)
    used: dict[int, str] = {}  # id(connection) -> the password it logged in with

    async def driver_connect(**kwargs: Any) -> Any:
        connection = await db.connect(**kwargs)
        used[id(connection)] = kwargs["password"]
        return connection

    cache = SecretCache(client, ttl=3600, clock=clock)
    factory = async_connection_factory(cache, "db", driver_connect, mapping=driver, sleep=gap.asleep)
    stop = asyncio.Event()

    async def worker() -> None:
        for _ in range(MAX_CONNECTS):
            if stop.is_set():
                return
            try:
                connection = await factory()
            except Exception as error:  # reported by the assertion
                load.record(None, error)
                continue
            password = used.pop(id(connection))
            closed = connection.close()
            if inspect.isawaitable(closed):  # asyncpg; aiomysql closes at once
                await closed
            load.record(password, None)

    async def rotate() -> int:
        while not load.reached(ok=BEFORE):
            await asyncio.sleep(0.001)
        calls_before = calls.total
        await asyncio.to_thread(gap.change_database, db, new_password)
        while not load.reached(ok_new=AFTER):
            await asyncio.sleep(0.001)
        stop.set()
        return calls_before

    workers = [asyncio.ensure_future(worker()) for _ in range(THREADS)]
    try:
        calls_before = await asyncio.wait_for(rotate(), WATCHDOG)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), WATCHDOG)
    calls_during = calls.total - calls_before
    print(f"async {driver}: {calls_during} Secrets Manager call(s) for the rotation")  # reported figure
    assert_gap_crossed(gap, load, clock, calls_during)


# -- a wrong password in the secret (async; the sync case is in test_db) ------------------------


def auth_error(driver: str) -> type[Exception]:
    """The error an asyncio driver raises for a refused password (aiomysql raises PyMySQL's)."""
    if driver == "asyncpg":
        import asyncpg

        return asyncpg.exceptions.InvalidPasswordError  # type: ignore[no-any-return]
    return pymysql.err.OperationalError


@pytest.mark.parametrize("driver", ["asyncpg", "aiomysql"])
async def test_async_wrong_password_costs_one_grace_then_fails_at_once(
    request: pytest.FixtureRequest, driver: str, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """The first connect fails after one grace of 250 ms polls; the next 19 fail at once."""
    db = gap_database(request, driver)
    admin.create_secret(Name="db", SecretString=db.secret(db.user, "wrong-password"))
    factory = async_connection_factory(SecretCache(client, ttl=3600, clock=clock), "db", db.connect, sleep=clock.asleep)
    refused_error = auth_error(driver)
    start = clock.now
    with pytest.raises(refused_error) as info:
        await asyncio.wait_for(factory(), WATCHDOG)
    assert classify(info.value) is Failure.AUTH
    assert GRACE <= clock.now - start <= GRACE + 0.25
    assert set(clock.sleeps) == {0.25}
    assert calls.total <= 3 + POLLS + 1  # first read, AWSCURRENT forced, AWSPENDING, one per poll
    first, waits = calls.total, len(clock.sleeps)
    for _ in range(19):
        with pytest.raises(refused_error) as info:
            await asyncio.wait_for(factory(), WATCHDOG)
        assert classify(info.value) is Failure.AUTH
        assert "wrong-password" not in str(info.value)
    assert len(clock.sleeps) == waits  # no grace again for the same version
    assert calls.total <= first + 2


# -- the shared poll -----------------------------------------------------------------------------


def test_callers_share_one_poll() -> None:
    """Driven step by step: of 4 callers in a grace, one sleeps and reads; the others wait and use its result."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1, v2 = (DbCredentials(username="app", password=p, version_id=p) for p in ("v1", "v2"))
    error = pymysql.err.OperationalError(1045, "Access denied")
    plans = [plan(recovery, classify) for _ in range(4)]
    assert [p.send(None) for p in plans] == [Read(None, False)] * 4
    assert [p.send(v1) for p in plans] == [Connect(v1)] * 4
    assert [p.throw(error) for p in plans] == [Read(None, True)] + [Read(None, False)] * 3  # rate limit
    assert [p.send(v1) for p in plans] == [Read("AWSPENDING", True)] + [Read("AWSPENDING", False)] * 3
    owner, waiters = plans[0], plans[1:]
    assert [p.send(None) for p in plans] == [Sleep(0.25)] + [AwaitPoll(0)] * 3
    woken: list[int] = []
    for i in range(3):
        assert recovery.subscribe(0, lambda i=i: woken.append(i))
    clock.advance(0.25)
    assert owner.send(None) == Read(None, True, poll=True)
    assert owner.send(v1) == Sleep(0.25)  # nothing new: the owner polls again in 250 ms
    assert sorted(woken) == [0, 1, 2]  # its poll's end woke every waiter
    assert [p.send(None) for p in waiters] == [AwaitPoll(1)] * 3  # and they wait for the next one
    clock.advance(0.25)
    assert owner.send(None) == Read(None, True, poll=True)
    assert owner.send(v2) == Connect(v2)
    assert [p.send(None) for p in waiters] == [Connect(v2)] * 3  # the new version, without a read of their own
    for i, p in enumerate(plans):
        with pytest.raises(StopIteration) as done:
            p.send(f"connection {i}")
        assert done.value.value == f"connection {i}"
    assert recovery.preferred(v1) == v2


def fail_into_grace(steps: Any, cached: DbCredentials, error: Exception) -> Any:
    """Drive a plan through a refused login, the refresh (``cached`` again) and no AWSPENDING."""
    assert steps.send(None) == Read(None, False)
    assert steps.send(cached) == Connect(cached)
    assert isinstance(steps.throw(error), Read)
    assert isinstance(steps.send(cached), Read)  # AWSPENDING
    return steps.send(None)


def test_a_late_caller_uses_what_a_poll_found() -> None:
    """Sans-IO: a caller that read before a poll found a new version takes it at once; an old find is not reused."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1, v2, v3 = (DbCredentials(username="app", password=p, version_id=p) for p in ("v1", "v2", "v3"))
    error = pymysql.err.OperationalError(1045, "Access denied")
    owner, late = plan(recovery, classify), plan(recovery, classify)
    assert late.send(None) == Read(None, False)  # it reads and connects before the poll below ends
    assert late.send(v1) == Connect(v1)
    assert fail_into_grace(owner, v1, error) == Sleep(0.25)
    clock.advance(0.25)
    assert owner.send(None) == Read(None, True, poll=True)
    assert owner.send(v2) == Connect(v2)
    with pytest.raises(StopIteration):
        owner.send("connection")  # a success: the grace is over
    assert late.throw(error) == Read(None, False)
    assert late.send(v1) == Read("AWSPENDING", False)  # its refresh read came before the poll's
    assert late.send(None) == Connect(v2)  # no poll of its own: the version the poll found
    with pytest.raises(StopIteration):
        late.send("connection")
    # Much later v3 is refused: a caller starting now does not retry v2 (found by an old poll), it polls.
    fresh = plan(recovery, classify)
    assert fail_into_grace(fresh, v3, error) == Sleep(0.25)


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


def test_interrupted_owner_hands_the_poll_on() -> None:
    """Sans-IO: a caller closed in the grace's sleep ends its poll, so a waiting caller takes the next."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1 = DbCredentials(username="app", password="v1", version_id="v1")
    error = pymysql.err.OperationalError(1045, "Access denied")
    plans = [plan(recovery, classify) for _ in range(2)]
    for step in (lambda p: p.send(None), lambda p: p.send(v1), lambda p: p.throw(error), lambda p: p.send(v1)):
        for p in plans:
            step(p)
    assert [p.send(None) for p in plans] == [Sleep(0.25), AwaitPoll(0)]
    plans[0].close()
    assert not recovery.subscribe(0, lambda: None)  # that poll is over
    assert plans[1].send(None) == Sleep(0.25)
