"""A real password rotation under load: zero failed queries, new connections use the new password.

Phases are counted, never timed: each rotation step waits until enough more connects and queries
have completed, and the cache runs on a fake clock, so its TTL and the factory's refresh rate
limit lapse only when the test advances it. A busy machine makes the test slower, never wrong.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from secretcache import SecretCache
from secretcache.db import connection_factory
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.db import Database, finish_rotation, rotate_secret_stage

THREADS = 8
PHASE_CONNECTS = 16  # connects that complete in every phase (twice the pool), so each phase reconnects
PHASE_QUERIES = 24  # queries that complete in every phase
MAX_ATTEMPTS = 30_000  # queries across all threads: the workers stop by themselves after this many
TTL = 60.0  # on the fake clock: lapses only when the test advances it


@dataclass(frozen=True)
class Login:
    """One connect the pool made: its order of starting, and the credentials that logged in."""

    seq: int
    user: str
    password: str


class Load:
    """What the workers and the pool's connects did, counted under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0  # connects started: the next connect's sequence number
        self.finished = 0  # connects that returned or raised
        self.attempts = 0  # queries started
        self.logins: list[Login] = []
        self.seq_of: dict[int, int] = {}  # id(DBAPI connection) -> its connect's sequence number
        self.opened: list[Any] = []  # keeps every connection alive so no id() is reused
        self.queries: list[tuple[int, str]] = []  # (sequence number of the connection, current_user)
        self.failures: list[BaseException] = []

    def mark(self) -> int:
        """The sequence number the next connect will get: connects from here on start after now."""
        with self.lock:
            return self.started

    def progressed(self, connects: int, queries: int) -> bool:
        """Whether ``connects`` connects and ``queries`` queries have completed, or anything failed."""
        with self.lock:
            return bool(self.failures) or (self.finished >= connects and len(self.queries) >= queries)

    def late(self, boundary: int) -> bool:
        """Whether a phase of connects, and of queries on them, started at ``boundary`` or later, or anything failed."""
        with self.lock:
            connects = sum(1 for entry in self.logins if entry.seq >= boundary)
            queries = sum(1 for seq, _ in self.queries if seq >= boundary)
            return bool(self.failures) or (connects >= PHASE_CONNECTS and queries >= PHASE_QUERIES)


