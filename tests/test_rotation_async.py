"""A real password rotation under asyncio load: zero failed queries, new connections use the new password.

8 tasks query in a loop through an asyncio driver's pool that keeps opening new connections,
while the four steps of a single-user rotation run (the old password stops working at
setSecret). Phases are counted, never timed: each rotation step waits (on an event, within a
watchdog) until enough more connects and queries have completed. The cache runs on a fake clock,
so its TTL and the factory's refresh rate limit lapse only if the test says so.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from secretcache import AsyncSecretCache
from secretcache.db import Failure, async_connection_factory, classify, psycopg_async_connection_class
from tests.conftest import WATCHDOG, Calls, FakeClock
from tests.db import Database, finish_rotation, rotate_secret_stage

TASKS = 8
PHASE_CONNECTS = 16  # connects that complete in every phase, so every phase logs in anew
PHASE_QUERIES = 24  # queries that complete in every phase
MAX_ATTEMPTS = 20_000  # queries across all tasks: the workers stop by themselves after this many
TTL = 60.0  # on the fake clock: never lapses here, so pickup comes from the refused login alone
SECRET = "db"
Query = Callable[[], Awaitable[tuple[str, int]]]  # run one query: (current_user, server connection id)


@dataclass(frozen=True)
class Login:
    """One connect: its order of starting, and the credentials that logged in."""

    seq: int
    user: str
    password: str


@dataclass
class Load:
    """What the tasks and the pool's connects did (one event loop: no lock needed)."""

    started: int = 0  # connects started: the next connect's sequence number
    finished: int = 0  # connects that returned or raised
    attempts: int = 0  # queries started
    refused: int = 0  # logins the server refused (the factory then recovered)
    logins: list[Login] = field(default_factory=list)
    credentials: dict[int, tuple[str, str]] = field(default_factory=dict)  # server pid -> (user, password)
    seq_of: dict[int, int] = field(default_factory=dict)  # server pid -> its connect's sequence number
    queries: list[tuple[int, str]] = field(default_factory=list)  # (sequence number of the connection, user)
    failures: list[BaseException] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def driver_connect(
        self, connect: Awaitable[Any], pid_of: Callable[[Any], int], kwargs: dict[str, Any]
    ) -> Any:
        """Await a driver's connect with ``kwargs``; remember the credentials it logged in with, or count a refusal."""
        try:
            connection = await connect
        except Exception as error:
            self.refused += classify(error) is Failure.AUTH
            raise
        self.credentials[pid_of(connection)] = (kwargs["user"], kwargs["password"])
        return connection

    async def numbered(self, connect: Callable[[], Awaitable[Any]], pid_of: Callable[[Any], int]) -> Any:
        """Run a factory's connect, numbering it as it starts and recording who it logged in as."""
        seq = self.started
        self.started += 1
        try:
            connection = await connect()
        except Exception as error:  # a pool may only log it: count it here
            self.failures.append(error)
            raise
        finally:
            self.finished += 1
            self.progress.set()
        pid = pid_of(connection)
        self.logins.append(Login(seq, *self.credentials.pop(pid)))
        self.seq_of[pid] = seq
        return connection

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait for ``condition``, a failure or the end of the attempts; fail after the watchdog."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WATCHDOG
        while not (condition() or self.failures or self.attempts >= MAX_ATTEMPTS):
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                raise AssertionError("no progress: a connect or a query hangs") from None

    async def phase(self) -> None:
        """Wait until PHASE_CONNECTS more connects and PHASE_QUERIES more queries have completed."""
        connects, queries = self.finished + PHASE_CONNECTS, len(self.queries) + PHASE_QUERIES
        await self.until(lambda: self.finished >= connects and len(self.queries) >= queries)

    def late(self, boundary: int) -> bool:
        """Whether a phase of connects, and of queries on them, started at ``boundary`` or later."""
        connects = sum(1 for entry in self.logins if entry.seq >= boundary)
        queries = sum(1 for seq, _ in self.queries if seq >= boundary)
        return connects >= PHASE_CONNECTS and queries >= PHASE_QUERIES


