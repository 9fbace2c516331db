"""Replica Regions, the contract at its edges: which failures count, the deadline, and the primary's Region.

The fixtures and helpers are those of ``tests/test_regions_outage.py`` (``conftest.py`` and
``tests/regions.py``): faults are injected on the primary Region's client only, the cache runs on
a fake clock, and tests assert counts and log records, never timings.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from secretcache import AsyncSecretCache, InvalidSecretRequestError, RetryPolicy, SecretCache, SecretUnavailableError
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock
from tests.regions import PRIMARY, REPLICA, THROTTLING, create, logged, regional

# -- which failures fail over ------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 500])
def test_internal_service_error_fails_over_whatever_its_status(
    status: int,
    client: Any,
    admin: Any,
    calls: Calls,
    replica: Any,
    replica_calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Secrets Manager's server-side fault is an outage by its code: retried, then read from the replica."""
    create(admin, "db", "pw-1")
    calls.fail_with("InternalServiceError", status)
    cache = regional(client, replica, clock)
    with caplog.at_level(logging.WARNING, logger="secretcache"):
        value = cache.get_secret("db")
    assert (value.secret_string, value.region) == ("pw-1", REPLICA)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (FAST_RETRY.attempts, 1)
    [warning] = logged(caplog, "is failing")
    assert f"in {PRIMARY} is failing (InternalServiceError)" in warning.getMessage()


def throttled(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": THROTTLING, "Message": "slow down"}}, operation)  # type: ignore[arg-type]


# -- outage episodes ---------------------------------------------------------------------------


def test_a_failure_of_an_attempt_started_before_the_primary_answered_starts_no_episode(
    client: Any,
    admin: Any,
    calls: Calls,
    replica: Any,
    replica_calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A slow primary attempt that fails after a probe found the primary healthy is old news: no second
    WARNING, and the next reads go to the primary."""
    for name in ("slow", "db", "db2", "db3"):
        create(admin, name, f"value-of-{name}")
    tries: Counter[str] = Counter()
    held, release = threading.Event(), threading.Event()
    failing = {"db"}

    def primary(operation: str, params: dict[str, Any]) -> None:
        secret_id = params.get("SecretId")
        tries[secret_id] += 1
        if secret_id == "slow" and tries[secret_id] == FAST_RETRY.attempts:  # its last attempt hangs, then fails
            held.set()
            assert release.wait(WATCHDOG), "the held attempt was never released"
            raise throttled(operation)
        if secret_id in failing or secret_id == "slow":
            raise throttled(operation)

    calls.add_fault(primary)
    cache = regional(client, replica, clock)
    with caplog.at_level(logging.INFO, logger="secretcache"), ThreadPoolExecutor(1) as pool:
        slow = pool.submit(cache.get_secret, "slow")  # its last attempt starts at t=0 and hangs
        assert held.wait(WATCHDOG)
        assert cache.get_secret("db").region == REPLICA  # the episode starts at t=0
        failing.clear()  # the primary recovers
        clock.advance(FAST_RETRY.failure_backoff)
        assert cache.get_secret("db2").region == PRIMARY  # the probe at t=1 finds it healthy: episode over
        release.set()  # the attempt started at t=0 fails now
        assert slow.result(WATCHDOG).region == REPLICA  # that fetch itself still fails over
        db3 = cache.get_secret("db3")
    assert (db3.secret_string, db3.region) == ("value-of-db3", PRIMARY)
    assert (tries["db2"], tries["db3"]) == (1, 1)
    assert replica_calls["GetSecretValue"] == 2  # db and slow only
    assert len(logged(caplog, "is failing")) == 1
    assert len(logged(caplog, "answers again")) == 1


# -- the deadline ------------------------------------------------------------------------------


@pytest.mark.parametrize(("hangs", "replica_starts"), [(2.5, []), (2.0, []), (1.5, [1.5, 1.5, 1.5])])
def test_no_replica_attempt_starts_after_the_deadline(
    hangs: float,
    replica_starts: list[float],
    client: Any,
    admin: Any,
    calls: Calls,
    replica: Any,
    replica_calls: Calls,
    clock: FakeClock,
) -> None:
    """A primary attempt hanging until the deadline (2 s) or past it leaves no replica attempt; a shorter one does.

    The attempt "hangs" by moving the cache's fake clock before it times out; the retry policy
    does not wait, so only the deadline and the attempt count end the retries.
    """
    create(admin, "db", "pw-1")
    policy = RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, deadline=2.0)
    started = clock.now
    starts: dict[str, list[float]] = {"primary": [], "replica": []}

    def hang(_op: str, _params: dict[str, Any]) -> None:
        starts["primary"].append(clock.now - started)
        clock.advance(hangs)
        raise ReadTimeoutError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com")

    calls.add_fault(hang)
    replica_calls.add_fault(lambda _op, _params: starts["replica"].append(clock.now - started))
    replica_calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock, retry=policy)
    with pytest.raises(SecretUnavailableError, match="Read timeout"):
        cache.get_secret_string("db")
    assert starts == {"primary": [0.0], "replica": replica_starts}


# -- the primary's own Region is no replica -----------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: SecretCache(replica_regions=[REPLICA, PRIMARY]), id="SecretCache"),
        pytest.param(lambda: AsyncSecretCache(replica_regions=[PRIMARY]), id="AsyncSecretCache"),
        pytest.param(SecretCache.from_env, id="SecretCache.from_env"),
        pytest.param(AsyncSecretCache.from_env, id="AsyncSecretCache.from_env"),
    ],
)
def test_the_default_regions_primary_is_no_replica(
    build: Any, aws: None, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no client, the Region the cache would build its client for is refused as a replica, at construction."""
    monkeypatch.setenv("SECRETCACHE_REPLICA_REGIONS", f"{REPLICA},{PRIMARY}")
    with pytest.raises(ValueError, match=f"names the primary Region '{PRIMARY}'"):
        build()


def test_a_primary_region_known_only_when_the_client_is_built_is_refused_before_any_call(
    aws: None, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no Region is configured until the first read, the read that builds the client refuses it,
    as an InvalidSecretRequestError (a ValueError), before any call; and so does every later one."""
    create(admin, "db", "pw-1")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    cache = SecretCache(replica_regions=[PRIMARY], retry=FAST_RETRY)  # the primary's Region is not known yet
    monkeypatch.setenv("AWS_DEFAULT_REGION", PRIMARY)
    for secret_id in ("db", "db", "other"):
        with pytest.raises(InvalidSecretRequestError, match=f"names the primary Region '{PRIMARY}'") as info:
            cache.get_secret_string(secret_id)
        assert isinstance(info.value, ValueError)
    assert cache.stats().api_calls == {}
