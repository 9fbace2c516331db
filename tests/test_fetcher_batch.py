"""The fetcher's batch reads: refusals told apart from bugs, and failures given per secret.

Also a client or a Region without the batch operation, refused before any call.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
)

from secretcache import (
    SecretDecryptionError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._batch_answer import BatchFailedError, BatchRefusedError, _reason
from secretcache._fetcher import Fetcher
from secretcache._stats import Counters
from tests.conftest import FAST_RETRY, Calls
from tests.fetcher import chain_text


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


def test_a_refusal_by_botocore_gives_its_type_as_the_reason_never_its_message() -> None:
    """A ``ParamValidationError`` quotes the value it refused (an id): the logged reason is its type."""
    refusal = ParamValidationError(report="Invalid length for parameter SecretIdList[0], value: prod/payments/stripe")
    assert _reason(refusal) == "ParamValidationError"
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "BatchGetSecretValue")
    assert _reason(denied) == "AccessDeniedException: not allowed"
