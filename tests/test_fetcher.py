"""The fetcher: error classification and mapping, retry waits, credentials, and flights."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    UnknownServiceError,
)

from secretcache import (
    InvalidSecretRequestError,
    RetryPolicy,
    SecretAccessDeniedError,
    SecretCache,
    SecretUnavailableError,
)
from secretcache._entry import Entry, Failure, Flight
from secretcache._fetcher import Fetcher, is_transient, map_error
from secretcache._stats import Counters
from tests.conftest import REGION, Calls, FakeClock, wait_until
from tests.test_cache import make_cache


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("ThrottlingException", 400), True),
        (client_error("TooManyRequestsException", 429), True),
        (client_error("RequestTimeout", 408), True),
        (client_error("Whatever", 503), True),
        (client_error("ResourceNotFoundException", 400), False),
        (client_error("AccessDeniedException", 400), False),
        (EndpointConnectionError(endpoint_url="u"), True),
        (ConnectTimeoutError(endpoint_url="u"), True),
        (ReadTimeoutError(endpoint_url="u"), True),
        (NoCredentialsError(), False),
        (ValueError("x"), False),
    ],
)
def test_transient_classification(error: Exception, transient: bool) -> None:
    """Throttling, 5xx, timeouts and connection errors are transient; definite answers are not."""
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("error", "mapped", "words"),
    [
        (NoCredentialsError(), SecretAccessDeniedError, "no usable AWS credentials"),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), SecretAccessDeniedError, "creden"),
        (CredentialRetrievalError(provider="sso", error_msg="expired"), SecretAccessDeniedError, "credentials"),
        (NoRegionError(), InvalidSecretRequestError, "AWS_REGION"),
        (ParamValidationError(report="bad VersionId"), InvalidSecretRequestError, "refused by botocore"),
        (ReadTimeoutError(endpoint_url="u"), SecretUnavailableError, "retries exhausted"),
        (UnknownServiceError(service_name="x", known_service_names="y"), SecretUnavailableError, "UnknownService"),
    ],
)
def test_botocore_errors_map_to_typed_errors(error: Exception, mapped: type, words: str) -> None:
    """Each botocore failure becomes the matching typed error naming the secret."""
    result = map_error(error, "GetSecretValue", "db")
    assert type(result) is mapped
    assert words in str(result)
    assert "'db'" in str(result)
    assert result.secret_id == "db"


def test_missing_credentials_are_access_denied(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client with no credentials anywhere raises SecretAccessDeniedError, without retrying."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = boto3.client("secretsmanager", region_name=REGION)
    calls = Calls(client)
    with pytest.raises(SecretAccessDeniedError, match="credentials") as info:
        SecretCache(client).get_secret_string("db")
    assert isinstance(info.value.__cause__, NoCredentialsError)
    assert calls["GetSecretValue"] == 1


def test_retry_waits_are_full_jitter_within_policy(client: Any, calls: Calls) -> None:
    """Attempt n waits a random time in [0, min(max_delay, initial_delay * 2**(n-1))]."""
    calls.fail_with("ThrottlingException")
    waits: list[float] = []
    policy = RetryPolicy(attempts=6, initial_delay=0.5, max_delay=3.0, deadline=1000.0)
    fetcher = Fetcher(client, policy, Counters(), sleep=waits.append)
    for _ in range(20):
        with pytest.raises(SecretUnavailableError):
            fetcher.get_secret_value("db", None, None)
    assert len(waits) == 20 * 5
    bounds = [0.5, 1.0, 2.0, 3.0, 3.0]
    for index, wait in enumerate(waits):
        assert 0.0 <= wait <= bounds[index % 5]
    assert len(set(waits)) > 50  # random, not fixed
    assert calls["GetSecretValue"] == 20 * 6


def test_waiters_of_a_flight_see_an_unexpected_error(client: Any, calls: Calls, clock: FakeClock) -> None:
    """A non-botocore failure reaches every reader that was waiting on the fetch."""
    gate = threading.Event()

    def fail_after_gate(_op: str, _params: dict[str, Any]) -> None:
        gate.wait(20)
        raise RuntimeError("handler bug")

    calls.add_fault(fail_after_gate)
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(cache.get_secret_string, "db") for _ in range(4)]
        wait_until(lambda: cache.stats().misses == 4)
        gate.set()
        for future in futures:
            with pytest.raises(RuntimeError, match="handler bug"):
                future.result(timeout=20)
    assert calls["GetSecretValue"] == 1


def test_interrupted_fetch_reaches_owner_as_is_and_waiters_typed(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """KeyboardInterrupt stays on the fetching thread; waiters get SecretUnavailableError; nothing is kept."""
    admin.create_secret(Name="db", SecretString="pw")
    gate = threading.Event()
    first = [True]

    def interrupt_first(_op: str, _params: dict[str, Any]) -> None:
        if first[0]:
            first[0] = False
            gate.wait(20)
            raise KeyboardInterrupt

    calls.add_fault(interrupt_first)
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(cache.get_secret_string, "db") for _ in range(4)]
        wait_until(lambda: cache.stats().misses == 4)
        gate.set()
        errors = [type(future.exception(timeout=20)).__name__ for future in futures]
    assert sorted(errors) == ["KeyboardInterrupt"] + ["SecretUnavailableError"] * 3
    assert cache.get_secret_string("db") == "pw"


def test_flight_and_entry_reprs_hold_no_value() -> None:
    """Internal objects describe state, never the value."""
    entry = Entry(None, failure=Failure(SecretUnavailableError("down", secret_id="db"), retry_at=0.0, count=2))
    assert "SecretUnavailableError" in repr(entry)
    assert "failures=2" in repr(entry)
    flight = Flight()
    flight.finish(entry)
    assert flight.wait("db") is entry
