"""Database connection factories against real PostgreSQL and MariaDB with password auth."""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections.abc import Callable
from typing import Any

import pytest

from secretcache import AsyncSecretCache, SecretCache, SecretFormatError
from secretcache.db import (
    DbCredentials,
    Failure,
    attach_to_engine,
    classify,
    connection_factory,
    credentials,
    psycopg_connection_class,
)
from tests.conftest import Calls, FakeClock
from tests.db import Database, finish_rotation, rotate_password, rotate_secret_stage
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.leaks import assert_value_absent
from tests.servers import Server, free_port

pytestmark = pytest.mark.usefixtures("no_password_logged")


def current_user(connection: Any) -> str:
    cursor = connection.cursor()
    cursor.execute("SELECT current_user")
    row = cursor.fetchone()
    cursor.close()
    return str(row[0]).split("@")[0]


@pytest.fixture(params=["psycopg", "psycopg2", "pymysql"])
def database(request: pytest.FixtureRequest) -> Database:
    """A fresh user on a real server, for each driver; the server really checks passwords."""
    engine = "mysql" if request.param == "pymysql" else "postgres"
    server = request.getfixturevalue("maria_server" if engine == "mysql" else "pg_server")
    db = Database(server, request.param, f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    assert db.login_works(db.user, db.password)
    assert not db.login_works(db.user, "wrong-password")  # no trust auth: rotation tests cannot pass vacuously
    return db


@pytest.fixture
def sm(client: Any, admin: Any, calls: Calls) -> tuple[Any, Any, Calls]:
    return client, admin, calls


@pytest.fixture
def clocked_cache(client: Any, clock: FakeClock) -> SecretCache:
    """A cache on the fake clock: TTLs, backoffs and the factories' refresh rate limit never lapse by themselves."""
    return SecretCache(client, ttl=3600, clock=clock)


class TestCredentials:
    def test_rds_and_template_layouts(self, client: Any, admin: Any) -> None:
        """username/password plus host, port (number or string), dbname or database, and extra keys."""
        admin.create_secret(Name="rds", SecretString=json.dumps({
            "engine": "postgres", "host": "db.example", "port": 5432, "username": "app", "password": "pw-x",
            "dbname": "orders", "dbClusterIdentifier": "orders-cluster",
        }))  # fmt: skip
        admin.create_secret(Name="tpl", SecretString=json.dumps({
            "engine": "mysql", "host": "db2", "port": "3306", "username": "u", "password": "p", "database": "shop",
        }))  # fmt: skip
        cache = SecretCache(client)
        rds = credentials(cache, "rds")
        assert (rds.username, rds.host, rds.port, rds.dbname, rds.engine) == (
            "app",
            "db.example",
            5432,
            "orders",
            "postgres",
        )
        assert dict(rds.extra) == {"dbClusterIdentifier": "orders-cluster"}
        assert rds.version_id == cache.get_secret("rds").version_id
        tpl = credentials(cache, "tpl")
        assert (tpl.port, tpl.dbname) == (3306, "shop")
        assert "pw-x" not in repr(rds) + str(rds)
        assert "password=<redacted>" in repr(rds)
        assert {rds: "pool"}[credentials(cache, "rds")] == "pool"  # hashable, extra keys and all: a dict key

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            ({"username": "app"}, "no 'password' key"),
            ({"password": "x"}, "no 'username' key"),
            ({"username": "a", "password": 5}, "'password' must be a string"),
            ({"username": "a", "password": "b", "port": "abc"}, "'port' is not a number"),
            (["a"], "not an object"),
            ("not json", "not JSON"),
        ],
    )
    def test_bad_layouts_name_the_key(self, client: Any, admin: Any, document: Any, message: str) -> None:
        """A secret that is not usable credentials raises SecretFormatError naming the key, never the value."""
        text = document if isinstance(document, str) else json.dumps(document)
        admin.create_secret(Name="bad", SecretString=text)
        with pytest.raises(SecretFormatError, match=message) as info:
            credentials(SecretCache(client), "bad")
        assert "abc" not in str(info.value)  # the bad port value is not quoted

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"host": {"password": "pw-nested-marker"}}, "'host' must be a string, not an object"),
            ({"host": ["pw-nested-marker"]}, "'host' must be a string, not an array"),
            ({"dbname": ["pw-nested-marker"]}, "'dbname' must be a string, not an array"),
            ({"database": {"pw-nested-marker": 1}}, "'database' must be a string, not an object"),
            ({"engine": 5}, "'engine' must be a string, not a number"),
            ({"port": True}, "'port' is not a number from 1 to 65535"),
            ({"port": 70000}, "'port' is not a number from 1 to 65535"),
            ({"port": 0}, "'port' is not a number from 1 to 65535"),
            ({"port": -5432}, "'port' is not a number from 1 to 65535"),
            ({"port": 5432.5}, "'port' is not a number from 1 to 65535"),
            ({"port": "65536"}, "'port' is not a number from 1 to 65535"),
            ({"port": "pw-nested-marker"}, "'port' is not a number from 1 to 65535"),
            ({"port": {"pw-nested-marker": 1}}, "'port' is not a number from 1 to 65535"),
        ],
    )
    def test_fields_of_the_wrong_type_or_range_name_the_field(
        self, client: Any, admin: Any, change: dict[str, Any], message: str
    ) -> None:
        """A host, dbname or engine that is no string, or a port outside 1-65535: SecretFormatError naming the field.

        They were passed on as ``str()`` of the value (the driver's error then quoted what the
        secret nested there) or as a wrong port (``true`` as 1; PyMySQL takes 70000 as 4464).
        """
        document = {"username": "app", "password": "pw-x", "host": "db.example", "port": 5432, **change}
        admin.create_secret(Name="bad", SecretString=json.dumps(document))
        connects: list[dict[str, Any]] = []
        factory = connection_factory(
            SecretCache(client), "bad", lambda **kwargs: connects.append(kwargs), mapping="pymysql"
        )
        for read in (lambda cache: credentials(cache, "bad"), lambda _cache: factory()):
            with pytest.raises(SecretFormatError, match=re.escape(message)) as info:
                read(SecretCache(client))
            assert_value_absent(info.value, "pw-nested-marker")
            assert info.value.__cause__ is None
            assert info.value.__context__ is None
        assert connects == []  # the driver never saw it

    def test_accepted_ports_and_a_null_dbname(self, client: Any, admin: Any) -> None:
        """Ports as integers, integral numbers or digit strings are read; a null field counts as left out."""
        for port, expected in ((1, 1), (65535, 65535), (5432.0, 5432), (" 5432 ", 5432), ("03306", 3306), (None, None)):
            name = f"ok-{secrets.token_hex(3)}"
            document = {"username": "u", "password": "p", "port": port, "dbname": None, "database": "shop"}
            document["host"] = None
            admin.create_secret(Name=name, SecretString=json.dumps(document))
            creds = credentials(SecretCache(client), name)
            assert (creds.port, creds.dbname, creds.host) == (expected, "shop", None)


