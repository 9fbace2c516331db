"""The only code that talks to Secrets Manager: client set-up, retries and error mapping."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import tenacity
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from botocore.parsers import ResponseParserError

from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretFormatError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._keys import DEFAULT_STAGE, aliases
from secretcache._logs import error_type
from secretcache._policy import RetryPolicy
from secretcache._stats import Counters
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import (
        BatchGetSecretValueResponseTypeDef,
        GetSecretValueResponseTypeDef,
        SecretValueEntryTypeDef,
    )

    from secretcache._observe import Fetch


class BatchRefusedError(Exception):
    """``BatchGetSecretValue`` itself is not allowed or not known; fetch one by one instead."""


class BatchFailedError(Exception):
    """A ``BatchGetSecretValue`` call failed as a whole, after retries where transient.

    Attributes:
        errors: For each requested secret id, its own typed error (naming that id), with the
            botocore error chained as ``__cause__``.
    """

    def __init__(self, message: str, errors: dict[str, SecretCacheError]) -> None:
        super().__init__(message)
        self.errors = errors

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.errors))


class MalformedResponseError(Exception):
    """A response without the fields every answer has: a truncated or garbled body. Retried."""


_REQUIRED = ("Name", "ARN", "VersionId")


def _check_fields(item: Any, operation: str) -> None:
    # botocore turns a body that is not valid JSON (say, cut off mid-way) into {"message": ...}
    # instead of raising, so a missing field is the sign of a broken response.
    if not isinstance(item, dict) or any(not isinstance(item.get(field), str) for field in _REQUIRED):
        raise MalformedResponseError(f"{operation} returned a response without Name, ARN and VersionId")


__all__ = [
    "BATCH_SIZE",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "BatchFailedError",
    "BatchRefusedError",
    "Fetcher",
    "build_client",
    "is_transient",
    "map_error",
]

BATCH_SIZE = 20
"""Most secret ids one ``BatchGetSecretValue`` call accepts."""

CONNECT_TIMEOUT = 2.0
"""Seconds a client built by the cache waits to open a connection."""
READ_TIMEOUT = 5.0
"""Seconds a client built by the cache waits for a response."""

_T = TypeVar("_T")

# Botocore's "standard" retry mode (botocore/retries/standard.py) keeps these lists in private
# class attributes, so they are copied here; tests/test_fetcher.py reads botocore's lists at test
# time and fails when a botocore update adds a code. Standard mode does not read _retry.json
# (legacy mode does), and Secrets Manager models no error shape as retryable.
_THROTTLING_CODES = frozenset(
    {  # ThrottledRetryableChecker._THROTTLED_ERROR_CODES
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        "LimitExceededException",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "Throttling",
        "ThrottledException",
        "ThrottlingException",
        "TooManyRequestsException",
        "TransactionInProgressException",
    }
)
_TRANSIENT_CODES = frozenset(
    # TransientRetryableChecker._TRANSIENT_ERROR_CODES
    {"PriorRequestNotComplete", "RequestTimeout", "RequestTimeoutException"}
)
# ThrottlingStatusCodeChecker._THROTTLING_STATUS_CODES; botocore's transient statuses
# (500, 502, 503, 504) are covered by treating every 5xx as transient.
_THROTTLING_STATUS = 429
_TRANSIENT_EXCEPTIONS = (
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
    ResponseParserError,
)
# What a call can fail with that map_error turns into a typed error.
_CALL_ERRORS = (BotoCoreError, ClientError, ResponseParserError, MalformedResponseError)
_PERMANENT_CODES: dict[str, type[SecretCacheError]] = {
    "ResourceNotFoundException": SecretNotFoundError,
    "AccessDeniedException": SecretAccessDeniedError,
    "AccessDenied": SecretAccessDeniedError,
    "UnrecognizedClientException": SecretAccessDeniedError,
    "InvalidSignatureException": SecretAccessDeniedError,
    "ExpiredTokenException": SecretAccessDeniedError,
    "DecryptionFailure": SecretDecryptionError,
    "InvalidRequestException": InvalidSecretRequestError,
    "InvalidParameterException": InvalidSecretRequestError,
    "ValidationException": InvalidSecretRequestError,
}


def build_client() -> SecretsManagerClient:
    """Build the ``secretsmanager`` client a cache uses when none is given.

    Botocore's retries are off (the cache's :class:`RetryPolicy` is the one policy) and
    connect/read timeouts are bounded. Region and credentials come from the usual boto3 chain.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="secretcache",
    )
    # A fresh Session per client: boto3's default session is not thread-safe.
    return boto3.session.Session().client("secretsmanager", config=config)


