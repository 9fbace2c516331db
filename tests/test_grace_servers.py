"""The rotation grace against real PostgreSQL and MariaDB servers: the gap, and a wrong password.

The database moves first and the secret follows 0.3 s later; threads or tasks connect in a loop
and none fails. Every wait runs on the FakeClock: the factories sleep with a function that moves
it, and the gap is crossed by that sleep, so nothing here depends on machine speed. Real-time
bounds (the watchdog) are only reached on a hang.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import threading
from typing import Any

import pymysql
import pytest

from secretcache import SecretCache
from secretcache.db import Failure, async_connection_factory, classify, connection_factory
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.db import Database
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.grace import GRACE, POLLS, THREADS

pytestmark = pytest.mark.usefixtures("no_password_logged")

GAP = 0.3  # fake seconds between the database's new password and the secret's new version
BEFORE = 16  # successful connects before the password changes
AFTER = 32  # successful connects with the new password before the load stops
MAX_CONNECTS = 400  # per thread or task: the load stops by itself after this many


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