class TestFactory:
    def test_connects_with_the_secret(
        self, database: Database, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
    ) -> None:
        """The factory opens a connection as the secret's user, with one API call for many connects."""
        _, admin, calls = sm
        admin.create_secret(Name="db", SecretString=database.secret(database.user, database.password))
        factory = connection_factory(clocked_cache, "db", database.connect)
        for _ in range(5):
            connection = factory()
            assert current_user(connection) == database.user
            connection.close()
        assert calls.total == 1

    def test_stale_cache_recovers_after_rotation_with_one_call(
        self, database: Database, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
    ) -> None:
        """After a completed rotation the cached password fails; one forced refresh fixes it."""
        _, admin, calls = sm
        admin.create_secret(Name="db", SecretString=database.secret(database.user, database.password))
        factory = connection_factory(clocked_cache, "db", database.connect)
        factory().close()
        rotate_password(database, admin, "db")
        before = calls.total
        connection = factory()
        assert current_user(connection) == database.user
        connection.close()
        assert calls.total - before == 1
        factory().close()
        assert calls.total - before == 1

    def test_pending_is_tried_when_the_database_moved_first(
        self, database: Database, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
    ) -> None:
        """Mid-rotation (database changed, AWSCURRENT not moved yet) AWSPENDING's password is used."""
        _, admin, calls = sm
        admin.create_secret(Name="db", SecretString=database.secret(database.user, database.password))
        factory = connection_factory(clocked_cache, "db", database.connect)
        factory().close()
        rotate_password(database, admin, "db", finish=False)
        old, new = (
            admin.get_secret_value(SecretId="db", VersionStage=stage)["VersionId"]
            for stage in ("AWSCURRENT", "AWSPENDING")
        )
        before = calls.total
        factory().close()
        assert calls.counts["GetSecretValue"] - 1 == 2  # one refresh of AWSCURRENT, one read of AWSPENDING
        for _ in range(5):  # goes straight to the version that works: no more calls
            factory().close()
        assert calls.total - before == 2
        finish_rotation(admin, "db", old, new)
        factory().close()
        assert calls.total - before == 2

    def test_server_down_is_raised_at_once(
        self, database: Database, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
    ) -> None:
        """A connection error that is not about credentials costs no Secrets Manager call."""
        _, admin, calls = sm
        admin.create_secret(Name="db", SecretString=database.secret(database.user, database.password, port=free_port()))
        factory = connection_factory(clocked_cache, "db", database.connect)
        with pytest.raises(database.operational_error) as info:
            factory()
        assert classify(info.value) is Failure.OTHER
        assert calls.total == 1

    def test_a_user_at_its_connection_limit_is_no_login_failure(
        self, database: Database, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
    ) -> None:
        """A user at its connection limit (a saturated pool) is raised at once: no call, its version not refused.

        PostgreSQL's ``too many connections for role`` was taken for a maybe-login failure: a
        forced refresh of AWSCURRENT per connect (one per 5 s), and the version marked refused.
        """
        _, admin, calls = sm
        if database.server.engine == "postgres":
            database.admin_execute(f"ALTER ROLE {database.user} CONNECTION LIMIT 1")
        else:
            database.admin_execute(f"ALTER USER '{database.user}'@'%' WITH MAX_USER_CONNECTIONS 1")
        admin.create_secret(Name="db", SecretString=database.secret(database.user, database.password))
        factory = connection_factory(clocked_cache, "db", database.connect)
        held = factory()
        try:
            for _ in range(3):
                with pytest.raises(database.operational_error) as info:
                    factory()
                assert classify(info.value) is Failure.OTHER
        finally:
            held.close()
        assert calls.total == 1  # the first read only
        factory().close()
        assert calls.total == 1

    def test_wrong_password_costs_one_grace_then_fails_at_once(
        self, database: Database, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache, clock: FakeClock
    ) -> None:
        """A wrong password in the secret: the first connect fails after one grace period, the next 19 at once."""
        _, admin, calls = sm
        admin.create_secret(Name="db", SecretString=database.secret(database.user, "wrong-password"))
        factory = connection_factory(clocked_cache, "db", database.connect, sleep=clock.sleep)
        start = clock.now
        with pytest.raises(database.operational_error) as info:
            factory()
        assert classify(info.value) is Failure.AUTH
        assert 5.0 <= clock.now - start <= 5.0 + 0.25  # polled through one grace period, every 250 ms
        assert set(clock.sleeps) == {0.25}
        # The first read, one forced AWSCURRENT, one AWSPENDING read, then one poll per 250 ms.
        assert calls.total <= 3 + 21
        first, waits = calls.total, len(clock.sleeps)
        for _ in range(19):
            with pytest.raises(database.operational_error) as info:
                factory()
            assert classify(info.value) is Failure.AUTH
            assert_value_absent(info.value, "wrong-password")  # psycopg's error.pgconn held it
        assert len(clock.sleeps) == waits  # no grace again for the same version: each fails at once
        assert calls.total <= first + 2  # at most AWSCURRENT and AWSPENDING once more (rate limit, backoff)


