"""The HTTP edge of ``secretcache serve``: a raw ASGI app around the Answerer, and the connection limit.

:class:`AgentApp` turns an ASGI ``http`` scope into a :class:`~secretcache.serve._protocol.Request`
(method, raw path without the query, raw query string, header names lower-cased with a repeated
header's first value, as the Agent reads it), awaits :meth:`Answerer.handle` and writes the status,
``content-type``, ``content-length`` and body. No framework: one dict per event.

The connection limit is the Agent's (server.rs, ``validate_max_conn``): a connection is counted
when it is accepted, together with every connection open at that moment; a request on a
connection accepted while more than ``max_conn`` were open is answered ``429 Connection limit
exceeded`` and the connection is closed (``/ping`` is allowed two more, as in the Agent).
:class:`LimitedHttpToolsProtocol`, a subclass of uvicorn's httptools protocol, does the counting
(uvicorn already keeps the set of open connections) and hands the count to the app in the scope
under :data:`OPEN_AT_ACCEPT`; the app answers. Without that key (another server) no limit applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from secretcache.serve._bodies import Response, text_response
from secretcache.serve._protocol import Answerer, Request

__all__ = ["OPEN_AT_ACCEPT", "TOO_MANY", "AgentApp", "LimitedHttpToolsProtocol", "request_of"]

logger = logging.getLogger("secretcache.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_AT_ACCEPT = "secretcache.open_at_accept"
"""Scope key: how many connections were open (this one included) when this request's connection was accepted."""

TOO_MANY = text_response(429, "Connection limit exceeded")  # server.rs, validate_max_conn
_PING_ALLOWANCE = 2  # server.rs, validate_max_conn: "allow 2 extra health check conns"
_CLOSE = (b"connection", b"close")
_MAX_STARTS = 4096  # start messages kept; the answers they belong to are bounded by the Answerer


