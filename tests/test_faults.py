"""Faults over the wire: boto3 talks real HTTP to moto's server through a fault-injecting proxy."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from secretcache import RetryPolicy, SecretAccessDeniedError, SecretCache, SecretCacheError, SecretUnavailableError
from tests.conftest import REGION, WATCHDOG, FakeClock
from tests.faultproxy import INTERNAL, THROTTLE, UNAVAILABLE, FaultProxy
from tests.leaks import assert_value_absent, leaks_in_records
from tests.watchdog import within_watchdog

READ_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1.0
RETRY = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05, deadline=5.0, failure_backoff=1.0)


@pytest.fixture(params=[WATCHDOG], ids=["timeout-watchdog"])
def wire(proxy: FaultProxy, moto_server: str, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """A client through the proxy (retries off) and an admin client straight to moto.

    The client's read timeout is the watchdog, so a slow answer on a busy machine is never taken
    for a stall; the stall test asks for ``READ_TIMEOUT`` (``indirect`` parametrisation).
    """
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=CONNECT_TIMEOUT, read_timeout=request.param)
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=proxy.url, config=config)
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    admin.create_secret(Name="db", SecretString="pw-1")
    return client, admin


@pytest.mark.parametrize("fault", [THROTTLE, INTERNAL, UNAVAILABLE], ids=["throttling", "500", "503"])
def test_transient_http_errors_are_retried(
    fault: tuple[int, str, str], proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock
) -> None:
    """A burst of throttling or 5xx answers is retried within the policy and the read succeeds."""
    client, _ = wire
    proxy.then(("status", fault), ("status", fault))
    cache = SecretCache(client, retry=RETRY, clock=clock)
    assert cache.get_secret_string("db") == "pw-1"
    assert (proxy.seen, proxy.forwarded) == (3, 1)


@pytest.mark.parametrize("status", [401, 403])
def test_proxy_refusal_in_html_is_access_denied_not_retried(
    status: int, proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock
) -> None:
    """A 401/403 HTML page (a WAF, a proxy, a VPC endpoint policy) is a refusal: one request, typed, remembered."""
    client, _ = wire
    proxy.then(("html", status))
    cache = SecretCache(client, retry=RETRY, clock=clock)
    with pytest.raises(SecretAccessDeniedError, match=f"{status}") as info:
        cache.get_secret_string("db")
    assert info.value.secret_id == "db"
    with pytest.raises(SecretAccessDeniedError):  # remembered for the failure backoff: no new request
        cache.get_secret_string("db")
    assert (proxy.seen, proxy.forwarded) == (1, 0)


@pytest.mark.parametrize(
    ("status", "kind"), [(403, SecretAccessDeniedError), (500, SecretUnavailableError), (502, SecretUnavailableError)]
)
def test_a_proxys_answer_holding_a_cut_value_is_not_quoted(
    status: int, kind: type[SecretCacheError], proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """An error status whose body is a success answer cut short (not JSON, so botocore makes the
    whole body its message) reaches no error and no log line: only its length is said."""
    client, _ = wire
    marker = "Zq8-PROXY-CUT-MARKER"
    answer = json.dumps({"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf", "Name": "db",
                         "SecretString": json.dumps({"password": marker})})  # fmt: skip
    cut = answer[: answer.index(marker) + len(marker)]
    proxy.always(("raw", (status, cut)))
    cache = SecretCache(client, retry=RETRY, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="secretcache"), pytest.raises(kind) as info:
        cache.get_secret_string("db")
    proxy.always(None)
    assert_value_absent(info.value, marker)
    assert leaks_in_records(caplog.records, marker) == []
    assert any("fetching secret 'db' failed" in record.getMessage() for record in caplog.records)
    cause = info.value.__cause__
    assert isinstance(cause, ClientError)
    shown = f"(an answer of {len(cut)} characters that is not an AWS error, not shown)"
    assert cause.response["Error"] == {"Code": str(status), "Message": shown}
    assert cause.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert str(status) in str(info.value)


def test_response_cut_mid_body_is_retried(proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock) -> None:
    """A response truncated mid-body is a transient failure: the retry gets the whole value."""
    client, _ = wire
    proxy.then(("cut", None))
    cache = SecretCache(client, retry=RETRY, clock=clock)
    assert cache.get_secret_string("db") == "pw-1"
    assert proxy.forwarded == 2


def test_slow_server_is_waited_for(proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock) -> None:
    """A slow answer within the read timeout is a success, with no retry."""
    client, _ = wire
    proxy.then(("slow", 0.3))
    assert SecretCache(client, retry=RETRY, clock=clock).get_secret_string("db") == "pw-1"
    assert (proxy.seen, proxy.forwarded) == (1, 1)


@pytest.mark.parametrize("wire", [READ_TIMEOUT], ids=[f"timeout-{READ_TIMEOUT:g}s"], indirect=True)
def test_stalled_reads_time_out_within_a_bound_from_the_settings(
    proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock
) -> None:
    """A server that never answers costs each attempt its read timeout, then a typed error.

    The stall lasts until the test ends: only the client's read timeout can end an attempt, so
    the read returning at all (under the watchdog) is the bound, whatever the machine's speed.
    """
    client, _ = wire
    endless = threading.Event()
    proxy.always(("stall", endless))
    cache = SecretCache(client, retry=RETRY, clock=clock)
    try:
        with pytest.raises(SecretUnavailableError) as info:
            within_watchdog(lambda: cache.get_secret_string("db"))
    finally:
        endless.set()
    assert isinstance(info.value.__cause__, ReadTimeoutError)
    assert proxy.seen == RETRY.attempts
    assert proxy.forwarded == 0


def test_total_outage_serves_stale_backs_off_and_recovers(
    proxy: FaultProxy, wire: tuple[Any, Any], clock: FakeClock
) -> None:
    """Connection refused: the cached value is served up to max_stale, attempts back off, the fix is picked up."""
    client, admin = wire
    cache = SecretCache(client, ttl=60, max_stale=120, ttl_jitter=0, refresh_ahead=None, retry=RETRY, clock=clock)
    assert cache.get_secret_string("db") == "pw-1"
    proxy.stop_listening()
    clock.advance(61)
    attempts_before = cache.stats().api_calls["GetSecretValue"]
    served = set()
    for _ in range(600):  # 60 s of reads every 0.1 s, all past the TTL
        served.add(cache.get_secret_string("db"))
        clock.advance(0.1)
    assert served == {"pw-1"}
    attempts = cache.stats().api_calls["GetSecretValue"] - attempts_before
    # Fetches back off 1, 2, 4, 8, 16, 32 s: 6 fetches of 3 attempts in 60 s, not one per read.
    assert attempts <= 7 * RETRY.attempts
    assert proxy.forwarded == 1  # nothing reached the server during the outage
    clock.advance(70)  # past ttl + max_stale
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")
    admin.put_secret_value(SecretId="db", SecretString="pw-2")
    proxy.listen()
    clock.advance(64)  # past the longest backoff
    assert cache.get_secret_string("db") == "pw-2"