@asynccontextmanager
async def pool(kind: str, cache: AsyncSecretCache, clock: FakeClock, load: Load) -> AsyncIterator[Query]:
    """Yield ``query()`` for ``kind``; its pool (or plain connects) opens new connections all the time."""
    import aiomysql
    import asyncpg
    import psycopg
    from psycopg_pool import AsyncConnectionPool
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    def pg_pid(connection: Any) -> int:
        return int(connection.get_server_pid())

    async def asyncpg_connect(*args: Any, **kwargs: Any) -> Any:
        return await load.driver_connect(asyncpg.connect(*args, **kwargs), pg_pid, kwargs)

    pg_query = "SELECT current_user, pg_backend_pid()"
    if kind == "asyncpg-pool":
        factory = async_connection_factory(cache, SECRET, asyncpg_connect, mapping="asyncpg", sleep=clock.asleep)

        async def connect(*args: Any, **kwargs: Any) -> Any:
            return await load.numbered(lambda: factory(*args, **kwargs), pg_pid)

        # max_queries=1: every connection is closed when released, so every acquire logs in anew.
        asyncpg_pool = await asyncpg.create_pool(connect=connect, min_size=0, max_size=4, max_queries=1)
        try:

            async def query() -> tuple[str, int]:
                async with asyncpg_pool.acquire(timeout=WATCHDOG) as connection:
                    user, pid = await connection.fetchrow(pg_query)
                    return str(user), int(pid)

            yield query
        finally:
            await asyncpg_pool.close()
    elif kind == "psycopg-pool":

        class Recording(psycopg.AsyncConnection[Any]):
            @classmethod
            async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                opening = super().connect(conninfo, **kwargs)
                return await load.driver_connect(opening, lambda connection: connection.info.backend_pid, kwargs)

        secret_class: Any = psycopg_async_connection_class(cache, SECRET, base=Recording)

        class Numbered(secret_class):  # type: ignore[misc,valid-type]
            @classmethod
            async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                opening = super().connect(conninfo, **kwargs)
                return await load.numbered(lambda: opening, lambda connection: connection.info.backend_pid)

        psycopg_pool = AsyncConnectionPool("", connection_class=Numbered, min_size=4, max_size=8, open=False)
        await psycopg_pool.open(wait=True, timeout=WATCHDOG)
        try:

            async def query() -> tuple[str, int]:
                async with psycopg_pool.connection(timeout=WATCHDOG) as connection:
                    user, pid = await (await connection.execute(pg_query)).fetchone()  # type: ignore[misc]
                    # Closed connections are dropped on return; the pool's own tasks open new ones.
                    await connection.close()
                    return str(user), int(pid)

            yield query
        finally:
            await psycopg_pool.close()
    elif kind == "sqlalchemy-asyncpg":
        factory = async_connection_factory(cache, SECRET, asyncpg_connect, mapping="asyncpg", sleep=clock.asleep)
        engine = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=lambda: load.numbered(factory, pg_pid),
            pool_size=4,
            max_overflow=4,
            pool_timeout=WATCHDOG,
        )
        queries = 0
        try:

            async def query() -> tuple[str, int]:
                nonlocal queries
                queries += 1
                async with engine.connect() as connection:
                    user, pid = (await connection.execute(text(pg_query))).one()
                    if queries % 2:  # every other connection is dropped: the next checkout logs in anew
                        await connection.invalidate()
                    return str(user), int(pid)

            yield query
        finally:
            await engine.dispose()
    else:
        assert kind == "aiomysql"

        async def aiomysql_connect(**kwargs: Any) -> Any:
            return await load.driver_connect(
                aiomysql.connect(**kwargs), lambda connection: connection.thread_id(), kwargs
            )

        factory = async_connection_factory(cache, SECRET, aiomysql_connect, mapping="aiomysql", sleep=clock.asleep)

        async def query() -> tuple[str, int]:  # aiomysql's pool has no connect hook: a connection per query
            connection = await load.numbered(factory, lambda connection: connection.thread_id())
            try:
                async with connection.cursor() as cursor:
                    await cursor.execute("SELECT current_user(), CONNECTION_ID()")
                    user, pid = await cursor.fetchone()
                    return str(user).split("@")[0], int(pid)
            finally:
                await connection.ensure_closed()

        yield query


