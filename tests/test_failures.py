"""Retries, typed errors, remembered failures with backoff, and stale values through outages."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from secretcache import (
    InvalidSecretRequestError,
    RetryPolicy,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from tests.conftest import FAST_RETRY, Calls, FakeClock, quiescent
from tests.test_cache import make_cache, rotate, warm_cache

# Failure backoff: 1 s after the first failure, doubling to at most 8 s.
BACKOFF = RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, failure_backoff=1.0, max_failure_backoff=8.0)


@pytest.mark.parametrize(
    ("code", "status", "error_type"),
    [
        ("ResourceNotFoundException", 400, SecretNotFoundError),
        ("AccessDeniedException", 400, SecretAccessDeniedError),
        ("DecryptionFailure", 400, SecretDecryptionError),
        ("InvalidRequestException", 400, InvalidSecretRequestError),
        ("InvalidParameterException", 400, InvalidSecretRequestError),
        ("SomethingNew", 400, SecretUnavailableError),
    ],
)
def test_permanent_errors_raise_at_once_typed(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, code: str, status: int, error_type: type[Exception]
) -> None:
    """Definite errors are not retried and surface as their typed error with the cause chained."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.fail_with(code, status)
    cache = make_cache(client, clock)
    with pytest.raises(error_type) as info:
        cache.get_secret_string("db")
    assert isinstance(info.value.__cause__, ClientError)
    assert code in str(info.value)
    assert "'db'" in str(info.value)
    assert calls["GetSecretValue"] == 1
    assert cache.stats().errors == 1


def test_deleted_secret_is_an_invalid_request(client: Any, admin: Any, clock: FakeClock) -> None:
    """Reading a secret scheduled for deletion raises InvalidSecretRequestError (real moto answer)."""
    admin.create_secret(Name="db", SecretString="pw")
    admin.delete_secret(SecretId="db")
    with pytest.raises(InvalidSecretRequestError, match="deleted"):
        make_cache(client, clock).get_secret_string("db")


def test_remembered_error_backs_off_growing_and_capped(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A hot loop on a missing secret calls the API once per backoff, which doubles up to a cap."""
    cache = make_cache(client, clock, retry=BACKOFF)
    call_times = []
    for _ in range(320):  # 40 seconds of reads, every 0.125 s (exact in binary)
        before = calls["GetSecretValue"]
        with pytest.raises(SecretNotFoundError) as info:
            cache.get_secret_string("missing")
        assert info.value.__cause__ is not None
        if calls["GetSecretValue"] > before:
            call_times.append(clock.now)
        clock.advance(0.125)
    gaps = [b - a for a, b in itertools.pairwise(call_times)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0]
    assert set(gaps[4:]) == {8.0}
    assert cache.stats().errors == len(call_times)


def test_remembered_error_is_a_fresh_exception_each_time(client: Any, clock: FakeClock) -> None:
    """Each raise of a remembered error is a new object, so tracebacks do not pile up."""
    cache = make_cache(client, clock, retry=BACKOFF)
    raised = []
    for _ in range(3):
        with pytest.raises(SecretNotFoundError) as info:
            cache.get_secret_string("missing")
        raised.append(info.value)
    assert len({id(error) for error in raised}) == 3
    assert raised[1].__cause__ is raised[0].__cause__


@pytest.mark.parametrize(
    "fault",
    [
        ("ThrottlingException", 400),
        ("InternalServiceError", 500),
        ("ServiceUnavailable", 503),
        ("UnknownServerFault", 502),
    ],
)
def test_transient_errors_are_retried(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, fault: tuple[str, int]
) -> None:
    """Throttling and 5xx are retried and the read succeeds once the service answers."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.fail_with(*fault, times=2)
    cache = make_cache(client, clock)
    assert cache.get_secret_string("db") == "pw"
    assert calls["GetSecretValue"] == 3
    assert cache.stats().api_calls["GetSecretValue"] == 3


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://secretsmanager.invalid"),
        ReadTimeoutError(endpoint_url="https://secretsmanager.invalid"),
    ],
)
def test_connection_errors_exhaust_into_unavailable(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, error: Exception
) -> None:
    """Connection errors and timeouts are retried, then raise SecretUnavailableError, not RetryError."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.raise_error(error)
    cache = make_cache(client, clock)
    with pytest.raises(SecretUnavailableError, match="retries exhausted") as info:
        cache.get_secret_string("db")
    assert info.value.__cause__ is error
    assert calls["GetSecretValue"] == FAST_RETRY.attempts


def test_deadline_stops_retries_early(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """No retry starts past the deadline, whatever the attempt budget."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.fail_with("ThrottlingException")
    cache = make_cache(client, clock, retry=RetryPolicy(attempts=50, initial_delay=0.0, max_delay=0.0, deadline=0.0))
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")
    assert calls["GetSecretValue"] == 1


