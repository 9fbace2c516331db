"""A real password rotation under load: zero failed queries, new connections use the new password."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import pytest

from secretcache import SecretCache
from secretcache.db import connection_factory
from tests.conftest import Calls
from tests.test_db import Database, finish_rotation, rotate_secret_stage

THREADS = 8
RUN_BEFORE = 0.8  # seconds of load before the rotation starts
RUN_AFTER = 1.5  # seconds of load after it ends
STEP_PAUSE = 0.3  # seconds between rotation steps, so queries run in every phase


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
    rotating_db: Database, client: Any, admin: Any, calls: Calls, strategy: str
) -> None:
    """8 threads query through a pool that reopens connections while the password rotates."""
    import sqlalchemy

    db = rotating_db
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    # Single user: the old password stops working, so pickup comes from the failed login even with a
    # long TTL. Alternating users: the old login keeps working, nothing fails, pickup is by TTL.
    ttl = 3600.0 if strategy == "single-user" else 0.4
    cache = SecretCache(client, ttl=ttl)
    factory = connection_factory(cache, "db", db.connect)
    url = "postgresql+psycopg://" if db.server.engine == "postgres" else "mysql+pymysql://"
    # pool_recycle makes the pool replace connections every 50 ms: new logins all the time.
    engine = sqlalchemy.create_engine(url, creator=factory, pool_size=4, max_overflow=4, pool_recycle=0.05)
    failures: list[BaseException] = []
    users: list[tuple[float, str]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            try:
                with engine.connect() as connection:
                    user = str(connection.execute(sqlalchemy.text("SELECT current_user")).scalar())
                with lock:
                    users.append((time.monotonic(), user.split("@")[0]))
            except Exception as error:  # the assertion below reports them
                with lock:
                    failures.append(error)
            time.sleep(0.002)

    new_password = f"pw-{secrets.token_hex(8)}"
    new_user = db.user if strategy == "single-user" else f"{db.user}_clone"
    if strategy == "alternating-users":
        db.create_user(new_user, f"pw-{secrets.token_hex(8)}")
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(RUN_BEFORE)
        calls_before = calls.total
        # The four steps of a rotation function: createSecret, setSecret, testSecret, finishSecret.
        old, new = rotate_secret_stage(admin, "db", db.secret(new_user, new_password))
        time.sleep(STEP_PAUSE)
        db.set_password(new_user, new_password)
        time.sleep(STEP_PAUSE)
        assert db.login_works(new_user, new_password)
        finish_rotation(admin, "db", old, new)
        rotated_at = time.monotonic()
        time.sleep(RUN_AFTER)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        engine.dispose()
    calls_during = calls.total - calls_before
    assert failures == []
    assert len(users) > 50
    late = [user for when, user in users if when > rotated_at + min(ttl, 0.4) + 0.3]
    assert late
    assert set(late) == {new_user}
    if strategy == "single-user":
        assert not db.login_works(db.user, db.password)  # the old password no longer works
    else:
        assert db.login_works(db.user, db.password)  # the previous user keeps working until the next rotation
    # Reported figure: Secrets Manager calls for the whole rotation, across 8 threads.
    print(f"{db.server.engine} {strategy}: {calls_during} Secrets Manager call(s) during the rotation")
    assert calls_during <= (4 if strategy == "single-user" else 4 + (RUN_AFTER + 3 * STEP_PAUSE) / (0.8 * ttl) + 2)