def _status(err: ClientError) -> int:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` is worth retrying: throttling, 429, 5xx, timeouts, connection errors.

    The error codes and statuses are those botocore's "standard" retry mode retries, plus
    every 5xx status; a 429 is transient whatever its error code.
    """
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = _status(err)
        return code in _THROTTLING_CODES or code in _TRANSIENT_CODES or status == _THROTTLING_STATUS or status >= 500
    return isinstance(err, (*_TRANSIENT_EXCEPTIONS, MalformedResponseError))


def map_error(err: Exception, operation: str, secret_id: str) -> SecretCacheError:
    """Translate a botocore failure into the matching typed secretcache error."""
    where = f"{operation} for secret {secret_id!r}"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = error.get("Code", "Unknown")
        detail = f"{where} failed: {code}: {error.get('Message', '')}".rstrip(": ")
        if is_transient(err):
            return SecretUnavailableError(f"{detail} (retries exhausted)", secret_id=secret_id)
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # An unknown code with 401/403 (a proxy, a WAF or a VPC endpoint policy answering in HTML,
        # which botocore reports with the status as the code) is a refusal, not an outage.
        fallback = SecretAccessDeniedError if status in (401, 403) else SecretUnavailableError
        return _PERMANENT_CODES.get(code, fallback)(detail, secret_id=secret_id)
    if isinstance(err, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return SecretAccessDeniedError(f"{where} failed: no usable AWS credentials: {err}", secret_id=secret_id)
    if isinstance(err, NoRegionError):
        return InvalidSecretRequestError(
            f"{where} failed: no AWS region is configured; set AWS_REGION or pass a client",
            secret_id=secret_id,
        )
    if isinstance(err, ParamValidationError):
        return InvalidSecretRequestError(f"{where} was refused by botocore: {err}", secret_id=secret_id)
    if isinstance(err, MalformedResponseError) or (isinstance(err, BotoCoreError) and is_transient(err)):
        return SecretUnavailableError(f"{where} failed: {err} (retries exhausted)", secret_id=secret_id)
    return SecretUnavailableError(f"{where} failed: {type(err).__name__}: {err}", secret_id=secret_id)


def _type_problem(response: Any) -> str | None:
    """What is wrong with the types of a response's value fields, naming types only, never values."""
    string = response.get("SecretString")
    if string is not None and not isinstance(string, str):
        return f"SecretString of type {type(string).__name__}, not str"
    binary = response.get("SecretBinary")
    if binary is not None and not isinstance(binary, (bytes, bytearray)):
        return f"SecretBinary of type {type(binary).__name__}, not bytes"
    stages = response.get("VersionStages", [])
    if not isinstance(stages, (list, tuple)):
        return f"VersionStages of type {type(stages).__name__}, not a list of str"
    wrong = sorted({type(stage).__name__ for stage in stages if not isinstance(stage, str)})
    if wrong:
        return f"VersionStages holding {', '.join(wrong)}, not only str"
    created = response.get("CreatedDate")
    if created is not None and not isinstance(created, datetime):
        return f"CreatedDate of type {type(created).__name__}, not datetime"
    return None


def _format_error(operation: str, secret_id: str, problem: str) -> SecretFormatError:
    return SecretFormatError(
        f"{operation} for secret {secret_id!r} returned {problem}; the client or one of its event "
        "handlers returned a malformed response",
        secret_id=secret_id,
    )


def to_secret_value(
    response: GetSecretValueResponseTypeDef | SecretValueEntryTypeDef,
    secret_id: str,
    operation: str = "GetSecretValue",
) -> SecretValue:
    """Build a :class:`SecretValue` from a ``GetSecretValue`` response.

    Kept small, since it lives as long as its cache entry: the creation date is moved to UTC
    (botocore gives each parsed date its own ``tzlocal`` object, several hundred bytes),
    staging labels are interned, and the name reuses the requested id's string when equal.

    Raises:
        SecretFormatError: A value field has the wrong type (the message names the field and
            the type, never the value; nothing is chained).
    """
    problem = _type_problem(response)
    if problem is not None:
        # Raised here, outside any except block, so that nothing holding the value is chained.
        raise _format_error(operation, secret_id, problem)
    binary = response.get("SecretBinary")
    created = response.get("CreatedDate")
    name = response["Name"]
    return SecretValue(
        name=secret_id if name == secret_id else name,
        arn=response["ARN"],
        version_id=response["VersionId"],
        version_stages=tuple(sys.intern(stage) for stage in response.get("VersionStages", ())),
        created_date=created.astimezone(timezone.utc) if created is not None else None,
        secret_string=response.get("SecretString"),
        secret_binary=bytes(binary) if binary is not None else None,
    )


def _named_by(secret_ids: list[str], item: Any) -> list[str]:
    """The requested ids that name a batch item, by name, ARN or partial ARN."""
    found = aliases(item["ARN"]) | {item["Name"]}
    return [secret_id for secret_id in secret_ids if not aliases(secret_id).isdisjoint(found)]


class Fetcher:
    """Calls Secrets Manager for a cache, with retries, error mapping and call counting.

    Thread-safe: the lazily built client is created once under a private lock (boto3 clients
    are themselves thread-safe) and no other state changes after construction.
    """

    def __init__(
        self,
        client: SecretsManagerClient | None,
        retry: RetryPolicy,
        counters: Counters,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()
        self._counters = counters
        self._retry = retry
        self._sleep = sleep

    @property
    def client(self) -> SecretsManagerClient:
        """The client, built on first use when none was given."""
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    client = self._client = build_client()
        return client

    def get_secret_value(
        self, secret_id: str, version_stage: str | None, version_id: str | None, fetch: Fetch | None = None
    ) -> SecretValue:
        """Fetch one version of a secret; AWSCURRENT when neither stage nor version id is given.

        ``VersionStage`` is always sent when no version id is asked for, so the label is never
        left for the service to default. ``fetch``, when given, counts the attempts.

        Raises:
            SecretCacheError: The typed error matching the failure, the botocore error chained.
        """
        kwargs: dict[str, Any] = {"SecretId": secret_id}
        if version_id is not None:
            kwargs["VersionId"] = version_id
        if version_stage is not None or version_id is None:
            kwargs["VersionStage"] = version_stage or DEFAULT_STAGE

        def attempt() -> GetSecretValueResponseTypeDef:
            client = self.client
            response = self._send("GetSecretValue", fetch, lambda: client.get_secret_value(**kwargs))
            _check_fields(response, "GetSecretValue")
            return response

        # With both VersionId and VersionStage, Secrets Manager refuses a pair that disagrees.
        return to_secret_value(self._call("GetSecretValue", secret_id, attempt), secret_id)

    def batch_get_secret_values(
        self, secret_ids: list[str], fetch: Fetch | None = None
    ) -> tuple[list[SecretValue], dict[str, SecretCacheError]]:
        """Fetch AWSCURRENT of up to :data:`BATCH_SIZE` secrets in one call (``fetch`` counts attempts).

        Returns the values found (match them to the requested ids by name or ARN) and the
        typed error of each id the service reported an error for, or whose value came back
        with the wrong type (:class:`SecretFormatError`).

        Raises:
            BatchRefusedError: The batch operation itself is denied or invalid, no credentials
                or no region are configured, or the client does not know the operation.
            BatchFailedError: The call failed as a whole, after retries for transient errors;
                its ``errors`` holds one typed error per requested id.
        """
        assert 0 < len(secret_ids) <= BATCH_SIZE

        def attempt() -> BatchGetSecretValueResponseTypeDef:
            client = self.client
            # A botocore older than the operation builds a client without the method.
            if not hasattr(client, "batch_get_secret_value"):
                raise BatchRefusedError("this botocore does not know BatchGetSecretValue")
            response = self._send(
                "BatchGetSecretValue", fetch, lambda: client.batch_get_secret_value(SecretIdList=secret_ids)
            )
            for item in response.get("SecretValues", []):
                _check_fields(item, "BatchGetSecretValue")
            return response

        try:
            response = self._retrying(attempt)
        except _CALL_ERRORS as err:
            self._raise_batch_failure(err, secret_ids)
        values: list[SecretValue] = []
        errors: dict[str, SecretCacheError] = {}
        for item in response.get("Errors", []):
            secret_id = item.get("SecretId", "")
            code = item.get("ErrorCode", "Unknown")
            message = item.get("Message", "")
            detail = f"BatchGetSecretValue for secret {secret_id!r} failed: {code}: {message}"
            errors[secret_id] = error = _PERMANENT_CODES.get(code, SecretUnavailableError)(detail, secret_id=secret_id)
            # The service's answer for this secret, as GetSecretValue would have raised it: the
            # same cause chain, and the same error code in logs and metrics, whichever call asked.
            error.__cause__ = ClientError({"Error": {"Code": code, "Message": message}}, "BatchGetSecretValue")
        for entry in response.get("SecretValues", []):
            problem = _type_problem(entry)
            if problem is None:
                values.append(to_secret_value(entry, entry["Name"], "BatchGetSecretValue"))
                continue
            for secret_id in _named_by(secret_ids, entry):
                errors[secret_id] = _format_error("BatchGetSecretValue", secret_id, problem)
        return values, errors

    @staticmethod
    def _raise_batch_failure(err: Exception, secret_ids: list[str]) -> NoReturn:
        label = ", ".join(secret_ids[:3]) + (", ..." if len(secret_ids) > 3 else "")
        mapped = map_error(err, "BatchGetSecretValue", label)
        if isinstance(mapped, (SecretAccessDeniedError, InvalidSecretRequestError)):
            raise BatchRefusedError(str(mapped)) from err
        errors: dict[str, SecretCacheError] = {}
        for secret_id in secret_ids:
            errors[secret_id] = error = map_error(err, "BatchGetSecretValue", secret_id)
            error.__cause__ = err
        raise BatchFailedError(
            f"BatchGetSecretValue for {len(secret_ids)} secret(s) ({label}) failed: {error_type(err)}", errors
        ) from err

    def reset_after_fork(self) -> None:
        """In a forked child: never reuse the parent's connections.

        A client the cache built is dropped and rebuilt on first use. A client the caller gave
        is kept (rebuilding it would lose its credentials and event hooks) but its connection
        pool is emptied, so the child opens its own connections.
        """
        self._client_lock = threading.Lock()
        if self._owns_client:
            self._client = None
            return
        session = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
        close = getattr(session, "close", None)
        if callable(close):
            close()

    def _send(self, operation: str, fetch: Fetch | None, call: Callable[[], _T]) -> _T:
        """Make one call, counting it (and its failure, by error type) and the fetch's attempt."""
        self._counters.api_call(operation)
        if fetch is not None:
            fetch.attempts += 1
        try:
            return call()
        except Exception as err:
            self._counters.api_error(operation, error_type(err))
            raise

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` under the retry policy; the last error is re-raised as is."""
        policy = self._retry
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.attempts) | tenacity.stop_before_delay(policy.deadline),
            wait=tenacity.wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay),
            retry=tenacity.retry_if_exception(is_transient),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _call(self, operation: str, secret_id: str, attempt: Callable[[], _T]) -> _T:
        try:
            return self._retrying(attempt)
        except _CALL_ERRORS as err:
            raise map_error(err, operation, secret_id) from err