def request_of(scope: Scope) -> Request:
    """The :class:`Request` an ASGI ``http`` scope describes.

    The path is ``raw_path`` (still percent-encoded; rebuilt from ``path`` if the server gives
    none), the query ``query_string``, both decoded with bad UTF-8 replaced; header values are
    decoded as UTF-8 with undecodable bytes kept as surrogates, so they never equal a token. A
    header sent more than once is its first value: the Agent reads ``headers[name]`` (hyper's
    first value), so a token header sent twice counts by its first value there too (server.rs).
    """
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        path = raw_path.decode("utf-8", "replace").partition("?")[0]
    else:
        from urllib.parse import quote

        path = quote(str(scope.get("path", "")), safe="/:@!$&'()*+,;=-._~")
    query = bytes(scope.get("query_string") or b"").decode("utf-8", "replace")
    raw = scope.get("headers") or ()
    headers = {name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape") for name, value in raw}
    if len(headers) != len(raw):  # a repeated header: its first value, as the Agent's headers[name] reads it
        headers = {}
        for name, value in raw:
            headers.setdefault(bytes(name).decode("latin-1").lower(), bytes(value).decode("utf-8", "surrogateescape"))
    return Request(str(scope.get("method", "GET")), path, query, headers)


class AgentApp:
    """The ASGI app of ``secretcache serve``: every ``http`` request answered by ``answerer``.

    Also answers the ``lifespan`` protocol (start-up and shutdown complete at once: the cache's
    lifecycle belongs to whoever built it). Other scope types are ignored. Safe to share between
    the tasks of one event loop.

    Args:
        answerer: Parses and answers each request.
        max_conn: Connections allowed open at once (see the module docstring).
    """

    def __init__(self, answerer: Answerer, *, max_conn: int) -> None:
        self._answerer = answerer
        self._max_conn = max_conn
        self._starts: dict[int, tuple[Response, Message]] = {}  # a response's start message, built once

    def __repr__(self) -> str:
        return f"AgentApp({self._answerer!r}, max_conn={self._max_conn})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection scope."""
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        close = self._over_limit(scope)
        response = TOO_MANY if close else await self._answerer.handle(request_of(scope))
        known = self._starts.get(id(response))
        if known is not None and known[0] is response and not close:
            start = known[1]
        else:
            start = _start(response, close=close)
            if not close and response.status == 200:  # an answer served again; an error is made per request
                if len(self._starts) >= _MAX_STARTS:
                    self._starts.clear()
                self._starts[id(response)] = (response, start)  # holding the response keeps its id from being reused
        await send(start)
        await send({"type": "http.response.body", "body": response.body})

    def _over_limit(self, scope: Scope) -> bool:
        count = scope.get(OPEN_AT_ACCEPT)
        if not isinstance(count, int):
            return False
        allowed = self._max_conn + (_PING_ALLOWANCE if scope.get("path") == "/ping" else 0)
        return count > allowed


def _start(response: Response, *, close: bool) -> Message:
    """The ``http.response.start`` message of ``response`` (the server treats it as read-only)."""
    headers = [
        (b"content-type", response.content_type.encode("ascii")),
        (b"content-length", str(len(response.body)).encode("ascii")),
    ]
    if close:
        headers.append(_CLOSE)
    return {"type": "http.response.start", "status": response.status, "headers": headers}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, counting connections at accept and bounding each request's bytes and time.

    ``self.connections`` is uvicorn's set of the server's open connections (shared by every
    protocol of one server); it holds this connection once ``connection_made`` has run.

    uvicorn's httptools protocol bounds neither how long a request may take to arrive nor its
    size (its keep-alive timeout runs only between requests, and any byte received stops it). So a
    client sending a request slowly, or never finishing it, held its connection, and with it a
    place under ``--max-conn``, for ever, and a head of endless header lines was kept in memory.
    Here each request must arrive whole within :attr:`request_timeout` seconds of its first byte (a
    new connection's first request, of the accept), else ``408 Request Timeout`` and the connection
    is closed; and a request of more than :attr:`max_request_bytes` bytes is answered ``431``
    (a head that long) or has its connection closed (a body: the protocol's requests have none).
    The Agent's requests are a GET of a few hundred bytes.
    """

    request_timeout: float = 10.0
    """Seconds a request may take to arrive, head and body, from its first byte (or the accept)."""
    max_request_bytes: int = 65536
    """Longest request, head and body: a 2,048-character id percent-encoded three times over fits."""

    _open_at_accept = 0
    _request_timer: asyncio.TimerHandle | None = None
    _receiving = False  # a request has begun and is not complete yet
    _head_done = False
    _request_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connections open now, this one included; the first request's time starts."""
        super().connection_made(transport)
        self._open_at_accept = len(self.connections)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the request's timer."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a request past :attr:`max_request_bytes` that is not complete yet is refused."""
        self._request_bytes += len(data)
        super().data_received(data)
        if self._receiving and self._request_bytes > self.max_request_bytes and not self.transport.is_closing():
            if self._head_done:  # a body (the protocol's requests have none): its answer may be under way
                self._disarm()
                self.transport.close()
            else:
                self._refuse(431, b"Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        """Start a request's scope, with the count taken at accept; its time starts (unless the accept's runs)."""
        super().on_message_begin()
        cast("dict[str, Any]", self.scope)[OPEN_AT_ACCEPT] = self._open_at_accept
        self._receiving, self._head_done = True, False
        if self._request_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        """The head is whole; its body may follow."""
        self._head_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request arrived whole in time: its timer stops, the next request's bytes count afresh."""
        self._receiving = False
        self._request_bytes = 0
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.request_timeout, self._late)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _late(self) -> None:
        """The request did not arrive in time: 408 (unless an answer is being written) and close."""
        self._request_timer = None
        if self._head_done:  # its answer may be under way: no status line in the middle of it
            self.transport.close()
        else:
            self._refuse(408, b"Request Timeout")

    def _refuse(self, status: int, text: bytes) -> None:
        """Answer ``status`` with ``text`` and close, unless an earlier request's answer is still being written."""
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, text, len(text), text)
            )
        self.transport.close()
