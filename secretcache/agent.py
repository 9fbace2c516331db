"""A Secrets Manager client that reads through a local server speaking the AWS Secrets Manager Agent's protocol.

:class:`AgentClient` has the ``get_secret_value`` method of a boto3 ``secretsmanager`` client
and answers it from ``secretcache serve``, the AWS Secrets Manager Agent or the Lambda
Parameters and Secrets extension (one protocol: ``GET /secretsmanager/get?secretId=...`` with the
token in ``X-Aws-Parameters-Secrets-Token``). Given to a cache, every worker process of a host
keeps its own in-process cache in front of the host's one::

    from secretcache import SecretCache
    from secretcache.agent import AgentClient

    cache = SecretCache(client=AgentClient(), ttl=30)

What the cache sees is what it sees from boto3: the same response dict (``CreatedDate`` a
timezone-aware datetime, ``SecretBinary`` bytes) and the same botocore exceptions, so its error
mapping and retry policy apply unchanged: a server's ``{"__type": code, "message": ...}`` answer
becomes a ``ClientError`` with that code and the HTTP status (429 and 5xx are transient and
retried), and a refused connection, a timeout or a dropped connection become botocore's
``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError`` and
``ConnectionClosedError`` (retried too). A forced read of the cache (``force_refresh=True``,
``refresh()``) is sent as ``refreshNow=true``; ``prefetch`` reads one secret at a time (the
protocol has no batch call).

Importing this module costs urllib3, which botocore depends on already; ``import secretcache``
does not import it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import urllib3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from secretcache import _fork
from secretcache._policy import Duration, to_seconds
from secretcache._token import TokenError, read_token

__all__ = ["MAX_BODY", "AgentClient"]

DEFAULT_ENDPOINT = "http://127.0.0.1:2773"
ENDPOINT_VARIABLE = "SECRETCACHE_AGENT_ENDPOINT"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"  # noqa: S105 - a header name, not a secret
_PATH = "/secretsmanager/get"
_OPERATION = "GetSecretValue"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The Agent writes its error bodies with format!() and does not escape the message
# (aws_secretsmanager_agent/src/utils.rs, err_response): a message holding a quote is not JSON.
_AGENT_ERROR = re.compile(r'\A\{"__type":"([^"\\]*)"(?:, ?"message":"(.*)")?\}\Z', re.DOTALL)
# The Agent's plain-text answers (server.rs, parse.rs): the only bodies without a "__type" quoted in
# an error. Any other (a proxy's page, a body a broken server sent with an error status) may hold
# anything, a value included: it is described by its size, never quoted.
_PLAIN_ANSWERS = frozenset(
    {
        "Bad Token",
        "Forwarded",
        "Not allowed",
        "Not found",
        "Connection limit exceeded",
        "missing parameter secretId",
        "missing secret ID",
        "invalid refreshNow value",
        "Serving not enabled. Hit the /start_serving endpoint to enable serving requests.",
    }
)
_UNKNOWN_PARAMETER = re.compile(r"\Aunknown parameter: [A-Za-z]{1,32}\Z")  # the names this client sends, at most
_CLOSED_POOL_TRIES = 10  # a request meets at most this many pools closed by close() on other threads
# server.rs, validate_max_conn: the Agent counts a connection once, when it accepts it, and answers
# 429 to every request on one it accepted past max_conn, keeping it open (hyper's keep-alive).
_OVER_LIMIT = 429
MAX_BODY = 1 << 20
"""Longest body read (1 MiB): a secret is at most 64 KiB, 6 times that JSON-escaped, 4/3 that base64."""
_READ_SIZE = 65536
_MAX_DIGITS = 12  # a CreatedDate of 10**13 seconds or more is past year 9999: not computed, left out


@dataclass(frozen=True)
class _Config:
    """The timeouts, where the cache reads them on boto3 clients (``client.meta.config``)."""

    connect_timeout: float
    read_timeout: float


@dataclass(frozen=True)
class _Meta:
    """The part of a boto3 client's ``meta`` the cache reads: no Region (the server's is its own)."""

    config: _Config
    endpoint_url: str
    region_name: None = None


class AgentClient:
    """A ``secretsmanager`` client with one method, ``get_secret_value``, answered by a local Agent-protocol server.

    Thread-safe: requests share one urllib3 connection pool (keep-alive, at most
    ``max_connections`` kept open). In a forked child the pool is replaced before the child's
    first request, so parent and child never share a connection. :meth:`close` (or use as a
    context manager) closes the pooled connections; a request after it opens new ones, and one
    on another thread at that moment is not failed by it.

    The client makes one HTTP request per call and never retries by itself: a cache retries
    transient failures under its own :class:`~secretcache.RetryPolicy`. Its ``repr`` shows the
    endpoint and the timeouts, never the token; no error it raises holds the token or a value,
    nor any byte of an answer cut off by a broken connection or of an error answer that is not one
    of the Agent's own (in its arguments, attributes or chain).

    Args:
        endpoint: The server's base URL, ``http://host:port`` (no path, query or credentials).
            Default: the ``SECRETCACHE_AGENT_ENDPOINT`` variable, else ``http://127.0.0.1:2773``
            (the port of ``secretcache serve``, the Agent and the Lambda extension).
        token: The SSRF token sent in ``X-Aws-Parameters-Secrets-Token``. Default: what the
            server reads too, the first set of ``AWS_TOKEN``, ``AWS_SESSION_TOKEN`` and
            ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, a value ``file://PATH`` read from that file
            (in Lambda, the extension's token is ``AWS_SESSION_TOKEN``: nothing to set).
        connect_timeout: Seconds to wait for a connection (default 1: the server is local).
        read_timeout: Seconds to wait for an answer (default 5, the read timeout of the boto3
            client a cache builds); a whole call, its body read, ends ``connect_timeout +
            read_timeout`` after it began (``ReadTimeoutError``). A read the server must fetch
            from Secrets Manager waits for that fetch; when it takes longer, the cache's next
            attempt joins the server's fetch.
        max_connections: Connections kept open for reuse (default 10); more concurrent requests
            open more connections, closed after use.

    Raises:
        ValueError: ``endpoint`` is not an ``http``/``https`` base URL; no token is given and
            none of the variables is set (the message names them); the token holds characters
            an HTTP header cannot carry; a timeout is not positive.
        TypeError: An argument has the wrong type.
    """

    _secretcache_refresh_now: ClassVar[bool] = True  # secretcache._fetcher.REFRESH_NOW: forced reads pass RefreshNow

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        connect_timeout: Duration = 1.0,
        read_timeout: Duration = 5.0,
        max_connections: int = 10,
    ) -> None:
        if endpoint is None:
            endpoint = os.environ.get(ENDPOINT_VARIABLE, "").strip() or DEFAULT_ENDPOINT
        self._endpoint = _check_endpoint(endpoint)
        if token is None:
            try:
                token = read_token().value
            except TokenError as err:  # names the variables (and a file's path), never a token
                raise TokenError(f"AgentClient needs the server's token (or token=): {err}") from None
        _check_token(token)
        self._token = token
        self._connect_timeout = _positive(connect_timeout, "connect_timeout")
        self._read_timeout = _positive(read_timeout, "read_timeout")
        if not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1:
            raise ValueError("max_connections must be an int >= 1")
        self._max_connections = max_connections
        self._url = self._endpoint + _PATH  # for error messages: no query, so no id
        self.meta = _Meta(_Config(self._connect_timeout, self._read_timeout), self._endpoint)
        """What a cache reads from a boto3 client's ``meta``: the timeouts (``meta.config``), no Region."""
        self._pool = self._new_pool()
        _fork.track(self)

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        return urllib3.connection_from_url(
            self._endpoint,
            maxsize=self._max_connections,
            block=False,
            timeout=urllib3.Timeout(connect=self._connect_timeout, read=self._read_timeout),
            retries=False,
        )

    def _after_fork_in_child(self) -> None:
        """In a forked child: a pool of its own (the parent's connections are left to the parent)."""
        self._pool = self._new_pool()

    def __repr__(self) -> str:
        return (
            f"AgentClient(endpoint={self._endpoint!r}, connect_timeout={self._connect_timeout:g}, "
            f"read_timeout={self._read_timeout:g}, max_connections={self._max_connections})"
        )

    def close(self) -> None:
        """Close the pooled connections. Idempotent; a later request opens a new connection.

        Requests on other threads are not failed: one that has its connection finishes on it (the
        connection is closed after), one that took the closed pool before its connection takes the new one.
        """
        closed, self._pool = self._pool, self._new_pool()  # the new one in place first: no request takes the old
        closed.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_secret_value(
        self,
        *,
        SecretId: str,  # boto3's parameter names
        VersionId: str | None = None,
        VersionStage: str | None = None,
        RefreshNow: bool = False,
    ) -> dict[str, Any]:
        """Read one version of a secret from the server, as boto3's ``get_secret_value`` reads it from AWS.

        Args:
            SecretId: The secret's name or ARN (full or partial).
            VersionId: A version id; with ``VersionStage``, the two must agree.
            VersionStage: A staging label; the server reads AWSCURRENT when neither is given.
            RefreshNow: Ask the server to fetch from Secrets Manager now instead of answering
                from its cache (``refreshNow=true``); a cache passes it on forced reads.

        Returns:
            The ``GetSecretValue`` response: ``ARN``, ``Name``, ``VersionId``, ``SecretString``
            or ``SecretBinary`` (bytes), ``VersionStages``, ``CreatedDate`` (a timezone-aware
            datetime, when the server sends one it can be read as) and ``ResponseMetadata``.

        Raises:
            botocore.exceptions.ClientError: The server answered with an error: the code is
                its ``__type`` (the AWS error code passed through, ``TimeoutError``,
                ``ConnectionError``, ``InternalFailure``), or the HTTP status as a string for a
                plain-text answer (``"403"`` for a wrong token, ``"429"`` when the server has
                too many connections); ``ResponseMetadata.HTTPStatusCode`` is the status.
            botocore.exceptions.EndpointConnectionError: No connection (the server is not
                running, or restarting).
            botocore.exceptions.ConnectTimeoutError: The connection took longer than
                ``connect_timeout``.
            botocore.exceptions.ReadTimeoutError: The answer took longer than ``read_timeout``, or
                was not complete ``connect_timeout + read_timeout`` after the call began.
            botocore.exceptions.ConnectionClosedError: The connection broke before an answer.
            botocore.exceptions.HTTPClientError: Another HTTP failure.
            botocore.parsers.ResponseParserError: A success answer that is not a JSON object, or
                longer than :data:`MAX_BODY` (not read past it; an error answer that long is a
                ``ClientError`` with its status as the code).
            botocore.exceptions.ParamValidationError: An argument of the wrong type.
        """
        for name, value, required in (
            ("SecretId", SecretId, True),
            ("VersionId", VersionId, False),
            ("VersionStage", VersionStage, False),
        ):
            if not (isinstance(value, str) or (value is None and not required)):
                kind = type(value).__name__
                raise ParamValidationError(report=f"Invalid type for parameter {name}, type: {kind}, valid types: str")
        if not isinstance(RefreshNow, bool):
            raise ParamValidationError(
                report=f"Invalid type for parameter RefreshNow, type: {type(RefreshNow).__name__}, valid types: bool"
            )
        query = "secretId=" + quote(SecretId, safe="")
        if VersionId is not None:
            query += "&versionId=" + quote(VersionId, safe="")
        if VersionStage is not None:
            query += "&versionStage=" + quote(VersionStage, safe="")
        if RefreshNow:
            query += "&refreshNow=true"
        status, headers, body = self._request(f"{_PATH}?{query}")
        metadata = {
            "RequestId": headers.get("x-amzn-requestid", ""),
            "HTTPStatusCode": status,
            "HTTPHeaders": headers,
            "RetryAttempts": 0,
        }
        if body is None:  # longer than MAX_BODY: not read
            if status != 200:
                message = f"(a body of more than {MAX_BODY} bytes, not read)"
                error = {"Code": str(status), "Message": message}
                raise ClientError({"Error": error, "ResponseMetadata": metadata}, _OPERATION)  # type: ignore[typeddict-item]
            raise ResponseParserError(f"{_OPERATION}: the server's answer is longer than {MAX_BODY} bytes (not read)")
        if status != 200:
            raise _client_error(status, body, metadata)
        return _response(body, metadata)

    def _request(self, target: str) -> tuple[int, dict[str, str], bytes | None]:
        """One GET of ``target``: the status, the headers (names lower-cased) and the body.

        The whole call, body included, takes at most ``connect_timeout + read_timeout`` (what a
        cache counts one call of this client may take): a server that trickles its answer fails
        with ``ReadTimeoutError`` at that deadline, not when it stops. The body is read up to
        :data:`MAX_BODY` bytes, never more: a longer one (no Secrets Manager answer comes near)
        ends the request, its connection closed, as a ``ResponseParserError`` for a ``200`` and a
        ``ClientError`` with the status for an error answer, neither quoting a byte of it.

        A 429 answer closes the pooled connections (as :meth:`close` does): the Agent refuses every
        later request on a connection it counted past its limit, so a retry on it would meet the
        same refusal however much room the server had by then.

        urllib3's failures become the botocore exceptions a boto3 client raises for them. Those
        that can come after part of the answer was read are not chained and keep only the names
        of urllib3's errors: http.client's ``IncompleteRead`` holds the bytes read (the value),
        and urllib3's ``InvalidChunkLength`` the line read where a chunk's length should be.
        """
        deadline = time.monotonic() + self._connect_timeout + self._read_timeout
        failure: BotoCoreError | None = None
        try:
            response = self._send(target)
            body = _read_body(response, deadline)
        except urllib3.exceptions.NewConnectionError as err:  # before ConnectTimeoutError: a subclass of it
            raise EndpointConnectionError(endpoint_url=self._url, error=err) from err
        except urllib3.exceptions.ConnectTimeoutError as err:
            raise ConnectTimeoutError(endpoint_url=self._url, error=err) from err
        except urllib3.exceptions.ReadTimeoutError as err:
            failure = ReadTimeoutError(endpoint_url=self._url, error=_names(err))
        except urllib3.exceptions.ProtocolError as err:
            failure = ConnectionClosedError(endpoint_url=self._url, error=_names(err))
        except urllib3.exceptions.HTTPError as err:
            failure = HTTPClientError(error=_names(err))
        except _Late:
            failure = ReadTimeoutError(
                endpoint_url=self._url,
                error=f"the answer was not complete within connect_timeout + read_timeout "
                f"({self._connect_timeout + self._read_timeout:g} s)",
            )
        if failure is not None:
            raise failure  # outside the except block: no __context__ either
        if response.status == _OVER_LIMIT:
            self.close()  # the refused connection with the idle ones, which count against the limit too
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, headers, body

    def _send(self, target: str) -> urllib3.BaseHTTPResponse:
        """GET ``target`` on the current pool, again on the next one if :meth:`close` closed it under this request.

        urllib3 raises ``ClosedPoolError`` before it takes a connection, so nothing was sent.
        """
        headers = {TOKEN_HEADER: self._token}
        options: dict[str, Any] = {"headers": headers, "retries": False, "redirect": False, "preload_content": False}
        for _ in range(_CLOSED_POOL_TRIES - 1):
            pool = self._pool
            try:
                return pool.request("GET", target, **options)
            except urllib3.exceptions.ClosedPoolError:
                if self._pool is pool:  # closed, yet still in place: not close()'s doing
                    raise
        return self._pool.request("GET", target, **options)


class _Late(Exception):
    """The answer was not complete by the call's deadline."""


def _read_body(response: urllib3.BaseHTTPResponse, deadline: float) -> bytes | None:
    """``response``'s body, read by its deadline (``_Late`` past it), or ``None`` past :data:`MAX_BODY` bytes.

    Each read waits at most until the deadline (the socket's timeout is set to what is left), so a
    server sending a byte now and then cannot stretch the call. A body cut short closes its
    connection; one read whole gives it back to the pool.
    """
    parts: list[bytes] = []
    size = 0
    complete = False
    try:
        while size <= MAX_BODY:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Late
            # Looked up before each read: a body read to its end gives the connection back to the
            # pool at once, where another request may take it (and close() may close it).
            sock = getattr(response.connection, "sock", None)
            if sock is not None:
                sock.settimeout(left)
            chunk = response.read1(_READ_SIZE)
            if not chunk:
                complete = True
                break
            size += len(chunk)
            parts.append(chunk)
    finally:
        if not complete:
            response.close()  # closes the connection too: the rest of the body is never read
        response.release_conn()
    return b"".join(parts) if complete else None


def _names(err: BaseException) -> str:
    """``err``'s class and those of the errors it wraps (``ProtocolError (IncompleteRead)``): never their contents."""
    inner = (*err.args, err.__cause__, err.__context__)
    wrapped = dict.fromkeys(type(each).__name__ for each in inner if isinstance(each, BaseException))
    return type(err).__name__ + (f" ({', '.join(wrapped)})" if wrapped else "")


def _check_endpoint(endpoint: object) -> str:
    """``endpoint`` as ``scheme://host[:port]``; refused (never echoed: it might hold credentials) if it is more."""
    if not isinstance(endpoint, str):
        raise TypeError(f"endpoint must be a str such as {DEFAULT_ENDPOINT!r}, not {type(endpoint).__name__}")
    try:
        parts = urlsplit(endpoint.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    problem = None
    if parts is None:
        problem = "it is not a URL"
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "it needs http:// or https:// and a host"
    elif parts.username is not None or parts.password is not None:
        problem = "it holds credentials (the token goes in token=)"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "it has a path, a query or a fragment (give the server's base URL)"
    if problem is not None or parts is None:
        raise ValueError(f"AgentClient endpoint refused: {problem}; expected a base URL such as {DEFAULT_ENDPOINT!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # type: ignore[operator]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _check_token(token: object) -> None:
    """Refuse a token an HTTP header cannot carry, before http.client does so in an error that shows it."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if any(not (" " <= char <= "~" or char == "\t") for char in token):
        raise ValueError("the AgentClient token holds characters an HTTP header cannot carry (only printable ASCII)")


def _positive(value: Duration, name: str) -> float:
    seconds = to_seconds(value, name, allow_inf=False)
    if seconds <= 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return seconds


def _client_error(status: int, body: bytes, metadata: dict[str, Any]) -> ClientError:
    """The ``ClientError`` boto3 would raise for an error answer, from the Agent's ``__type``/``message`` body.

    A body that is not that JSON gives the status as the code, as botocore does for an answer
    without one. Its text is the message only if it is one of the Agent's plain-text answers
    (``Bad Token``, ``Not found``, ``Connection limit exceeded``...); any other body is described
    by its size, never quoted: the client cannot tell a value in it from a message.
    """
    text = body.decode("utf-8", "replace")
    code, message = None, None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("__type"), str):
        code = parsed["__type"]
        message = parsed.get("message", parsed.get("Message", ""))
    else:
        match = _AGENT_ERROR.match(text.strip())
        if match is not None:
            code, message = match.group(1), match.group(2)
    if code is None:
        code, message = str(status), text.strip()
        if message not in _PLAIN_ANSWERS and _UNKNOWN_PARAMETER.match(message) is None:
            message = f"(a body of {len(body)} bytes that is not an Agent error, not shown)"
    code = code.rsplit("#", 1)[-1]  # a JSON-protocol "__type" may carry the model's namespace
    error = {"Code": code, "Message": message if isinstance(message, str) else ""}
    return ClientError({"Error": error, "ResponseMetadata": metadata}, _OPERATION)  # type: ignore[typeddict-item]


def _response(body: bytes, metadata: dict[str, Any]) -> dict[str, Any]:
    """The boto3-shaped response of a success body; raises ``ResponseParserError`` (naming no content) if broken."""
    parsed: object = None
    with contextlib.suppress(ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        parsed = json.loads(body)
    # Raised outside the except block: a JSONDecodeError holds the whole body (the value).
    if not isinstance(parsed, dict):
        raise ResponseParserError(f"{_OPERATION}: the server's answer is not a JSON object ({len(body)} bytes)")
    response: dict[str, Any] = {}
    for field in ("ARN", "Name", "VersionId", "SecretString"):
        if parsed.get(field) is not None:
            response[field] = parsed[field]
    binary = parsed.get("SecretBinary")
    if isinstance(binary, str):
        decoded = _base64(binary)
        if decoded is None:
            raise ResponseParserError(f"{_OPERATION}: the server's SecretBinary is not base64")
        response["SecretBinary"] = decoded
    elif binary is not None:
        response["SecretBinary"] = binary  # the cache refuses it, naming its type
    if parsed.get("VersionStages") is not None:
        response["VersionStages"] = parsed["VersionStages"]
    created = _created(parsed.get("CreatedDate"))
    if created is not None:
        response["CreatedDate"] = created
    response["ResponseMetadata"] = metadata
    return response


def _base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _created(raw: object) -> datetime | None:
    """``CreatedDate`` as the Agent sends it (epoch seconds in a string, ``"1569534789.046"``), a number or ISO 8601.

    Read exactly (to the microsecond, no float rounding), in UTC. Anything else is left out,
    a date outside what a datetime holds too: the date orders versions, and none is better than
    a wrong one.
    """
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return None
    try:
        seconds = Decimal(str(raw).strip())
        if not seconds.is_finite() or seconds.adjusted() > _MAX_DIGITS:
            return None
        return _EPOCH + timedelta(microseconds=int(seconds.scaleb(6).to_integral_value()))
    except ArithmeticError:  # decimal's InvalidOperation and Overflow, timedelta's OverflowError
        pass
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: in UTC, before year 1 or after 9999
        return None
