"""A fault-injecting HTTP proxy for the test suite: throttling, 5xx, refusal, stalls, cut bodies.

It sits on a free loopback port in front of moto's threaded server, so boto3 talks real HTTP and
every fault is what a client would see on the wire. Faults are queued per request (``then``) or
set for every request (``always``); each request handled is counted, and so is each request
that reached the server.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

THROTTLE = (400, "ThrottlingException", "Rate exceeded")
INTERNAL = (500, "InternalServiceError", "An internal error occurred")
UNAVAILABLE = (503, "ServiceUnavailable", "Service unavailable")


class FaultProxy:
    """Forward HTTP requests to ``upstream`` (``host:port``) unless a fault says otherwise.

    Faults: ``("status", (code, error_type, message))``, ``("html", status)`` (an HTML page, as a
    proxy or WAF sends), ``("stall", seconds)`` (read the request, answer nothing, close after
    ``seconds``, or once ``seconds``, an event, is set), ``("cut", None)`` (forward, then send
    half the body and close), ``("slow", seconds)`` (forward after a delay), ``("hold", event)``
    (set :attr:`holding`, then forward once ``event`` is set), ``("answer", text)`` (a 200 whose
    JSON body is ``text``, complete as sent, however broken its content), ``("raw", (status,
    text))`` (the same with another status: a proxy's answer that is no AWS error).
    :meth:`stop_listening` makes the port refuse connections until :meth:`listen` again. Each
    forwarded answer closes its connection, unless ``keep_alive``: then the client may keep it
    open and send more requests on it.
    """

    def __init__(self, upstream: str, *, keep_alive: bool = False) -> None:
        self.upstream_host, port = upstream.removeprefix("http://").split(":")
        self.upstream_port = int(port)
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, Any]] = deque()
        self._always: tuple[str, Any] | None = None
        self.seen = 0
        self.forwarded = 0
        self.holding = threading.Event()  # a request is held by a ("hold", event) fault
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._server: ThreadingHTTPServer | None = None
        self.listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def then(self, *faults: tuple[str, Any]) -> None:
        """Apply these faults to the next requests, one each."""
        with self._lock:
            self._queue.extend(faults)

    def always(self, fault: tuple[str, Any] | None) -> None:
        """Apply ``fault`` to every request (``None``: forward normally)."""
        with self._lock:
            self._always = fault

    def _next_fault(self) -> tuple[str, Any] | None:
        with self._lock:
            self.seen += 1
            return self._queue.popleft() if self._queue else self._always

    def listen(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, content_type: str, text: str) -> None:
                """Answer in place of the server, then close the connection."""
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next_fault()
                kind, arg = fault if fault else ("pass", None)
                if kind == "status":
                    code, error_type, message = arg
                    error = f'{{"__type": "{error_type}", "message": "{message}"}}'
                    self._answer(code, "application/x-amz-json-1.1", error)
                    return
                if kind == "answer":  # a 200 in place of the server: what only the wire can hold
                    self._answer(200, "application/x-amz-json-1.1", arg)
                    return
                if kind == "raw":
                    self._answer(arg[0], "application/x-amz-json-1.1", arg[1])
                    return
                if kind == "html":  # a proxy or WAF answering for the service: no AWS error body
                    self._answer(arg, "text/html", f"<html><body><h1>{arg} Forbidden</h1></body></html>")
                    return
                if kind == "stall":
                    if isinstance(arg, threading.Event):
                        arg.wait(30)
                    else:
                        time.sleep(arg)
                    self.close_connection = True
                    return
                if kind == "slow":
                    time.sleep(arg)
                if kind == "hold":  # forward once the test sets the event (an attempt in progress)
                    proxy.holding.set()
                    if not arg.wait(30):
                        self.close_connection = True
                        return
                status, headers, answer = proxy._forward(self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                # One request per connection, so stop_listening() really refuses the next one.
                if not proxy.keep_alive:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = not proxy.keep_alive
                if kind == "cut":
                    self.wfile.write(answer[: len(answer) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(answer)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            self.forwarded += 1
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=10)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        self.stop_listening()
