"""Failures during the rotation grace of a connection factory: of the database, of Secrets Manager, interrupts.

The database is a scripted connect function raising PyMySQL's own errors; every wait runs on the
FakeClock. Covered: a server down during the grace, a grace left before it ran out (by such an
error or an interrupt), Secrets Manager failing during the grace and in the refresh and AWSPENDING
reads before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from botocore.exceptions import ClientError

from secretcache import RetryPolicy, SecretCache
from secretcache.db import connection_factory
from tests.conftest import Calls, FakeClock
from tests.db import no_password_logged as no_password_logged  # a fixture
from tests.grace import POLLS, Server, document, refused
from tests.grace import cache as cache  # a fixture

pytestmark = pytest.mark.usefixtures("no_password_logged")

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
