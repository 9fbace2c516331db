"""The bodies of the Agent's answers: a GetSecretValue success, an AWS error, and the constant ones.

Stack-free (standard library, botocore's exception types and secretcache). Sources cited as in
:mod:`secretcache.serve._protocol`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.parsers import ResponseParserError

from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretNotFoundError,
)
from secretcache._value import SecretValue

__all__ = [
    "INTERNAL_FAILURE",
    "JSON",
    "TEXT",
    "Response",
    "created_date",
    "error_body",
    "error_response",
    "success_body",
    "text_response",
]

JSON = "application/json"
TEXT = "text/plain"


@dataclass(frozen=True)
class Response:
    """What to answer. Immutable; ``repr`` shows the status and size, never the body.

    Attributes:
        status: The HTTP status code.
        body: The body's bytes.
        content_type: ``"application/json"`` or ``"text/plain"``.
    """

    status: int
    body: bytes
    content_type: str = TEXT

    def __repr__(self) -> str:
        return f"Response(status={self.status}, content_type={self.content_type!r}, body=<{len(self.body)} bytes>)"


def text_response(status: int, message: str) -> Response:
    """A plain-text answer (the Agent's ``HttpError(status, message)``, server.rs and parse.rs)."""
    return Response(status, message.encode("utf-8", "replace"), TEXT)


def created_date(when: datetime | None) -> str | None:
    """``CreatedDate`` as the Agent writes it: epoch seconds with their fraction, as a JSON string.

    get_secret_value_output.rs serialises it with serde_with's ``TimestampSecondsWithFrac<String>``:
    ``secs as f64 + nanos as f64 / 1e9`` printed by Rust's ``f64`` ``Display`` (shortest digits
    that round-trip, never an exponent, no ``.0`` on whole seconds): ``"1569534789.046"``.
    """
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when - _EPOCH
    micros = abs(delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds)
    seconds, fraction = divmod(micros, 1_000_000)
    value = float(seconds) + float(fraction * 1000) / 1e9
    text = repr(value if delta.days >= 0 else -value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def success_body(value: SecretValue) -> bytes:
    """The Agent's GetSecretValue body for ``value`` (get_secret_value_output.rs, ``GetSecretValueOutputDef``).

    Fields in its order, compact as ``serde_json::to_string`` writes them: ``ARN``, ``Name``,
    ``VersionId``, then ``SecretString`` or base64 ``SecretBinary``, ``VersionStages`` and
    ``CreatedDate`` (see :func:`created_date`).
    """
    body: dict[str, object] = {"ARN": value.arn or None, "Name": value.name, "VersionId": value.version_id or None}
    if value.secret_string is not None:
        body["SecretString"] = value.secret_string
    if value.secret_binary is not None:
        body["SecretBinary"] = base64.b64encode(value.secret_binary).decode("ascii")
    body["VersionStages"] = list(value.version_stages)
    body["CreatedDate"] = created_date(value.created_date)
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which UTF-8 cannot carry: escape it instead
        return json.dumps(body, separators=(",", ":")).encode("ascii")


def error_body(code: str, message: str) -> bytes:
    """An AWS error body as the Agent writes it (utils.rs, ``err_response``), but always valid JSON."""
    if code == "InternalFailure":
        return INTERNAL_FAILURE.body
    return f'{{"__type":{json.dumps(code)}, "message":{json.dumps(message)}}}'.encode()


INTERNAL_FAILURE = Response(500, b'{"__type":"InternalFailure"}', JSON)  # cache_manager.rs, int_err
TIMEOUT = Response(504, error_body("TimeoutError", "Timeout"), JSON)  # cache_manager.rs, svc_err
READ_ERROR = Response(502, error_body("ConnectionError", "Read Error"), JSON)  # cache_manager.rs, svc_err
RESPONSE_ERROR = Response(502, error_body("ConnectionError", "Response Error"), JSON)  # cache_manager.rs, svc_err

# A typed error that no botocore error explains (refused before any call, or decided by the
# cache): the AWS code that a client's cache maps back to the same type (secretcache._error_map).
_CODES: tuple[tuple[type[SecretCacheError], str], ...] = (
    (SecretNotFoundError, "ResourceNotFoundException"),
    (SecretAccessDeniedError, "AccessDeniedException"),
    (SecretDecryptionError, "DecryptionFailure"),
    (InvalidSecretRequestError, "ValidationException"),
)


def error_response(err: SecretCacheError) -> Response:
    """The answer to a failed read (cache_manager.rs, ``fetch`` and ``svc_err``).

    An AWS error passes through with its HTTP status, code and message; a timeout is 504 and a
    connection or response failure 502; a typed error with no AWS error behind it gets the code
    matching its type, status 400; anything else is 500 ``InternalFailure``. Only AWS's message
    or secretcache's own (ids and causes, never a value) reach the body.
    """
    cause = _botocore_cause(err)
    if isinstance(cause, ClientError):
        error = cause.response.get("Error", {})
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code") or "InternalFailure")
        status = status if isinstance(status, int) and 400 <= status <= 599 else 400
        return Response(status, error_body(code, str(error.get("Message") or "")), JSON)
    if isinstance(cause, (ConnectTimeoutError, ReadTimeoutError)):
        return TIMEOUT
    if isinstance(cause, ResponseParserError):
        return RESPONSE_ERROR
    if isinstance(cause, (ConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError)):
        return READ_ERROR
    for kind, code in _CODES:
        if isinstance(err, kind):
            return Response(400, error_body(code, str(err)), JSON)
    return INTERNAL_FAILURE


def _botocore_cause(err: BaseException) -> BaseException | None:
    """The botocore error behind ``err``, following ``__cause__`` a few links."""
    seen = err.__cause__
    for _ in range(8):
        if seen is None or isinstance(seen, (ClientError, BotoCoreError)):
            return seen
        seen = seen.__cause__
    return None
