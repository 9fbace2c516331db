"""The AWS Secrets Manager Agent's HTTP protocol, free of any HTTP stack: parse a request, answer it.

Standard library and secretcache only; the transport (``_app.py``) turns its own request object
into a :class:`Request` and writes the :class:`Response` back. Ground truth is the Agent's source,
github.com/aws/aws-secretsmanager-agent (cited below as ``server.rs``, ``parse.rs``,
``cache_manager.rs``, ``utils.rs`` under ``aws_secretsmanager_agent/src/``, and
``get_secret_value_output.rs`` under ``aws_secretsmanager_caching/src/output/``).

Where this module departs from the Agent, on purpose (issue 24):

- ``X-Forwarded-For`` is refused on every path, ``/ping`` included (the issue: "any
  X-Forwarded-For header"); the Agent skips the check for ``/ping``.
- A ``/v1/<id>`` path is percent-decoded (``/v1/app%2Fdb`` reads ``app/db``; no valid secret name
  or ARN holds a ``%``); the Agent passes the still-encoded path on, and resolves ``.``/``..``
  segments, which this module leaves alone (they are legal in names).
- An AWS error whose message is empty keeps its code; error bodies are always valid JSON (the
  Agent formats them without escaping and turns an empty message into ``InternalFailure``).
- ``refreshNow=true`` is a forced refresh through the cache's single flight, at most one per
  secret and version (or label) per ``refresh_interval``; see :class:`Answerer`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from secretcache._aio import AsyncSecretCache
from secretcache._cache import SecretCache
from secretcache._errors import SecretCacheError
from secretcache._value import SecretValue
from secretcache.serve._bodies import (
    INTERNAL_FAILURE,
    JSON,
    TEXT,
    Response,
    error_response,
    success_body,
    text_response,
)

__all__ = ["TOKEN_HEADERS", "Answerer", "Lookup", "Request", "Response", "parse"]

logger = logging.getLogger("secretcache.serve")

TOKEN_HEADERS = ("x-aws-parameters-secrets-token", "x-vault-token")
"""Headers that may carry the SSRF token, lower-cased (the Agent's default ``ssrf_headers``, config.rs)."""

PATH_PREFIX = "/v1/"  # the Agent's default path_prefix (config.rs)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the transport received it. Immutable.

    Attributes:
        method: The HTTP method (``"GET"``).
        path: The raw path, still percent-encoded, without the query.
        query: The raw query string (``""`` if none), still percent-encoded.
        headers: Header names lower-cased; a repeated header's first value (hyper's ``headers[name]``).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Lookup:
    """A well-formed read of one secret: what :func:`parse` found in a request. Immutable.

    Attributes:
        secret_id: The secret's name or ARN.
        version_id: The version id asked for, or ``None``.
        version_stage: The staging label asked for, or ``None``.
        refresh_now: Whether the request asked for a forced refresh (``refreshNow=true``).
    """

    secret_id: str
    version_id: str | None = None
    version_stage: str | None = None
    refresh_now: bool = False


PING = Response(200, b"healthy", TEXT)  # server.rs, get_result: "/ping" => Ok("healthy")
NOT_FOUND = text_response(404, "Not found")  # server.rs, get_result: the fallback arm
FORWARDED = text_response(400, "Forwarded")  # server.rs, validate_token: X-Forwarded-For
BAD_TOKEN = text_response(403, "Bad Token")  # server.rs, validate_token: no header held the token
NOT_ALLOWED = text_response(405, "Not allowed")  # server.rs, validate_method: not GET
MISSING_SECRET_ID = text_response(400, "missing parameter secretId")  # parse.rs, try_from_query
MISSING_PATH_ID = text_response(400, "missing secret ID")  # parse.rs, try_from_path_query
BAD_REFRESH = text_response(400, "invalid refreshNow value")  # parse.rs, parse_refresh_value
_REFRESH_VALUES = {"true": True, "1": True, "false": False, "0": False}  # parse.rs, parse_refresh_value