class TestStaleServing:
    def test_outage_serves_last_good_value_until_max_stale(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Through an outage the old value is served (counted, logged once) until max_stale runs out."""
        admin.create_secret(Name="db", SecretString="pw-1")
        cache = make_cache(client, clock, ttl=60, max_stale=30, retry=BACKOFF)
        assert cache.get_secret_string("db") == "pw-1"
        calls.fail_with("ServiceUnavailable", 503)
        clock.advance(61)
        with caplog.at_level(logging.WARNING, logger="secretcache"):
            served = []
            for _ in range(280):  # 28 s of reads, still within max_stale
                served.append(cache.get_secret_string("db"))
                quiescent(cache)  # the retries of a fetch go on behind the reader: let them end
                clock.advance(0.1)
        assert set(served) == {"pw-1"}
        stats = cache.stats()
        assert stats.stale_served == 280
        # Fetches at 0, 1, 3, 7, 15 and 23 s (backoff 1, 2, 4, 8, 8 s), 3 attempts each.
        assert stats.errors == 6
        assert calls["GetSecretValue"] == 1 + 6 * 3
        assert [r.message.count("serving the cached value") for r in caplog.records] == [1]
        clock.advance(3)  # past ttl + max_stale
        with pytest.raises(SecretUnavailableError) as info:
            cache.get_secret_string("db")
        assert isinstance(info.value.__cause__, ClientError)

    def test_recovery_after_outage(self, client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
        """Once the service answers again, the next fetch after the backoff installs the new value."""
        cache = warm_cache(client, admin, clock, retry=BACKOFF)
        remove = calls.fail_with("ThrottlingException")
        clock.advance(61)
        assert cache.get_secret_string("db") == "pw-1"
        quiescent(cache)
        rotate(admin, "db", "pw-2")
        remove()
        assert cache.get_secret_string("db") == "pw-1"  # still backing off: no call
        clock.advance(1.0)
        assert cache.get_secret_string("db") == "pw-2"
        clock.advance(30)
        assert cache.get_secret_string("db") == "pw-2"  # fresh again for a full TTL

    def test_forced_refresh_during_outage_serves_stale(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock
    ) -> None:
        """A forced refresh that fails transiently returns the cached value instead of raising."""
        cache = warm_cache(client, admin, clock)
        calls.fail_with("ThrottlingException")
        assert cache.refresh("db").secret_string == "pw-1"  # still within its TTL: not stale
        clock.advance(61)
        assert cache.refresh("db").secret_string == "pw-1"  # past its TTL: stale
        stats = cache.stats()
        assert (stats.errors, stats.stale_served) == (2, 1)

    def test_definite_error_stops_serving_the_old_value(
        self, client: Any, admin: Any, calls: Calls, clock: FakeClock
    ) -> None:
        """Access revoked or secret deleted: the cached value is no longer served."""
        cache = warm_cache(client, admin, clock)
        calls.fail_with("AccessDeniedException")
        clock.advance(61)
        with pytest.raises(SecretAccessDeniedError):
            cache.get_secret_string("db")
        with pytest.raises(SecretAccessDeniedError):
            cache.get_secret_string("db")
        assert cache.stats().stale_served == 0

    def test_max_stale_zero_never_serves_stale(self, client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
        """With max_stale=0 an expired value is never served."""
        cache = warm_cache(client, admin, clock, max_stale=0)
        calls.fail_with("ThrottlingException")
        clock.advance(61)
        with pytest.raises(SecretUnavailableError):
            cache.get_secret_string("db")


def test_unexpected_exception_propagates_and_is_not_cached(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A non-botocore failure propagates unchanged, is not remembered, and the next read retries."""
    admin.create_secret(Name="db", SecretString="pw")
    remove = calls.raise_error(RuntimeError("bug in a botocore event handler"))
    cache = make_cache(client, clock)
    with pytest.raises(RuntimeError, match="bug in"):
        cache.get_secret_string("db")
    remove()
    assert cache.get_secret_string("db") == "pw"
    assert calls["GetSecretValue"] == 2


def test_no_region_is_a_clear_error(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache that must build its client without a region says how to fix it."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    from secretcache import SecretCache

    with pytest.raises(SecretCacheError, match="AWS_REGION"):
        SecretCache().get_secret_string("db")


def test_remembered_errors_leave_no_cyclic_garbage(client: Any, clock: FakeClock) -> None:
    """Raising a remembered error many times leaves nothing for the cycle collector (no GC pauses)."""
    import gc

    cache = make_cache(client, clock, retry=BACKOFF)
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("missing")
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            try:  # noqa: SIM105 - suppress() would keep the exception alive for a moment
                cache.get_secret_string("missing")
            except SecretNotFoundError:
                pass
        assert gc.collect() < 50  # was 15 objects per raise (3,000 here) before the fix
    finally:
        gc.enable()
