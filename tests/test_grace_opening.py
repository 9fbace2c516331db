"""When the rotation grace of a connection factory opens, reopens or does not, and its arguments.

The database is a scripted connect function raising PyMySQL's own errors (one test: psycopg's);
every wait runs on the FakeClock. Covered: a grace spent, then reopened by a success, a new
version or a new factory; a typo costing one grace; errors and settings that get no grace; and
bad arguments refused when the factory is built.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from secretcache import SecretCache
from secretcache.db import Failure, async_connection_factory, classify, connection_factory
from tests.conftest import Calls, FakeClock
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.grace import GRACE, POLLS, Server, document, refused
from tests.grace import cache as cache  # a fixture

pytestmark = pytest.mark.usefixtures("no_password_logged")

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


# -- arguments --------------------------------------------------------------------------------


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