def parse(request: Request, token: str | None) -> Lookup | Response:
    """Route ``request`` and check it as the Agent does: a :class:`Lookup` to answer, or the answer itself.

    The checks run in the Agent's order (server.rs, ``get_result``): ``X-Forwarded-For`` (400
    ``Forwarded``), the token (403 ``Bad Token``; ``/ping`` needs none), the method (405 ``Not
    allowed``), then the path: ``/ping`` (200 ``healthy``), ``/secretsmanager/get?secretId=...``,
    ``/v1/<id>?...``, anything else 404 ``Not found``. The token is compared in constant time
    with each of :data:`TOKEN_HEADERS`. ``token=None`` turns the token check off (``--no-token``,
    for tests only). Never raises, whatever the request holds.
    """
    path = request.path
    headers = request.headers
    if "x-forwarded-for" in headers:  # server.rs, validate_token ("Prohibit forwarding")
        return FORWARDED
    if path != "/ping" and token is not None and not _token_matches(headers, token):
        return BAD_TOKEN
    if request.method != "GET":  # server.rs, validate_method: after the token check, as there
        return NOT_ALLOWED
    if path == "/ping":
        return PING
    if path == "/secretsmanager/get":
        return _lookup(request.query, None)
    if path.startswith(PATH_PREFIX):
        secret_id = unquote(path[len(PATH_PREFIX) :], errors="replace")
        return MISSING_PATH_ID if not secret_id else _lookup(request.query, secret_id)
    return NOT_FOUND


_CACHED_QUERY = 8192
"""Longest query (with a path's id) whose parse is cached: room for a 2,048-character id
percent-encoded and every other parameter, and the cache holds at most 4,096 of 8 KB."""


def _lookup(query: str, path_id: str | None) -> Lookup | Response:
    """:func:`_query_lookup`, cached unless the query is too long for the cache to stay small."""
    if len(query) + len(path_id or "") > _CACHED_QUERY:
        return _query_lookup.__wrapped__(query, path_id)
    return _query_lookup(query, path_id)


def _token_matches(headers: Mapping[str, str], token: str) -> bool:
    """Whether one of the token headers holds ``token`` (server.rs, validate_token), compared in constant time."""
    expected = token.encode("utf-8", "surrogatepass")
    found = False
    for name in TOKEN_HEADERS:
        value = headers.get(name)
        if value is not None:
            found |= hmac.compare_digest(value.encode("utf-8", "surrogatepass"), expected)
    return found


@functools.lru_cache(maxsize=4096)  # clients repeat their queries: a hit skips the decoding (results are immutable)
def _query_lookup(query: str, path_id: str | None) -> Lookup | Response:
    """The query's parameters (parse.rs, ``try_from_query`` / ``try_from_path_query``).

    Decoded as the ``url`` crate's ``query_pairs`` does (``&`` separates, ``+`` is a space,
    percent-decoding with bad UTF-8 replaced); a repeated parameter's last value wins; the first
    unknown parameter or bad ``refreshNow`` value, in order, is the error. ``secretId`` is a
    parameter of ``/secretsmanager/get`` only.
    """
    secret_id = path_id or ""
    version_id: str | None = None
    version_stage: str | None = None
    refresh_now = False
    for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if name == "secretId" and path_id is None:
            secret_id = value
        elif name == "versionId":
            version_id = value
        elif name == "versionStage":
            version_stage = value
        elif name == "refreshNow":
            flag = _REFRESH_VALUES.get(value.lower())
            if flag is None:
                return BAD_REFRESH
            refresh_now = flag
        else:
            return text_response(400, f"unknown parameter: {name}")  # parse.rs: format!("unknown parameter: {}", p)
    if not secret_id:
        return MISSING_SECRET_ID
    return Lookup(secret_id, version_id, version_stage, refresh_now)


def _retrieve(task: asyncio.Task[SecretValue]) -> None:
    """Mark a forced read's outcome as seen, even if every request awaiting it went away."""
    if not task.cancelled():
        task.exception()


def _log_bug(err: Exception) -> None:
    """Log a failure of this module's own code: its type and where, never its message (it may quote data)."""
    frames = "; ".join(
        f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(err.__traceback__)
    )
    logger.error("secretcache serve: internal error %s answering a request (at %s)", type(err).__name__, frames)


@dataclass(frozen=True)
class _Forced:
    """A forced read of one key: when it started, on which loop, and the task doing it."""

    started: float
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[SecretValue]


_MAX_FORCED = 4096  # keys whose last forced read is remembered; older ones are dropped beyond this