@pytest.mark.parametrize("kind", ["asyncpg-pool", "psycopg-pool", "sqlalchemy-asyncpg", "aiomysql"])
async def test_single_user_rotation_under_load_has_zero_failed_queries(
    kind: str, request: pytest.FixtureRequest, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """8 tasks query through connections opened all the time while a single-user rotation runs."""
    server = request.getfixturevalue("maria_server" if kind == "aiomysql" else "pg_server")
    db = Database(
        server,
        "pymysql" if kind == "aiomysql" else "psycopg",
        f"app_{secrets.token_hex(4)}",
        f"pw-{secrets.token_hex(8)}",
    )
    db.create_user(db.user, db.password)
    assert not db.login_works(db.user, "wrong-password")  # no trust auth: the test cannot pass vacuously
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    load = Load()
    new_password = f"pw-{secrets.token_hex(8)}"
    async with AsyncSecretCache(client, ttl=TTL, clock=clock) as cache, pool(kind, cache, clock, load) as query:
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set() and load.attempts < MAX_ATTEMPTS:
                load.attempts += 1
                try:
                    user, pid = await query()
                    load.queries.append((load.seq_of[pid], user))
                except Exception as error:  # the assertion below reports them
                    load.failures.append(error)
                load.progress.set()
                await asyncio.sleep(0)  # lets the rotation in; phases never depend on it

        workers = [asyncio.create_task(worker()) for _ in range(TASKS)]
        try:
            await load.phase()
            calls_before = calls.total
            # The four steps of a rotation function, run off the loop so the tasks keep querying.
            old, new = await asyncio.to_thread(rotate_secret_stage, admin, SECRET, db.secret(db.user, new_password))
            await load.phase()  # createSecret
            await asyncio.to_thread(db.set_password, db.user, new_password)
            password_set = load.started  # connects from here start after the old password stopped working
            await load.phase()  # setSecret
            assert await asyncio.to_thread(db.login_works, db.user, new_password)
            await asyncio.to_thread(finish_rotation, admin, SECRET, old, new)  # testSecret passed: finishSecret
            await load.phase()
            await load.until(lambda: load.late(password_set))
            calls_during = calls.total - calls_before
        finally:
            stop.set()
            _, hung = await asyncio.wait(workers, timeout=WATCHDOG)
            for task in hung:
                task.cancel()
        assert not hung, "a worker hung"
    assert load.failures == []
    assert load.refused >= 1  # the cached password was refused mid-load: pickup came from the failed login
    assert load.attempts < MAX_ATTEMPTS, "the phases did not complete within the attempts"
    assert len(load.queries) >= 4 * PHASE_QUERIES
    early = [entry for entry in load.logins if entry.seq < password_set]
    late = [entry for entry in load.logins if entry.seq >= password_set]
    assert (db.user, db.password) in {(entry.user, entry.password) for entry in early}  # the old login was used
    assert len(late) >= PHASE_CONNECTS
    assert {(entry.user, entry.password) for entry in late} == {(db.user, new_password)}
    late_users = [user for seq, user in load.queries if seq >= password_set]
    assert len(late_users) >= PHASE_QUERIES
    assert set(late_users) == {db.user}  # the server agrees who the new connections are
    assert not db.login_works(db.user, db.password)  # the old password no longer works
    # Reported figure: Secrets Manager calls for the whole rotation, across 8 tasks.
    print(f"{kind}: {calls_during} Secrets Manager call(s) during the rotation", end=" ")
    print(f"({len(load.logins)} connects, {load.refused} refused, {len(load.queries)} queries)")
    # One forced refresh of AWSCURRENT and one read of AWSPENDING per factory (the rate limit never
    # lapses on the fake clock); the AWSPENDING read may run twice if an unforced read of the cold
    # label completes just before the forced one starts.
    assert calls_during <= 3