@pytest.fixture(params=["postgres", "mysql"])
def rotating_db(request: pytest.FixtureRequest) -> Database:
    engine = request.param
    server = request.getfixturevalue("pg_server" if engine == "postgres" else "maria_server")
    driver = "psycopg" if engine == "postgres" else "pymysql"
    db = Database(server, driver, f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    assert not db.login_works(db.user, "wrong-password")
    return db


@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
def test_rotation_under_load_has_zero_failed_queries(
    rotating_db: Database, client: Any, admin: Any, calls: Calls, clock: FakeClock, strategy: str
) -> None:
    """8 threads query through a pool that reopens connections while the password rotates."""
    import sqlalchemy

    db = rotating_db
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    # Single user: the old password stops working, so pickup comes from the failed login even though
    # the TTL never lapses. Alternating users: the old login keeps working, nothing fails, and pickup
    # is by TTL, when the test advances the clock past it.
    cache = SecretCache(client, ttl=TTL, clock=clock)  # the factory's refresh rate limit runs on it too
    load = Load()
    login = threading.local()

    def driver_connect(**kwargs: Any) -> Any:
        """The driver's connect, remembering which credentials logged in."""
        connection = db.connect(**kwargs)
        login.user, login.password = kwargs["user"], kwargs["password"]
        return connection

    overrides: dict[str, Any] = {"connect_timeout": 10}
    if db.driver == "pymysql":
        overrides["ssl_disabled"] = True  # PyMySQL builds a TLS context per connect (~40 ms holding the GIL)
    factory = connection_factory(cache, "db", driver_connect, mapping=db.driver, overrides=overrides)

    def creator() -> Any:
        """The factory, numbering each connect as it starts and recording who it logged in as."""
        with load.lock:
            seq = load.started
            load.started += 1
        try:
            connection = factory()
        finally:
            with load.lock:
                load.finished += 1
        with load.lock:
            load.logins.append(Login(seq, login.user, login.password))
            load.seq_of[id(connection)] = seq
            load.opened.append(connection)
        return connection

    url = "postgresql+psycopg://" if db.server.engine == "postgres" else "mysql+pymysql://"
    # pool_recycle makes the pool replace connections every 50 ms: new logins all the time.
    engine = sqlalchemy.create_engine(url, creator=creator, pool_size=4, max_overflow=4, pool_recycle=0.05)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with load.lock:
                if load.attempts >= MAX_ATTEMPTS:
                    return
                load.attempts += 1
            try:
                with engine.connect() as connection:
                    user = str(connection.execute(sqlalchemy.text("SELECT current_user")).scalar())
                    seq = load.seq_of[id(connection.connection.dbapi_connection)]
                with load.lock:
                    load.queries.append((seq, user.split("@")[0]))
            except Exception as error:  # the assertion below reports them
                with load.lock:
                    load.failures.append(error)
            time.sleep(0.001)  # lets the rotating thread in; phases never depend on it

    def phase() -> None:
        """Wait until PHASE_CONNECTS more connects and PHASE_QUERIES more queries have completed."""
        with load.lock:
            connects, queries = load.finished + PHASE_CONNECTS, len(load.queries) + PHASE_QUERIES
        wait_until(lambda: load.progressed(connects, queries))

    new_password = f"pw-{secrets.token_hex(8)}"
    new_user = db.user if strategy == "single-user" else f"{db.user}_clone"
    if strategy == "alternating-users":
        db.create_user(new_user, f"pw-{secrets.token_hex(8)}")
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        phase()
        calls_before = calls.total
        # The four steps of a rotation function: createSecret, setSecret, testSecret, finishSecret.
        old, new = rotate_secret_stage(admin, "db", db.secret(new_user, new_password))
        phase()
        db.set_password(new_user, new_password)
        password_set = load.mark()  # connects from here log in after the old password stopped working
        phase()
        assert db.login_works(new_user, new_password)
        finish_rotation(admin, "db", old, new)
        phase()
        if strategy == "alternating-users":
            clock.advance(TTL + 1)  # the cached AWSCURRENT expires: the next read fetches the new version
        expired = load.mark()
        # The pickup point: single user, the failed login; alternating users, the TTL.
        boundary = password_set if strategy == "single-user" else expired
        wait_until(lambda: load.late(boundary))
    finally:
        stop.set()
        for thread in threads:
            thread.join(WATCHDOG)
        engine.dispose()
    assert not [thread for thread in threads if thread.is_alive()], "a worker hung"
    calls_during = calls.total - calls_before
    assert load.failures == []
    assert len(load.queries) >= 4 * PHASE_QUERIES  # every phase saw queries complete
    early = [entry for entry in load.logins if entry.seq < boundary]
    late = [entry for entry in load.logins if entry.seq >= boundary]
    assert (db.user, db.password) in {(entry.user, entry.password) for entry in early}  # the old login was used
    assert len(late) >= PHASE_CONNECTS
    assert {(entry.user, entry.password) for entry in late} == {(new_user, new_password)}
    late_users = [user for seq, user in load.queries if seq >= boundary]
    assert len(late_users) >= PHASE_QUERIES
    assert set(late_users) == {new_user}  # the server agrees: queries on new connections run as the new user
    if strategy == "single-user":
        assert not db.login_works(db.user, db.password)  # the old password no longer works
    else:
        assert db.login_works(db.user, db.password)  # the previous user keeps working until the next rotation
    # Reported figure: Secrets Manager calls for the whole rotation, across 8 threads.
    print(f"{db.server.engine} {strategy}: {calls_during} Secrets Manager call(s) during the rotation")
    # Single user: one forced refresh of AWSCURRENT and one read of AWSPENDING per factory (the rate
    # limit never lapses on the fake clock); the AWSPENDING read may run twice if an unforced read
    # of the cold label completes just before the forced one starts. Alternating users: the one
    # fetch after the TTL, shared by every thread.
    assert calls_during <= (3 if strategy == "single-user" else 1)
