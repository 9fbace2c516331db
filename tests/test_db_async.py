"""Async connection factories against real PostgreSQL and MariaDB servers with password auth.

Every way of plugging a secret into an asyncio driver is driven through one helper,
:func:`logins`, which yields a coroutine that opens a *new* connection, asks the server who it
is logged in as, and closes it. Caches run on a fake clock and the rotation grace sleeps on it
(every way takes ``sleep=``), so no test waits in real time or depends on machine speed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import pytest

from secretcache import AsyncSecretCache, SecretCache
from secretcache.db import Failure, async_connection_factory, attach_to_engine, classify, psycopg_async_connection_class
from tests.conftest import WATCHDOG, Calls, FakeClock, quiescent
from tests.db import Database, finish_rotation, rotate_password
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.leaks import assert_value_absent
from tests.servers import Server, free_port

pytestmark = pytest.mark.usefixtures("no_password_logged")

TTL = 3600.0  # on the fake clock: never lapses, so every refresh counted below is a forced one
SECRET = "db"
Login = Callable[[], Awaitable[str]]

KINDS = [
    "asyncpg",  # async_connection_factory(cache, id, asyncpg.connect)
    "asyncpg-pool",  # asyncpg.create_pool(connect=factory, max_queries=1): a new connection per acquire
    "psycopg",  # async_connection_factory(cache, id, psycopg.AsyncConnection.connect)
    "psycopg-pool",  # AsyncConnectionPool(connection_class=psycopg_async_connection_class(...))
    "aiomysql",  # async_connection_factory(cache, id, aiomysql.connect), on MariaDB
    "sqlalchemy-asyncpg",  # create_async_engine("postgresql+asyncpg://", async_creator=factory)
    "sqlalchemy-psycopg",  # create_async_engine("postgresql+psycopg://", async_creator=factory)
    "attach-asyncpg-sync-cache",  # attach_to_engine(AsyncEngine, SecretCache, id)
    "attach-psycopg-async-cache",  # attach_to_engine(AsyncEngine, AsyncSecretCache, id)
    "attach-aiomysql-async-cache",  # attach_to_engine(AsyncEngine, AsyncSecretCache, id), on MariaDB
]


def engine_of(kind: str) -> str:
    return "mysql" if "aiomysql" in kind else "postgres"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(kind: str, request: pytest.FixtureRequest) -> Database:
    """A fresh user with a password on the server ``kind`` talks to; wrong passwords are really refused."""
    mysql = engine_of(kind) == "mysql"
    server: Server = request.getfixturevalue("maria_server" if mysql else "pg_server")
    database = Database(
        server, "pymysql" if mysql else "psycopg", f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}"
    )
    database.create_user(database.user, database.password)
    assert not database.login_works(database.user, "wrong-password")
    return database


@asynccontextmanager
async def logins(
    kind: str, db: Database, client: Any, clock: FakeClock, *, direct: bool = False, **options: Any
) -> AsyncIterator[Login]:
    """Yield ``login()``: open a new connection the ``kind`` way, return ``current_user``, close it.

    ``options`` go to the factory (``sleep=clock.asleep`` is added).
    ``direct`` opens psycopg-pool connections through the connection class itself, which
    raises the driver's error where a pool would only log it and time out.
    """
    import aiomysql
    import asyncpg
    import psycopg
    from psycopg_pool import AsyncConnectionPool
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    cache: SecretCache | AsyncSecretCache = (
        SecretCache(client, ttl=TTL, clock=clock)
        if kind.endswith("sync-cache")
        else AsyncSecretCache(client, ttl=TTL, clock=clock)
    )
    options.setdefault("sleep", clock.asleep)  # every way takes one: the grace waits on the fake clock
    query = "SELECT current_user()" if engine_of(kind) == "mysql" else "SELECT current_user"
    login: Login
    async with AsyncExitStack() as stack:
        stack.callback(cache.close)
        if kind in ("asyncpg", "psycopg", "aiomysql"):
            connect = {
                "asyncpg": asyncpg.connect,
                "psycopg": psycopg.AsyncConnection.connect,
                "aiomysql": aiomysql.connect,
            }
            factory: Any = async_connection_factory(cache, SECRET, connect[kind], **options)

            async def login() -> str:
                return await ask(await factory(), query)

        elif kind == "asyncpg-pool":
            factory = async_connection_factory(cache, SECRET, asyncpg.connect, **options)
            pool = await asyncpg.create_pool(connect=factory, min_size=0, max_size=1, max_queries=1)
            stack.push_async_callback(pool.close)

            async def login() -> str:
                async with pool.acquire(timeout=WATCHDOG) as connection:
                    return str(await connection.fetchval(query))

        elif kind == "psycopg-pool":
            connection_class = psycopg_async_connection_class(cache, SECRET, **options)

            async def login() -> str:
                if direct:
                    return await ask(await connection_class.connect(), query)
                pool = AsyncConnectionPool("", connection_class=connection_class, min_size=1, max_size=1, open=False)
                async with pool, pool.connection(timeout=WATCHDOG) as connection:  # one new connection per pool
                    return str((await (await connection.execute(query)).fetchone())[0])  # type: ignore[index]

        else:
            driver = kind.split("-")[1]
            dialect = "mysql" if driver == "aiomysql" else "postgresql"
            if kind.startswith("attach"):
                engine = create_async_engine(
                    f"{dialect}+{driver}://nobody@127.0.0.1:1/{db.server.dbname}", poolclass=NullPool
                )
                attach_to_engine(engine, cache, SECRET, **options)
            else:
                connect = {"asyncpg": asyncpg.connect, "psycopg": psycopg.AsyncConnection.connect}
                factory = async_connection_factory(cache, SECRET, connect[driver], **options)
                engine = create_async_engine(f"{dialect}+{driver}://", async_creator=factory, poolclass=NullPool)
            stack.push_async_callback(engine.dispose)

            async def login() -> str:
                async with engine.connect() as connection:
                    return str((await connection.execute(text(query))).scalar()).split("@")[0]

        yield login


async def ask(connection: Any, query: str) -> str:
    """Run ``query`` on a driver connection (asyncpg, psycopg or aiomysql), close it, return the user."""
    try:
        if hasattr(connection, "fetchval"):
            return str(await connection.fetchval(query))
        if hasattr(connection, "ensure_closed"):
            async with connection.cursor() as cursor:
                await cursor.execute(query)
                return str((await cursor.fetchone())[0]).split("@")[0]
        return str((await (await connection.execute(query)).fetchone())[0])
    finally:
        await (connection.ensure_closed() if hasattr(connection, "ensure_closed") else connection.close())


async def failed_login(login: Login) -> BaseException:
    """The error ``login()`` raises; fails the test if it connects."""
    try:
        user = await asyncio.wait_for(login(), WATCHDOG)
    except Exception as error:
        return error
    raise AssertionError(f"logged in as {user!r}")


async def test_connects_and_recovers_from_a_rotation_with_one_call(
    kind: str, db: Database, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """New connections log in with the secret; after a completed rotation one forced refresh recovers."""
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    async with logins(kind, db, client, clock) as login:
        assert [await login() for _ in range(3)] == [db.user] * 3
        assert calls.total == 1
        await asyncio.to_thread(rotate_password, db, admin, SECRET)
        assert not db.login_works(db.user, db.password)  # the cached password is really stale now
        assert await login() == db.user
        assert calls.total == 2  # exactly one forced read of AWSCURRENT
        assert [await login() for _ in range(3)] == [db.user] * 3
    assert calls.total == 2
    assert calls.counts.keys() == {"GetSecretValue"}
    assert clock.sleeps == []  # no grace was needed


@pytest.mark.parametrize("kind", ["asyncpg", "psycopg-pool", "aiomysql", "attach-asyncpg-sync-cache"])
async def test_pending_is_used_while_the_database_is_ahead(
    kind: str, db: Database, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Mid-rotation (database changed, AWSCURRENT not moved) AWSPENDING logs in; two calls in all."""
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    async with logins(kind, db, client, clock) as login:
        assert await login() == db.user
        old, new = await asyncio.to_thread(rotate_password, db, admin, SECRET, finish=False)
        assert [await login() for _ in range(3)] == [db.user] * 3
        assert calls.total == 3  # one forced AWSCURRENT, one AWSPENDING; then straight to what worked
        await asyncio.to_thread(finish_rotation, admin, SECRET, old, new)
        assert await login() == db.user
    assert calls.total == 3


