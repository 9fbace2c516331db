"""Lambda freezes the process between invocations: a background refresh stopped mid-fetch, thawed
long past its deadline. A value read before the freeze is not served past its TTL after it, and a
fetch whose attempt failed on thaw still retries (the frozen time is not spent on its deadline)."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ReadTimeoutError

from secretcache import SecretCache
from secretcache.aws_lambda import inject_secrets
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.threads import start


def freeze_background_fetch(client: Any, event: str, *, fail: bool) -> tuple[threading.Event, threading.Event]:
    """Stop the cache's next background fetch at ``event`` (``before-call``/``after-call``) until thawed."""
    frozen, thaw = threading.Event(), threading.Event()

    def hook(**_: Any) -> None:
        if threading.current_thread().name.startswith("secretcache") and not thaw.is_set():
            frozen.set()
            assert thaw.wait(WATCHDOG)
            if fail:
                raise ReadTimeoutError(endpoint_url="https://secretsmanager")  # its connection died frozen

    client.meta.events.register(f"{event}.secretsmanager.GetSecretValue", hook)
    return frozen, thaw


def test_an_answer_read_before_a_freeze_is_not_served_past_its_ttl_after_the_thaw(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A refresh that read the value, then froze for 1000 s (TTL 300) while the secret rotated, does not
    make the thawed invocations serve that value for another TTL."""
    admin.create_secret(Name="prod/db", SecretString="pw-1")
    cache = SecretCache(client, ttl=300, ttl_jitter=0, clock=clock, sleep=clock.sleep)

    @inject_secrets(cache, db="prod/db")
    def handler(event: Any, context: Any, *, db: str) -> str:
        return db

    assert handler({}, None) == "pw-1"
    frozen, thaw = freeze_background_fetch(client, "after-call", fail=False)
    clock.advance(250)  # past the refresh-ahead point (240 s): a background refresh starts
    assert handler({}, None) == "pw-1"
    assert frozen.wait(WATCHDOG)  # it has read pw-1; the invocation ended; the process is frozen
    admin.put_secret_value(SecretId="prod/db", SecretString="pw-2")
    clock.advance(1000)
    thaw.set()
    handler({}, None)  # the first invocation after the thaw may get the value its refresh read
    clock.advance(10)
    assert handler({}, None) == "pw-2"  # pw-1 was read from Secrets Manager 1010 s ago: past its TTL
    cache.close()


def test_an_invocation_joining_a_fetch_frozen_past_its_deadline_gets_a_value(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A refresh frozen mid-request for 1000 s (past max_stale) whose connection died: the invocation
    after the thaw, with nothing it may serve, gets the value (Secrets Manager answers), not the error of
    an attempt that was never retried."""
    admin.create_secret(Name="prod/db", SecretString="pw-1")
    cache = SecretCache(client, ttl=300, ttl_jitter=0, max_stale=600, clock=clock, sleep=clock.sleep)

    @inject_secrets(cache, db="prod/db")
    def handler(event: Any, context: Any, *, db: str) -> str:
        return db

    assert handler({}, None) == "pw-1"
    frozen, thaw = freeze_background_fetch(client, "before-call", fail=True)
    clock.advance(250)
    assert handler({}, None) == "pw-1"
    assert frozen.wait(WATCHDOG)
    clock.advance(1000)
    misses = cache.stats().misses

    def thaw_once_joined() -> None:  # the next invocation has joined the frozen fetch: thaw
        wait_until(lambda: cache.stats().misses > misses)
        thaw.set()

    thawed = start(thaw_once_joined, "thaw")
    try:
        assert handler({}, None) == "pw-1"
    finally:
        thaw.set()
        thawed.result(WATCHDOG)
        cache.close()
