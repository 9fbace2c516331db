"""No error leaving a database factory or integration holds the password, whatever its class.

Every way of connecting (7 drivers and integrations, sync and asyncio) is tried against the real
PostgreSQL and MariaDB servers of the suite with passwords drivers choke on (outside Latin-1, a
lone surrogate, NUL, newline, quotes, 10 KB, text that looks like a connection string). The
user's real password differs, so each connect fails, at the server or while the driver encodes
the password; the error that leaves the library is searched for the password in every form
(:func:`assert_secret_absent`). Passwords a server accepts are shown to log in. The Django
backend, whose settings are process-wide, is tried in a subprocess.
"""

from __future__ import annotations

import asyncio
import pickle
import secrets
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from secretcache import SecretCache
from secretcache.db import (
    Failure,
    RedactedConnectError,
    async_connection_factory,
    attach_to_engine,
    classify,
    connection_factory,
    psycopg_async_connection_class,
    psycopg_connection_class,
)
from secretcache.db._secrecy import FRAGMENT, holds
from tests.conftest import WATCHDOG
from tests.db import Database
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.leaks import assert_value_absent, record_leaks
from tests.servers import Server

pytestmark = pytest.mark.usefixtures("no_password_logged")

TOKEN = secrets.token_hex(6)
PASSWORDS = {
    "non-latin-1": f"Zürich-漢字-{TOKEN}-…",
    "lone-surrogate": f"pw-{TOKEN}-\ud800-end",
    "nul": f"pw-{TOKEN}\x00tail",
    "newline": f"pw-{TOKEN}\nsecond line",
    "quotes": f"pw-'{TOKEN}'-\"dq\"-\\bs",
    "10-kb": TOKEN + secrets.token_urlsafe(7700)[:10_240],
    "conninfo": f"x' host=evil.example port=1 dbname=postgres user=postgres password='{TOKEN}",
}

# name: (server engine, async?)
WAYS = {
    "psycopg": ("postgres", False),  # connection_factory(cache, id, psycopg.connect)
    "psycopg-class": ("postgres", False),  # psycopg_connection_class(...).connect(), as psycopg_pool calls it
    "pymysql": ("mysql", False),  # connection_factory(cache, id, pymysql.connect)
    "sqlalchemy-creator": ("postgres", False),  # create_engine("postgresql+psycopg://", creator=factory)
    "sqlalchemy-attach": ("mysql", False),  # attach_to_engine(create_engine("mysql+pymysql://..."), ...)
    "asyncpg": ("postgres", True),  # async_connection_factory(cache, id, asyncpg.connect)
    "psycopg-async": ("postgres", True),  # psycopg_async_connection_class(...).connect()
    "aiomysql": ("mysql", True),  # async_connection_factory(cache, id, aiomysql.connect)
    "sqlalchemy-async-creator": ("postgres", True),  # create_async_engine("postgresql+asyncpg://", async_creator=)
    "sqlalchemy-async-attach": ("mysql", True),  # attach_to_engine(AsyncEngine on aiomysql, ...)
}
SECRET = "db"


