"""The fetcher: error classification and mapping, retry waits, credentials, and flights."""

from __future__ import annotations

import string
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import botocore.session
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
from botocore.retries import standard

from secretcache import (
    InvalidSecretRequestError,
    RetryPolicy,
    SecretAccessDeniedError,
    SecretCache,
    SecretCacheError,
    SecretDecryptionError,
    SecretFormatError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._entry import Entry, Failure
from secretcache._fetcher import BatchFailedError, BatchRefusedError, Fetcher, is_transient, map_error
from secretcache._stats import Counters
from secretcache._store import Flight
from tests.conftest import FAST_RETRY, REGION, Calls, FakeClock, quiescent, wait_until
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
        (client_error("InternalServiceError", 400), True),
        (client_error("InternalServiceError", 500), True),
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


def _botocore_standard_codes() -> list[str]:
    """The error codes botocore's "standard" retry mode retries, read from botocore itself."""
    codes = {
        *standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES,
        *standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES,
    }
    model = botocore.session.get_session().get_service_model("secretsmanager")
    for operation in ("GetSecretValue", "BatchGetSecretValue"):  # errors the model marks retryable
        for shape in model.operation_model(operation).error_shapes:
            if shape.metadata.get("retryable") is not None:
                codes.add(shape.metadata.get("error", {}).get("code") or shape.name)
    return sorted(codes)


def _botocore_standard_statuses() -> list[int]:
    """The HTTP statuses botocore's "standard" retry mode retries, read from botocore itself."""
    return sorted(
        {
            *standard.TransientRetryableChecker._TRANSIENT_STATUS_CODES,
            *standard.ThrottlingStatusCodeChecker._THROTTLING_STATUS_CODES,
            429,
        }
    )


def _botocore_exception(cls: type[Exception]) -> Exception:
    fields = {name: "x" for _, name, _, _ in string.Formatter().parse(getattr(cls, "fmt", "")) if name}
    return cls(**fields)


@pytest.mark.parametrize("code", _botocore_standard_codes())
def test_botocore_standard_error_codes_are_transient(code: str) -> None:
    """Every error code botocore's standard retry mode retries is retried by the cache too."""
    assert is_transient(client_error(code, 400))


@pytest.mark.parametrize("status", _botocore_standard_statuses())
@pytest.mark.parametrize("code", ["", "Unknown", "SomeProxyError"])
def test_botocore_standard_statuses_are_transient(status: int, code: str) -> None:
    """Every HTTP status botocore's standard retry mode retries (429 included) is transient, whatever the code."""
    assert is_transient(client_error(code, status))


@pytest.mark.parametrize("cls", standard.TransientRetryableChecker._TRANSIENT_EXCEPTION_CLS)
def test_botocore_standard_exceptions_are_transient(cls: type[Exception]) -> None:
    """Every exception class botocore's standard retry mode retries is transient."""
    assert is_transient(_botocore_exception(cls))


@pytest.mark.parametrize(
    "code",
    [
        "ResourceNotFoundException",
        "AccessDeniedException",
        "DecryptionFailure",
        "InvalidRequestException",
        "InvalidParameterException",
        "ValidationException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    ],
)
def test_definite_answers_are_not_transient(code: str) -> None:
    """A definite 4xx answer is never retried."""
    assert not is_transient(client_error(code, 400))


@pytest.mark.parametrize("status", [400, 500])
def test_internal_service_error_is_retried_whatever_its_status(
    status: int, client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Secrets Manager's InternalServiceError is retried by its code, then the stale value is served."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock)
    assert cache.get_secret_string("db") == "pw"
    calls.fail_with("InternalServiceError", status)
    clock.advance(61)  # past the TTL
    assert cache.get_secret_string("db") == "pw"  # at the first failed attempt
    quiescent(cache)  # the retries go on behind the reader
    assert calls["GetSecretValue"] == 1 + FAST_RETRY.attempts
    stats = cache.stats()
    assert (stats.stale_served, stats.api_errors["InternalServiceError"]) == (1, FAST_RETRY.attempts)


def test_http_429_from_a_proxy_is_retried(client: Any, admin: Any, calls: Calls) -> None:
    """A 429 with an error code no AWS service uses is retried until the read succeeds."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.fail_with("TooManyRequests", 429, times=2)
    fetcher = Fetcher(client, FAST_RETRY, Counters())
    assert fetcher.get_secret_value("db", None, None).secret_string == "pw"
    assert calls["GetSecretValue"] == 3


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
    flight = Flight("db", entry, None, "running", "foreground")
    assert "down" not in repr(flight)


MARKER = 918273645  # a "value" no message, argument or attribute may contain
WRONG_TYPES = [  # field, wrong value, the type the message names
    ("SecretString", MARKER, "int"),
    ("SecretString", [f"list-{MARKER}"], "list"),
    ("SecretBinary", [f"list-{MARKER}"], "list"),
    ("VersionStages", f"AWSCURRENT-{MARKER}", "str"),
    ("VersionStages", ["AWSCURRENT", MARKER], "int"),
]


def corrupt(client: Any, operation: str, field: str, wrong: object, name: str = "db") -> None:
    """Make ``client`` return ``wrong`` in ``field`` of secret ``name``, as a misbehaving hook would."""

    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        for item in [parsed, *parsed.get("SecretValues", [])]:
            if item.get("Name") == name:
                item[field] = wrong

    client.meta.events.register(f"after-call.secretsmanager.{operation}", after_call)


def chain_text(error: BaseException) -> str:
    """Messages, reprs, args and attributes of ``error`` and everything chained to it."""
    parts: list[str] = []
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        pending += [exc.__cause__, exc.__context__]
    return "\n".join(parts)


def create_db(admin: Any, field: str) -> None:
    if field == "SecretBinary":
        admin.create_secret(Name="db", SecretBinary=b"real-binary-value")
    else:
        admin.create_secret(Name="db", SecretString="real-string-value")


def read(cache: SecretCache, field: str) -> object:
    return cache.get_secret_binary("db") if field == "SecretBinary" else cache.get_secret_string("db")


@pytest.mark.parametrize(("field", "wrong", "named"), WRONG_TYPES)
def test_wrong_value_type_is_a_format_error_without_the_value(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, field: str, wrong: object, named: str
) -> None:
    """A response field of the wrong type raises SecretFormatError naming field and type, never the value, unretried."""
    create_db(admin, field)
    corrupt(client, "GetSecretValue", field, wrong)
    with pytest.raises(SecretFormatError) as info:
        read(make_cache(client, clock), field)
    error = info.value
    assert isinstance(error, SecretCacheError)
    assert error.secret_id == "db"
    assert field in str(error)
    assert f" {named}," in str(error)
    text = chain_text(error)
    assert str(MARKER) not in text
    assert "real-" not in text
    assert error.__cause__ is None
    assert calls["GetSecretValue"] == 1


@pytest.mark.parametrize(("field", "wrong", "named"), WRONG_TYPES)
@pytest.mark.parametrize("by_arn", [False, True])
def test_wrong_value_type_in_a_batch_fails_that_secret_only(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, field: str, wrong: object, named: str, by_arn: bool
) -> None:
    """A batch item of the wrong type fails its own secret with SecretFormatError, never the value; others load."""
    create_db(admin, field)
    admin.create_secret(Name="other", SecretString="fine")
    db = admin.describe_secret(SecretId="db")["ARN"] if by_arn else "db"
    corrupt(client, "BatchGetSecretValue", field, wrong)
    cache = make_cache(client, clock)
    failures = cache.prefetch([db, "other"])
    assert set(failures) == {db}
    error = failures[db]
    assert isinstance(error, SecretFormatError)
    assert error.secret_id == db
    assert field in str(error)
    assert f" {named}," in str(error)
    assert str(MARKER) not in chain_text(error)
    assert "real-" not in chain_text(error)
    with pytest.raises(SecretFormatError, match=field) as info:  # the failure is remembered for readers
        cache.get_secret_binary(db) if field == "SecretBinary" else cache.get_secret_string(db)
    assert str(MARKER) not in chain_text(info.value)
    assert cache.get_secret_string("other") == "fine"
    assert calls["BatchGetSecretValue"] == 1
    assert calls["GetSecretValue"] == 0


def batch_fetcher(client: Any) -> Fetcher:
    return Fetcher(client, FAST_RETRY, Counters())


def test_batch_bug_is_not_mistaken_for_a_refusal(client: Any, admin: Any, calls: Calls) -> None:
    """An AttributeError raised during the batch call (a bug) propagates instead of becoming BatchRefusedError."""
    admin.create_secret(Name="db", SecretString="pw")
    calls.raise_error(AttributeError("hook bug"))
    with pytest.raises(AttributeError, match="hook bug"):
        batch_fetcher(client).batch_get_secret_values(["db"])


class _WithoutBatch:
    """A client as built by a botocore that predates BatchGetSecretValue."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name == "batch_get_secret_value":
            raise AttributeError(name)
        return getattr(self._client, name)


def test_client_without_batch_operation_is_refused_before_any_call(client: Any, calls: Calls) -> None:
    """A client that does not know BatchGetSecretValue is refused up front, without a call."""
    counters = Counters()
    with pytest.raises(BatchRefusedError, match="BatchGetSecretValue"):
        Fetcher(_WithoutBatch(client), FAST_RETRY, counters).batch_get_secret_values(["db"])
    assert calls.total == 0


@pytest.mark.parametrize("code", ["AccessDeniedException", "InvalidRequestException", "InvalidParameterException"])
def test_batch_refusal_codes_raise_batch_refused(client: Any, calls: Calls, code: str) -> None:
    """The batch operation denied or invalid as such is a refusal, so the caller falls back to single reads."""
    calls.fail_with(code)
    with pytest.raises(BatchRefusedError):
        batch_fetcher(client).batch_get_secret_values(["db", "api"])
    assert calls["BatchGetSecretValue"] == 1


def test_batch_without_region_is_refused(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No region configured refuses the batch (single reads then report it per secret)."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(BatchRefusedError, match="region"):
        Fetcher(None, FAST_RETRY, Counters()).batch_get_secret_values(["db"])


@pytest.mark.parametrize(
    ("code", "status", "mapped", "attempts"),
    [
        ("ThrottlingException", 400, SecretUnavailableError, FAST_RETRY.attempts),
        ("TooManyRequests", 429, SecretUnavailableError, FAST_RETRY.attempts),
        ("InternalServiceError", 500, SecretUnavailableError, FAST_RETRY.attempts),
        ("ResourceNotFoundException", 400, SecretNotFoundError, 1),
        ("DecryptionFailure", 400, SecretDecryptionError, 1),
    ],
)
def test_batch_wide_failure_gives_each_secret_its_own_error(
    client: Any, admin: Any, calls: Calls, code: str, status: int, mapped: type, attempts: int
) -> None:
    """A batch that fails as a whole raises BatchFailedError holding one typed error per id, each naming its id."""
    for name in ("db", "api", "cert"):
        admin.create_secret(Name=name, SecretString=f"value-of-{name}")
    calls.fail_with(code, status)
    ids = ["db", "api", "cert"]
    with pytest.raises(BatchFailedError) as info:
        batch_fetcher(client).batch_get_secret_values(ids)
    failed = info.value
    assert list(failed.errors) == ids
    for secret_id, error in failed.errors.items():
        assert type(error) is mapped
        assert error.secret_id == secret_id
        assert repr(secret_id) in str(error)
        assert isinstance(error.__cause__, ClientError)
        assert error.__cause__.response["Error"]["Code"] == code
    assert "value-of-" not in chain_text(failed)
    assert calls["BatchGetSecretValue"] == attempts


def test_batch_connection_failure_gives_each_secret_its_own_error(client: Any, calls: Calls) -> None:
    """A batch call that cannot connect raises BatchFailedError with SecretUnavailableError per id, cause chained."""
    cause = EndpointConnectionError(endpoint_url="https://secretsmanager.invalid")
    calls.raise_error(cause)
    with pytest.raises(BatchFailedError) as info:
        batch_fetcher(client).batch_get_secret_values(["db", "api"])
    assert {secret_id: type(error) for secret_id, error in info.value.errors.items()} == {
        "db": SecretUnavailableError,
        "api": SecretUnavailableError,
    }
    assert all(error.__cause__ is cause for error in info.value.errors.values())
    assert calls["BatchGetSecretValue"] == FAST_RETRY.attempts
