"""Replica Regions, the contract at its edges: which failures count, the deadline, and the primary's Region.

The fixtures and helpers are those of ``tests/test_regions.py`` (``conftest.py`` and
``tests/regions.py``): faults are injected on the primary Region's client only, the cache runs on
a fake clock, and tests assert counts and log records, never timings.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import FAST_RETRY, Calls, FakeClock
from tests.regions import PRIMARY, REPLICA, create, logged, regional

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