def test_refresh_rate_limit_runs_on_the_cache_clock(
    sm: tuple[Any, Any, Calls], clocked_cache: SecretCache, clock: FakeClock
) -> None:
    """Refused logins force a refresh at most once per min_refresh_interval of the cache's clock, not of real time."""
    import pymysql

    _, admin, calls = sm
    admin.create_secret(Name="db", SecretString=json.dumps({"username": "app", "password": "pw-1"}))
    rotate_secret_stage(admin, "db", json.dumps({"username": "app", "password": "pw-2"}))
    tried: list[str] = []

    def refuse(**kwargs: Any) -> Any:
        tried.append(kwargs["password"])
        raise pymysql.err.OperationalError(1045, "Access denied")

    # rotation_grace=0: the behaviour before the grace, which this test pins (the grace has its own).
    factory = connection_factory(
        clocked_cache, "db", refuse, mapping="pymysql", min_refresh_interval=60, rotation_grace=0
    )

    def refused_connect() -> None:
        with pytest.raises(pymysql.err.OperationalError):
            factory()

    refused_connect()
    assert calls.total == 3  # the first read, then forced reads of AWSCURRENT and AWSPENDING
    clock.advance(59)
    refused_connect()
    refused_connect()
    assert calls.total == 3  # within the interval: cached credentials only
    clock.advance(1)
    refused_connect()
    assert calls.total == 5  # the interval has passed on the injected clock: both labels forced again
    refused_connect()
    assert calls.total == 5
    assert tried == ["pw-1", "pw-2"] * 5  # every connect still tried both versions