async def test_server_down_raises_at_once_without_a_call(
    kind: str, db: Database, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A refused TCP connection is raised as is, classified OTHER, with no refresh and no grace."""
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password, port=free_port()))
    async with logins(kind, db, client, clock, direct=True) as login:
        error = await failed_login(login)
    assert classify(error) is Failure.OTHER, repr(error)
    assert calls.total == 1  # the first read only
    assert clock.sleeps == []


async def test_wrong_password_is_auth_and_never_leaks(
    kind: str,
    db: Database,
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused password classifies AUTH after the recovery; the value is in no error and no log line."""
    marker = f"marker-{secrets.token_hex(8)}"
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, marker))
    caplog.set_level(logging.DEBUG)
    async with logins(kind, db, client, clock, direct=True) as login:
        error = await failed_login(login)
        assert classify(error) is Failure.AUTH, repr(error)
        calls_after_first = calls.total
        assert classify(await failed_login(login)) is Failure.AUTH
    assert marker not in f"{error} {error!r} {error.args} {error.__cause__!r} {error.__context__!r}"
    formatter = logging.Formatter()
    assert caplog.records  # the refresh after the refused login was logged
    assert not [record for record in caplog.records if marker in formatter.format(record) + repr(record.args)]
    assert set(clock.sleeps) == {0.25}  # the grace polled on the injected sleep, whichever way
    assert calls_after_first <= 3 + len(clock.sleeps)  # one read per poll
    assert calls.total - calls_after_first <= 2  # the grace is spent: the second connect fails at once
    assert_value_absent(error, marker)  # psycopg keeps the password on error.pgconn: the factory drops it