@pytest.fixture(scope="module")
def users(pg_server: Server, maria_server: Server) -> dict[str, Database]:
    """Per engine, a user whose real password is none of :data:`PASSWORDS`."""
    found: dict[str, Database] = {}
    for server, driver in ((pg_server, "psycopg"), (maria_server, "pymysql")):
        database = Database(server, driver, f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
        database.create_user(database.user, database.password)
        found[server.engine] = database
    return found


async def open_and_close(way: str, database: Database, cache: SecretCache) -> None:
    """Open one connection the ``way`` way with the secret's credentials, and close it."""
    options: dict[str, Any] = {"rotation_grace": 0}
    dbname = database.server.dbname
    if way in ("psycopg", "pymysql"):
        connect = __import__(way).connect
        connection_factory(cache, SECRET, connect, **options)().close()
    elif way == "psycopg-class":
        psycopg_connection_class(cache, SECRET, **options).connect().close()
    elif way in ("sqlalchemy-creator", "sqlalchemy-attach"):
        import psycopg
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        if way == "sqlalchemy-creator":
            creator = connection_factory(cache, SECRET, psycopg.connect, **options)
            engine = sqlalchemy.create_engine("postgresql+psycopg://", creator=creator, poolclass=NullPool)
        else:
            engine = sqlalchemy.create_engine(f"mysql+pymysql://nobody@127.0.0.1:1/{dbname}", poolclass=NullPool)
            attach_to_engine(engine, cache, SECRET, **options)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    elif way == "asyncpg":
        import asyncpg

        await (await async_connection_factory(cache, SECRET, asyncpg.connect, **options)()).close()
    elif way == "psycopg-async":
        await (await psycopg_async_connection_class(cache, SECRET, **options).connect()).close()
    elif way == "aiomysql":
        import aiomysql

        (await async_connection_factory(cache, SECRET, aiomysql.connect, **options)()).close()
    else:
        import asyncpg
        import sqlalchemy
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        if way == "sqlalchemy-async-creator":
            factory = async_connection_factory(cache, SECRET, asyncpg.connect, **options)
            async_engine = create_async_engine("postgresql+asyncpg://", async_creator=factory, poolclass=NullPool)
        else:
            url = f"mysql+aiomysql://nobody@127.0.0.1:1/{dbname}"
            async_engine = create_async_engine(url, poolclass=NullPool)
            attach_to_engine(async_engine, cache, SECRET, **options)
        try:
            async with async_engine.connect() as connection:
                await connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            await async_engine.dispose()


async def failure_of(way: str, database: Database, cache: SecretCache) -> Exception:
    """The error connecting the ``way`` way raises (the test fails if it connects)."""
    try:
        await asyncio.wait_for(open_and_close(way, database, cache), WATCHDOG)
    except Exception as error:
        return error
    raise AssertionError(f"{way} logged in with a wrong password")


def forms(password: str) -> Iterator[str | bytes]:
    """The password and the ways a message, a repr or a connection string may spell it."""
    yield password
    yield repr(password)[1:-1]
    yield password.encode("unicode_escape").decode("ascii")
    yield password.replace("\\", "\\\\").replace("'", "\\'")
    yield password.encode("utf-8", "surrogatepass")


def assert_secret_absent(error: BaseException, password: str) -> None:
    """Fail if any form of ``password`` is reachable from ``error``, or shows in its printed traceback."""
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for form in dict.fromkeys(forms(password)):
        assert_value_absent(error, form)
        text = form if isinstance(form, str) else form.decode("latin-1")
        assert text not in printed, "the printed traceback shows the password"
    # A fragment shows nothing either (a 10 KB password is not printed whole).
    assert password[-FRAGMENT:] not in printed


@pytest.mark.parametrize("kind", PASSWORDS)
@pytest.mark.parametrize("way", WAYS)
async def test_no_error_holds_the_password(
    way: str, kind: str, users: dict[str, Database], client: Any, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused or unencodable password is in no error that leaves the library (args, repr, chain,
    traceback) and in no record the library logged on the way (DEBUG included), in any form."""
    database = users[WAYS[way][0]]
    password = PASSWORDS[kind]
    admin.create_secret(Name=SECRET, SecretString=database.secret(database.user, password))
    with SecretCache(client, ttl=3600) as cache:
        error = await failure_of(way, database, cache)
    assert_secret_absent(error, password)
    if classify(error) is Failure.AUTH:  # refused at the server: the recovery's lines were logged
        assert caplog.records
    for form in dict.fromkeys(forms(password)):
        assert record_leaks(caplog.records, form) == []
    if isinstance(error, RedactedConnectError):
        assert error.__cause__ is None
        assert error.__context__ is None
        assert error.__suppress_context__
        assert error.secret_id == SECRET
        assert error.driver_error in str(error)


ACCEPTED = {  # per engine, the passwords its drivers can log in with
    "postgres": ["non-latin-1", "newline", "quotes", "10-kb", "conninfo"],
    "mysql": ["newline", "quotes", "10-kb", "conninfo"],
}


def set_password(database: Database, user: str, password: str) -> None:
    """Give ``user`` a password with any characters, passed as a literal the server unescapes."""
    if database.server.engine == "postgres":
        import psycopg
        from psycopg import sql

        statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
        with psycopg.connect(**database._admin_kwargs(), autocommit=True) as connection:
            connection.execute(statement)
    else:
        import pymysql

        connection = pymysql.connect(**database._admin_kwargs(), autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        connection.close()


@pytest.mark.parametrize("way", WAYS)
async def test_accepted_passwords_log_in(
    way: str, pg_server: Server, maria_server: Server, client: Any, admin: Any
) -> None:
    """Newlines, quotes, 10 KB, connection-string text (and, for PostgreSQL, non-Latin-1) log in every way."""
    engine = WAYS[way][0]
    server = pg_server if engine == "postgres" else maria_server
    database = Database(server, "psycopg" if engine == "postgres" else "pymysql", f"app_{secrets.token_hex(4)}", "x")
    database.create_user(database.user, f"pw-{secrets.token_hex(8)}")
    admin.create_secret(Name=SECRET, SecretString=database.secret(database.user, "unset"))
    for kind in ACCEPTED[engine]:
        set_password(database, database.user, PASSWORDS[kind])
        admin.put_secret_value(SecretId=SECRET, SecretString=database.secret(database.user, PASSWORDS[kind]))
        with SecretCache(client, ttl=3600) as cache:
            await asyncio.wait_for(open_and_close(way, database, cache), WATCHDOG)


def test_search_sees_every_route() -> None:
    """The search finds a password in args, attributes, notes, nested objects, bytes, fragments and the chain."""
    password = f"Zürich-{TOKEN}-漢字-\ud800"

    class Holder:
        def __init__(self, secret: object) -> None:
            self.inner = {"kwargs": [secret]}

    def chained(error: BaseException) -> Exception:
        outer = RuntimeError("connect failed")
        outer.__context__ = error
        return outer

    clean = ValueError("nothing here", 1045)
    with_note = ValueError("x")
    with_note.__dict__["__notes__"] = [f"password={password}"]
    carriers: list[BaseException] = [
        UnicodeEncodeError("latin-1", password, 7, 8, "ordinal not in range(256)"),
        ValueError(Holder(password)),
        with_note,
        ValueError(password.encode("utf-8", "surrogatepass")),
        ValueError(f"…{password[2:][:FRAGMENT]}…"),
        ValueError(repr(password)),
        chained(chained(KeyError(password))),
    ]
    for carrier in carriers:
        assert holds(carrier, [password]), repr(carrier)
    assert not holds(clean, [password])
    assert not holds(clean, [""])  # no password: nothing to find
    cycle = RuntimeError("a")
    cycle.__context__ = RuntimeError("b")
    cycle.__context__.__context__ = cycle
    assert not holds(cycle, [password])


def test_redacted_error_classifies_and_pickles_without_the_original(client: Any, admin: Any) -> None:
    """The replacement keeps the class name, the code and the classification; pickling keeps them too."""
    import pymysql

    admin.create_secret(
        Name=SECRET, SecretString='{"host": "127.0.0.1", "port": 1, "username": "u", "password": "Zürich-漢字"}'
    )
    with SecretCache(client, ttl=3600) as cache:
        factory = connection_factory(cache, SECRET, pymysql.connect, rotation_grace=0)
        with pytest.raises(RedactedConnectError) as info:
            factory()
    error = info.value
    assert error.driver_error == "builtins.UnicodeEncodeError"
    assert error.code is None
    assert classify(error) is Failure.OTHER
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (type(clone), str(clone), clone.driver_error, clone.failure) == (
        RedactedConnectError,
        str(error),
        error.driver_error,
        error.failure,
    )
    assert_secret_absent(error, "Zürich-漢字")


# Django settings are process-wide: the backend is tried in its own interpreter.
DJANGO_SCRIPT = """
import json, os, sys
sys.path.insert(0, os.environ["REPO"])
import boto3
from moto import mock_aws
from secretcache import SecretCache
from tests.leaks import leaks_of

password = json.loads(os.environ["SECRET"])["password"]
with mock_aws():
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.create_secret(Name="django/db", SecretString=os.environ["SECRET"])
    import django
    from django.conf import settings
    settings.configure(DATABASES={"default": {"ENGINE": "secretcache.db.django.postgresql",
                                              "SECRET_ID": "django/db", "SECRET_CACHE": SecretCache(sm)}})
    django.setup()
    from django.db import connection
    try:
        connection.ensure_connection()
    except Exception as error:
        found = [path for form in (password, repr(password)[1:-1], password.encode("utf-8", "surrogatepass"))
                 for path in leaks_of(error, form)]
        print(json.dumps({"type": type(error).__module__ + "." + type(error).__qualname__, "found": found}))
"""


def test_django_backend_error_holds_no_password(users: dict[str, Database], tmp_path: Any) -> None:
    """The Django backend lets out no error holding the password (psycopg's UnicodeEncodeError for a surrogate)."""
    pytest.importorskip("django", reason="Django is not installed; pip install django")
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    database = users["postgres"]
    script = tmp_path / "django_secrecy.py"
    script.write_text(DJANGO_SCRIPT)
    secret = database.secret(database.user, PASSWORDS["lone-surrogate"])
    env = {**os.environ, "REPO": str(Path(__file__).resolve().parent.parent), "SECRET": secret}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=WATCHDOG * 3, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"type": "secretcache.db.RedactedConnectError", "found": []}


class Node:
    """An object with a default ``repr`` (its address) holding one thing."""

    def __init__(self, child: object) -> None:
        self.child = child


def nested(levels: int, value: object) -> object:
    for _ in range(levels):
        value = Node(value)
    return value


def test_search_past_its_depth_or_into_a_closure_counts_as_holding(client: Any, admin: Any) -> None:
    """A password deeper than the search goes or kept by a closure is found; too deep to search counts as holding."""
    password = f"pw-{TOKEN}-deep"

    def closure(value: str) -> Any:
        return lambda: value

    def carrying(holding: object) -> ValueError:
        error = ValueError("connect failed")
        error.__dict__["conn"] = holding
        return error

    assert holds(carrying(nested(12, password)), [password])
    assert holds(carrying(nested(12, "nothing")), [password])  # too deep to vouch for
    assert not holds(carrying(nested(2, "nothing")), [password])
    assert holds(carrying(closure(password)), [password])
    assert not holds(carrying(closure("nothing")), [password])

    def connect(**kwargs: Any) -> Any:
        raise carrying(nested(7, kwargs["password"]))  # a driver keeping its connection's objects

    admin.create_secret(Name=SECRET, SecretString=f'{{"username": "u", "password": "{password}"}}')
    with SecretCache(client, ttl=3600) as cache:
        factory = connection_factory(cache, SECRET, connect, mapping="psycopg", rotation_grace=0)
        with pytest.raises(RedactedConnectError) as info:
            factory()
    assert info.value.driver_error == "builtins.ValueError"


def test_an_error_that_breaks_the_search_is_redacted(client: Any, admin: Any) -> None:
    """An error whose attributes cannot even be read is replaced, not let out with the search's error chained."""
    password = f"pw-{TOKEN}-opaque"

    class Opaque(Exception):
        def __getattribute__(self, name: str) -> Any:
            if name == "__dict__":
                raise KeyError(password)
            return super().__getattribute__(name)

    def connect(**kwargs: Any) -> Any:
        raise Opaque("no")

    admin.create_secret(Name=SECRET, SecretString=f'{{"username": "u", "password": "{password}"}}')
    with SecretCache(client, ttl=3600) as cache:
        factory = connection_factory(cache, SECRET, connect, mapping="psycopg", rotation_grace=0)
        with pytest.raises(RedactedConnectError) as info:
            factory()
    assert info.value.driver_error.endswith("Opaque")
    assert info.value.__context__ is None
