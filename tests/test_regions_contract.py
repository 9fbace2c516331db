"""Replica Regions, the contract at its edges: which failures count, the deadline, and the primary's Region.

The fixtures and helpers are those of ``tests/test_regions.py`` (``conftest.py`` and
``tests/regions.py``): faults are injected on the primary Region's client only, the cache runs on
a fake clock, and tests assert counts and log records, never timings.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from secretcache import RetryPolicy, SecretUnavailableError
from tests.conftest import FAST_RETRY, Calls, FakeClock
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