@contextmanager
def held_fetches(calls: Calls) -> Iterator[tuple[asyncio.Event, threading.Event]]:
    """Hold every Secrets Manager call until the gate opens; ``entered`` is set on the loop when one is held."""
    loop = asyncio.get_running_loop()
    entered, gate = asyncio.Event(), threading.Event()

    def hold(_operation: str, _params: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(entered.set)
        if not gate.wait(WATCHDOG):
            raise AssertionError("the held call was never released: was the event loop blocked?")

    remove = calls.add_fault(hold)
    try:
        yield entered, gate
    finally:
        gate.set()
        remove()


async def keeps_ticking(login: asyncio.Task[str], ticks: int = 100) -> None:
    """Let ``ticks`` turns of the event loop pass while ``login`` is still waiting on Secrets Manager."""
    for _ in range(ticks):
        await asyncio.sleep(0)
    assert not login.done()


async def test_event_loop_runs_while_secrets_manager_is_slow(
    kind: str, db: Database, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Cold reads and the forced refresh after a rotation run off the loop: other tasks keep running."""
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    async with logins(kind, db, client, clock) as login:
        with held_fetches(calls) as (entered, gate):
            task = asyncio.create_task(login())
            await asyncio.wait_for(entered.wait(), WATCHDOG)  # the cold read is in flight, and held
            await keeps_ticking(task)
            gate.set()
            assert await asyncio.wait_for(task, WATCHDOG) == db.user
        await asyncio.to_thread(rotate_password, db, admin, SECRET)
        with held_fetches(calls) as (entered, gate):
            task = asyncio.create_task(login())
            await asyncio.wait_for(entered.wait(), WATCHDOG)  # the forced refresh is in flight, and held
            await keeps_ticking(task)
            gate.set()
            assert await asyncio.wait_for(task, WATCHDOG) == db.user
    assert calls.total == 2


async def test_tasks_in_the_grace_share_one_poll(pg_server: Server, client: Any, admin: Any, calls: Calls) -> None:
    """8 tasks refused while the secret lags share one poll per 250 ms and all log in when it moves."""
    import asyncpg

    db = Database(pg_server, "psycopg", f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    clock = FakeClock()
    new_password = f"pw-{secrets.token_hex(8)}"

    async def sleep(seconds: float) -> None:
        await clock.asleep(seconds)
        # Each poll's forced read starts with no fetch in flight, so it makes a call of its own (a
        # forced read joins a running fetch, such as the first forced refresh on a loaded machine).
        await asyncio.to_thread(quiescent, cache)
        if len(clock.sleeps) == 4:  # the secret catches up with the database during the 4th wait
            await asyncio.to_thread(
                admin.put_secret_value, SecretId=SECRET, SecretString=db.secret(db.user, new_password)
            )

    stages: list[str | None] = []
    calls.add_fault(lambda _op, params: stages.append(params.get("VersionStage")))
    async with AsyncSecretCache(client, ttl=TTL, clock=clock) as cache:
        factory = async_connection_factory(cache, SECRET, asyncpg.connect, sleep=sleep)
        await ask(await factory(), "SELECT 1")
        await asyncio.to_thread(db.set_password, db.user, new_password)  # a manual change: no AWSPENDING
        before = len(stages)

        async def login() -> str:
            return await ask(await factory(), "SELECT current_user")

        users = await asyncio.wait_for(asyncio.gather(*(login() for _ in range(8))), WATCHDOG)
    assert users == [db.user] * 8
    assert clock.sleeps == [0.25] * 4  # one poller at a time: the 8 tasks did not each wait and poll
    during = stages[before:]
    assert during.count("AWSCURRENT") == 1 + 4  # one forced refresh, then one read per poll: not one per task
    # (A task refused late on a loaded machine reads AWSPENDING after a poll has run: the order of
    # the two kinds of read is the tasks' scheduling, not a promise; their counts are.)
    assert 1 <= during.count("AWSPENDING") <= 8  # none exists: each task may look once before the grace


async def test_real_driver_errors_classify(pg_server: Server, maria_server: Server) -> None:
    """Refused logins of asyncpg, psycopg, aiomysql and their SQLAlchemy wrappers are AUTH; refused ports OTHER."""
    import aiomysql
    import asyncpg
    import psycopg
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    def through_engine(dialect: str, server: Server, port: int) -> Callable[[], Awaitable[Any]]:
        url = f"{dialect}://{server.admin_user}:wrong-password@{server.host}:{port}/{server.dbname}"

        async def attempt() -> None:
            engine = create_async_engine(url)
            try:
                async with engine.connect():
                    pass
            finally:
                await engine.dispose()

        return attempt

    def attempts(port: Callable[[Server], int]) -> dict[str, Callable[[], Awaitable[Any]]]:
        pg = {
            "host": pg_server.host,
            "port": port(pg_server),
            "user": pg_server.admin_user,
            "password": "wrong-password",
        }
        my = {"host": maria_server.host, "port": port(maria_server), "user": maria_server.admin_user, "password": "x"}
        return {
            "asyncpg": lambda: asyncpg.connect(database=pg_server.dbname, **pg),
            "psycopg": lambda: psycopg.AsyncConnection.connect(dbname=pg_server.dbname, **pg),
            "aiomysql": lambda: aiomysql.connect(**my),
            "sqlalchemy+asyncpg": through_engine("postgresql+asyncpg", pg_server, port(pg_server)),
            "sqlalchemy+psycopg": through_engine("postgresql+psycopg", pg_server, port(pg_server)),
            "sqlalchemy+aiomysql": through_engine("mysql+aiomysql", maria_server, port(maria_server)),
        }

    for name, attempt in attempts(lambda server: server.port).items():
        refused = await failed_login(attempt)
        assert classify(refused) is Failure.AUTH, (name, refused)
        if name == "asyncpg":
            assert isinstance(refused, asyncpg.InvalidPasswordError)
        if name.startswith("sqlalchemy") and tuple(map(int, sqlalchemy.__version__.split(".")[:2])) >= (2, 1):
            # SQLAlchemy 2.1 wraps it (judged by the driver's error inside); 2.0 (on Python 3.10
            # here) lets some drivers' connect errors through as they are.
            assert type(refused).__module__ == "sqlalchemy.exc"
    down = free_port()
    for name, attempt in attempts(lambda _server: down).items():
        unreachable = await failed_login(attempt)
        assert classify(unreachable) is Failure.OTHER, (name, unreachable)
