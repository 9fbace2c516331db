"""Botocore failures: which are transient (worth retrying), and the typed error each one becomes."""

from __future__ import annotations

import http.client
from typing import Any

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
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from botocore.parsers import ResponseParserError

from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._lazy import ClientUnusableError
from secretcache._response import MalformedResponseError

__all__ = ["PERMANENT_CODES", "hide_body", "is_transient", "map_error", "transient_answer"]

# Botocore's "standard" retry mode (botocore/retries/standard.py) keeps these lists in private
# class attributes, so they are copied here; tests/test_fetcher_errors.py reads botocore's lists at
# test time and fails when a botocore update adds a code. Standard mode does not read _retry.json
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
# Secrets Manager's own server-side fault. AWS's error lists give it HTTP 400 in some versions and
# 500 in others, and botocore's shape for it carries no status, so it is known by its code alone.
_SERVICE_FAULT_CODES = frozenset({"InternalServiceError"})
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
# No usable credentials, SSO's expired or missing token included: a refusal, never retried.
_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    SSOTokenLoadError,
    UnauthorizedSSOTokenError,
    TokenRetrievalError,
)
PERMANENT_CODES: dict[str, type[SecretCacheError]] = {
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
"""The definite answers: an error code that is a verdict on the request, and the typed error it becomes."""


def _status(err: ClientError) -> int:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` is worth retrying: throttling, 429, 5xx, timeouts, connection errors.

    The error codes and statuses are those botocore's "standard" retry mode retries, plus
    every 5xx status; a 429 is transient whatever its error code, and Secrets Manager's
    ``InternalServiceError`` whatever its status.
    """
    if isinstance(err, ClientError):
        return transient_answer(err.response.get("Error", {}).get("Code", ""), _status(err))
    return isinstance(err, (*_TRANSIENT_EXCEPTIONS, MalformedResponseError))


def transient_answer(code: object, status: int) -> bool:
    """Whether an error answer (its code and HTTP status) is transient; see :func:`is_transient`."""
    return (
        code in _THROTTLING_CODES
        or code in _TRANSIENT_CODES
        or code in _SERVICE_FAULT_CODES
        or status == _THROTTLING_STATUS
        or status >= 500
    )


def hide_body(err: ClientError) -> ClientError | None:
    """The same error with its message not shown, when botocore made the message of an answer that is no AWS error.

    An answer whose body carries no AWS error type (a proxy's, a load balancer's) gets its HTTP
    status as its code, and, when the body is not JSON, the whole body as its message: a proxy
    that cuts a success answer short and reports 502 puts the secret value there, and from there
    into every error, log line and error tracker. Such a message is replaced by its length, unless
    it is empty or botocore's own reason phrase (``Bad Gateway``). ``None`` when ``err`` needs no
    change (an AWS error, whose message is the service's).
    """
    error = err.response.get("Error", {})
    status = _status(err)
    message = error.get("Message", "")
    if error.get("Code") != str(status) or not message or message == http.client.responses.get(status):
        return None
    hidden = {**error, "Message": f"(an answer of {len(message)} characters that is not an AWS error, not shown)"}
    response: Any = {**err.response, "Error": hidden}
    return ClientError(response, err.operation_name)


def map_error(
    err: Exception, operation: str, secret_id: str, *, attempts: int | None = None, missing: str | None = None
) -> SecretCacheError:
    """Translate a botocore failure into the matching typed secretcache error.

    ``attempts`` (when known) is how many calls were made: "(retries exhausted)" is said only
    when there were retries. ``missing`` names what a "not found" may be about besides the secret
    (``has no version labelled AWSPREVIOUS``).
    """
    where = f"{operation} for secret {secret_id!r}"
    exhausted = "" if attempts == 1 else " (retries exhausted)"
    if isinstance(err, ClientUnusableError):  # no call was made: the client itself is not to be had
        return err.kind(f"{where} failed: {err}", secret_id=secret_id)
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = error.get("Code", "Unknown")
        detail = f"{where} failed: {code}: {error.get('Message', '')}".rstrip(": ")
        if is_transient(err):
            return SecretUnavailableError(f"{detail}{exhausted}", secret_id=secret_id)
        if missing is not None and PERMANENT_CODES.get(code) is SecretNotFoundError:
            detail += f" (the secret does not exist, or {missing})"
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # An unknown code with 401/403 (a proxy, a WAF or a VPC endpoint policy answering in HTML,
        # which botocore reports with the status as the code) is a refusal, not an outage.
        fallback = SecretAccessDeniedError if status in (401, 403) else SecretUnavailableError
        return PERMANENT_CODES.get(code, fallback)(detail, secret_id=secret_id)
    if isinstance(err, _CREDENTIAL_ERRORS):
        return SecretAccessDeniedError(f"{where} failed: no usable AWS credentials: {err}", secret_id=secret_id)
    if isinstance(err, NoRegionError):
        return InvalidSecretRequestError(
            f"{where} failed: no AWS region is configured; set AWS_REGION or pass a client",
            secret_id=secret_id,
        )
    if isinstance(err, ParamValidationError):
        return InvalidSecretRequestError(f"{where} was refused by botocore: {err}", secret_id=secret_id)
    if isinstance(err, MalformedResponseError) or (isinstance(err, BotoCoreError) and is_transient(err)):
        return SecretUnavailableError(f"{where} failed: {err}{exhausted}", secret_id=secret_id)
    return SecretUnavailableError(f"{where} failed: {type(err).__name__}: {err}", secret_id=secret_id)