def test_sqlalchemy_creator_and_attached_engine(
    pg_server: Server, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
) -> None:
    """create_engine(creator=factory) and attach_to_engine(engine) both connect with the secret."""
    import psycopg
    import sqlalchemy

    db = Database(pg_server, "psycopg", f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    _, admin, _ = sm
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=connection_factory(clocked_cache, "db", psycopg.connect)
    )
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT current_user")).scalar() == db.user
    engine.dispose()
    attached = sqlalchemy.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:1/{pg_server.dbname}")
    attach_to_engine(attached, clocked_cache, "db")
    with attached.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT current_user")).scalar() == db.user
    attached.dispose()


def test_psycopg_pool_recovers_inside_the_connection_class(
    pg_server: Server, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache
) -> None:
    """A pool whose cached password is stale still opens connections: recovery runs in the class."""
    from psycopg_pool import ConnectionPool

    db = Database(pg_server, "psycopg", f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    _, admin, _ = sm
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    clocked_cache.get_secret("db")
    rotate_password(db, admin, "db")
    connection_class = psycopg_connection_class(clocked_cache, "db")
    pool = ConnectionPool(connection_class=connection_class, min_size=2, timeout=10, open=True)
    with pool, pool.connection() as connection:
        assert current_user(connection) == db.user
    assert not db.login_works(db.user, db.password)


def test_unrecognised_postgres_error_gets_one_retry() -> None:
    """Classification: message-based for PostgreSQL, error code for MySQL, .orig for SQLAlchemy."""
    import psycopg
    import pymysql
    import sqlalchemy.exc

    assert classify(psycopg.OperationalError('FATAL:  password authentication failed for user "x"')) is Failure.AUTH
    assert classify(psycopg.OperationalError("connection refused")) is Failure.OTHER
    for full in (  # the server, a role or a database is full, or not accepting connections yet: no login failure
        'FATAL:  too many connections for role "app"',
        'FATAL:  too many connections for database "orders"',
        "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
        "FATAL:  the database system is not yet accepting connections",
        "FATAL:  the database system is in recovery mode",
        'FATAL:  database "orders" is not currently accepting connections',
    ):
        assert classify(psycopg.OperationalError(full)) is Failure.OTHER, full
    assert classify(psycopg.OperationalError("FATAL:  Passwort-Authentifizierung fehlgeschlagen")) is Failure.UNKNOWN
    assert classify(pymysql.err.OperationalError(1045, "Access denied")) is Failure.AUTH
    assert classify(pymysql.err.OperationalError(2003, "Can't connect")) is Failure.OTHER
    wrapped = sqlalchemy.exc.OperationalError("connect", {}, pymysql.err.OperationalError(1045, "Access denied"))
    assert classify(wrapped) is Failure.AUTH
    assert classify(ValueError("x")) is Failure.OTHER


def test_factory_refuses_bad_arguments(client: Any) -> None:
    """Bad connect functions, mappings and options fail at construction."""
    cache = SecretCache(client)
    with pytest.raises(TypeError):
        connection_factory(cache, "db", "psycopg.connect")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async_connection_factory takes an AsyncSecretCache"):
        connection_factory(AsyncSecretCache(cache=cache), "db", lambda **kwargs: None, mapping="pymysql")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot tell which driver"):
        connection_factory(cache, "db", lambda **kwargs: None)
    with pytest.raises(ValueError, match="unknown driver mapping"):
        connection_factory(cache, "db", lambda **kwargs: None, mapping="oracle")
    with pytest.raises(ValueError, match="mapping keys"):
        connection_factory(cache, "db", lambda **kwargs: None, mapping={"user": "u"})
    custom = connection_factory(cache, "db", lambda **kwargs: kwargs, mapping={"username": "login", "port": None})
    assert "ConnectionFactory(secret_id='db'" in repr(custom)


@pytest.mark.parametrize(
    ("module", "call", "requirement"),
    [
        ("sqlalchemy", lambda cache: attach_to_engine(object(), cache, "db"), "sqlalchemy>=2.0"),  # type: ignore[arg-type]
        ("psycopg", lambda cache: psycopg_connection_class(cache, "db"), "psycopg[binary]>=3.2"),
    ],
)
def test_missing_driver_names_an_install_that_works(
    client: Any, monkeypatch: pytest.MonkeyPatch, module: str, call: Callable[[SecretCache], object], requirement: str
) -> None:
    """Without the driver, the ImportError gives a pip command that works today (not an unpublished extra)."""
    monkeypatch.setitem(sys.modules, module, None)  # an import of it now raises ImportError
    with pytest.raises(ImportError, match=re.escape(f"pip install '{requirement}'")) as info:
        call(SecretCache(client))
    assert info.value.__cause__ is None


def test_db_credentials_equality_and_defaults() -> None:
    """DbCredentials is a frozen value object."""
    creds = DbCredentials(username="u", password="p")
    assert creds == DbCredentials(username="u", password="p")
    with pytest.raises(AttributeError):
        creds.password = "q"  # type: ignore[misc]


@pytest.mark.parametrize("dispose", [True, False])
def test_dispose_on_change_replaces_the_pool(
    pg_server: Server, sm: tuple[Any, Any, Calls], clocked_cache: SecretCache, dispose: bool
) -> None:
    """With dispose_on_change, a new AWSCURRENT version replaces the engine's pool; off by default."""
    import sqlalchemy

    db = Database(pg_server, "psycopg", f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    _, admin, _ = sm
    admin.create_secret(Name="db", SecretString=db.secret(db.user, db.password))
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:1/{pg_server.dbname}")
    attach_to_engine(engine, clocked_cache, "db", dispose_on_change=dispose)
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))
    pool = engine.pool
    assert pool.checkedin() == 1  # an idle connection opened with the old password
    rotate_password(db, admin, "db")
    clocked_cache.refresh("db")  # the cache sees the new version: on_change fires
    assert (engine.pool is not pool) is dispose
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT current_user")).scalar() == db.user
    engine.dispose()