class Answerer:
    """Answers the Agent's requests from one cache: bodies, error mapping and ``refreshNow``.

    ``refreshNow=true`` is a forced refresh (``force_refresh=True``), which the cache's single
    flight shares between concurrent readers, and at most one is started per secret and version
    id or label every ``refresh_interval`` seconds (of ``clock``): within that window a
    ``refreshNow`` request waits for the forced read still running (on the same event loop), or
    once it is done reads the cache as any request does. A burst of ``refreshNow`` calls therefore
    costs one GetSecretValue call, where the Agent would make one each.

    A success body is serialised once per :class:`SecretValue` object the cache hands out, so a
    hit costs a dict lookup. Safe to share between the tasks of one event loop, and between
    loops and threads (a forced read is then joined only from its own loop).

    Args:
        cache: The cache to read through (a :class:`SecretCache` is wrapped in an
            :class:`AsyncSecretCache`). The caller owns it and closes it.
        token: The SSRF token requests must carry, or ``None`` to accept any request
            (``--no-token``, for tests only).
        refresh_interval: Seconds between two forced refreshes of one key (default 1.0; 0 lets
            every ``refreshNow`` force one, as the Agent does).
        clock: A monotonic clock for the refresh window (default :func:`time.monotonic`).

    Raises:
        TypeError: ``cache`` is neither cache.
        ValueError: ``refresh_interval`` is negative or not finite.
    """

    def __init__(
        self,
        cache: AsyncSecretCache | SecretCache,
        *,
        token: str | None,
        refresh_interval: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(cache, SecretCache):
            cache = AsyncSecretCache(cache=cache)
        if not isinstance(cache, AsyncSecretCache):
            raise TypeError(f"cache must be a SecretCache or an AsyncSecretCache, not {type(cache).__name__}")
        interval = float(refresh_interval)
        if not 0.0 <= interval < float("inf"):
            raise ValueError(f"refresh_interval must be a finite number of seconds >= 0, got {refresh_interval!r}")
        self._cache = cache
        self._token = token
        self._interval = interval
        self._clock = clock or time.monotonic
        self._answers: dict[int, tuple[SecretValue, Response]] = {}
        self._max_answers = 2 * cache.max_size + 16
        self._forced: dict[tuple[str, str | None, str | None], _Forced] = {}
        self._forced_lock = threading.Lock()

    def __repr__(self) -> str:
        token = "None" if self._token is None else "<set>"
        return f"Answerer({self._cache!r}, token={token}, refresh_interval={self._interval:g})"

    @property
    def cache(self) -> AsyncSecretCache:
        """The cache requests are answered from (its :attr:`AsyncSecretCache.cache` is the SecretCache)."""
        return self._cache

    async def handle(self, request: Request) -> Response:
        """Parse ``request`` and answer it. Never raises: a bug in this code is logged (without values) as a 500."""
        try:
            lookup = parse(request, self._token)
            if isinstance(lookup, Response):
                return lookup
            return await self.answer(lookup)
        except Exception as err:  # asyncio.CancelledError is a BaseException: a cancelled request stays cancelled
            _log_bug(err)
            return INTERNAL_FAILURE

    async def answer(self, lookup: Lookup) -> Response:
        """The answer to a well-formed read: the GetSecretValue body, or the AWS error (see ``error_response``)."""
        try:
            value = await self._read(lookup)
        except SecretCacheError as err:
            return error_response(err)
        hit = self._answers.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        response = Response(200, success_body(value), JSON)
        if len(self._answers) >= self._max_answers:
            self._answers.clear()
        self._answers[id(value)] = (value, response)  # holding value keeps its id from being reused
        return response

    async def _read(self, lookup: Lookup) -> SecretValue:
        cache = self._cache
        secret_id, version_id, version_stage = lookup.secret_id, lookup.version_id, lookup.version_stage
        if lookup.refresh_now:
            key = (secret_id, version_id, version_stage)
            now = self._clock()
            loop = asyncio.get_running_loop()
            forced = self._forced.get(key)
            if forced is None or now - forced.started >= self._interval:
                task = loop.create_task(
                    cache.get_secret(secret_id, version_id=version_id, version_stage=version_stage, force_refresh=True)
                )
                task.add_done_callback(_retrieve)
                self._remember(key, _Forced(now, loop, task), now)
                return await asyncio.shield(task)
            if forced.loop is loop and not forced.task.done():
                return await asyncio.shield(forced.task)
        return await cache.get_secret(secret_id, version_id=version_id, version_stage=version_stage)

    def _remember(self, key: tuple[str, str | None, str | None], forced: _Forced, now: float) -> None:
        """Record a forced read, forgetting those whose window has passed when too many are kept.

        Under a lock of its own: loops on other threads record theirs too (a read of one entry,
        ``_read``'s, needs none).
        """
        table = self._forced
        with self._forced_lock:
            if len(table) >= _MAX_FORCED:
                for old in [k for k, f in table.items() if now - f.started >= self._interval and f.task.done()]:
                    del table[old]
                if len(table) >= _MAX_FORCED:  # a flood of distinct keys within one window: start afresh
                    table.clear()
            table[key] = forced
