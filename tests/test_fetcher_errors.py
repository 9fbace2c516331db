"""The fetcher's errors: which are transient (botocore's own lists included), and how each maps to a typed error.

botocore's standard retry lists are read at test time, so a botocore release that adds a code
fails here until it is classified.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
    UnknownServiceError,
)
from botocore.retries import standard

from secretcache import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCache,
    SecretUnavailableError,
)
from secretcache._error_map import is_transient, map_error
from secretcache._fetcher import Fetcher
from secretcache._stats import Counters
from tests.conftest import FAST_RETRY, REGION, Calls, FakeClock, quiescent
from tests.fetcher import client_error
from tests.leaks import assert_value_absent
from tests.test_cache import make_cache


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
    assert fetcher.fetch_value("db", None, None).secret_string == "pw"
    assert calls["GetSecretValue"] == 3


@pytest.mark.parametrize(
    ("error", "mapped", "words"),
    [
        (NoCredentialsError(), SecretAccessDeniedError, "no usable AWS credentials"),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), SecretAccessDeniedError, "creden"),
        (CredentialRetrievalError(provider="sso", error_msg="expired"), SecretAccessDeniedError, "credentials"),
        (SSOTokenLoadError(error_msg="no token"), SecretAccessDeniedError, "no usable AWS credentials"),
        (UnauthorizedSSOTokenError(), SecretAccessDeniedError, "no usable AWS credentials"),
        (
            TokenRetrievalError(provider="sso", error_msg="expired"),
            SecretAccessDeniedError,
            "no usable AWS credentials",
        ),
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


@pytest.mark.parametrize(
    ("provider", "given"),
    [
        ("credential_process = {missing}", False),  # run while the cache builds its client
        ("role_arn = arn:aws:iam::123456789012:role/r\nweb_identity_token_file = {missing}", False),  # at the call
        ("role_arn = arn:aws:iam::123456789012:role/r\nweb_identity_token_file = {missing}", True),
    ],
    ids=["credential-process", "web-identity-token-file", "web-identity-given-client"],
)
def test_a_credential_provider_that_cannot_read_its_file_is_access_denied(
    aws: None,
    aws_files: Callable[[str, str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    given: bool,
) -> None:
    """A credential_process program or web identity token file that does not exist (botocore lets
    the provider's ``FileNotFoundError`` through): ``SecretAccessDeniedError``, no credentials, as
    for every other credential failure; never the bare ``OSError``, and no retry."""
    missing = tmp_path / "not-there"
    aws_files(f"[default]\nregion = {REGION}\n{provider.format(missing=missing)}\n", "")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = boto3.client("secretsmanager", region_name=REGION) if given else None
    cache = SecretCache(client, retry=FAST_RETRY)
    for _ in range(2):  # the second read gets the remembered error
        with pytest.raises(SecretAccessDeniedError, match="no usable AWS credentials") as info:
            cache.get_secret_string("db")
        assert str(missing) in str(info.value)
    assert cache.stats().api_calls.get("GetSecretValue", 0) <= 1
    batched = SecretCache(boto3.client("secretsmanager", region_name=REGION) if given else None, retry=FAST_RETRY)
    assert type(batched.prefetch(["db"])["db"]) is SecretAccessDeniedError  # the batch, then a single read


@pytest.mark.parametrize("replica", [False, True], ids=["own-client", "replica-client"])
def test_a_credential_process_printing_broken_json_is_access_denied_holding_none_of_it(
    aws: None, aws_files: Callable[[str, str], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replica: bool
) -> None:
    """botocore's ``JSONDecodeError`` keeps all the process printed (``doc``, keys included): the
    cache's own client, or a replica's, is refused as having no usable credentials, keeping none of it."""
    printed = '{"Version": 1, "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "TOPSECRET-KEY-7f3a'
    process = tmp_path / "credential-process.sh"
    process.write_text(f"#!/bin/sh\necho '{printed}'\n")
    process.chmod(0o755)
    aws_files(f"[default]\nregion = {REGION}\ncredential_process = {process}\n", "")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    if replica:  # the primary (with keys of its own) is failing: the replica's client is built
        given = boto3.client("secretsmanager", region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b")

        def failing(**_: Any) -> None:
            raise client_error("ServiceUnavailable", status=503)

        given.meta.events.register("before-call.secretsmanager.GetSecretValue", failing)
        cache = SecretCache(given, replica_regions=["eu-west-1"], retry=FAST_RETRY)
        with pytest.raises(SecretUnavailableError) as info:  # the primary's error stands
            cache.get_secret_string("db")
    else:
        with pytest.raises(SecretAccessDeniedError, match="credential_process printed no valid JSON") as info:
            SecretCache(retry=FAST_RETRY).get_secret_string("db")
    assert_value_absent(info.value, "TOPSECRET-KEY-7f3a")
