"""A stand-in for the AWS Secrets Manager Agent: its documented answers, byte for byte, from a threading HTTP server.

The bodies and statuses are those of the Agent's source (aws/aws-secretsmanager-agent,
``aws_secretsmanager_agent/src``): ``server.rs`` (the checks and their order: connection limit
-> 429, then the token, ``X-Forwarded-For`` -> 400 ``Forwarded``, a wrong or missing token -> 403
``Bad Token``, then the method -> 405 ``Not allowed``, then the path: ``/ping`` -> ``healthy``,
unknown -> 404 ``Not found``); ``parse.rs`` (``unknown parameter: NAME``, ``missing parameter
secretId``, ``invalid refreshNow value``); ``utils.rs`` ``err_response`` (an AWS error passed on
as ``{"__type":"CODE", "message":"MSG"}``, with that space after the comma, and
``{"__type":"InternalFailure"}``); ``cache_manager.rs`` (a timeout -> 504 ``TimeoutError``/
``Timeout``, a connection failure -> 502 ``ConnectionError``/``Read Error``); and the success
body, ``serde_json::to_string`` of ``GetSecretValueOutputDef``
(``aws_secretsmanager_caching/src/output/get_secret_value_output.rs``): compact, fields in that
order, ``SecretBinary`` in base64, ``CreatedDate`` epoch seconds *in a string*
(``"1569534789.046"``, as the Agent's own tests assert). Plain-text answers carry no
``Content-Type``, as hyper sends them.

Tests script what the Agent would answer (``fail_next``, ``outage``), or a connection that breaks
in the middle of a success body (``cut_next``), set its connection limit (``max_conn``: counted
once per connection, when it is accepted, and a connection accepted past it is answered 429 on
every request while it stays open, as ``server.rs`` does), and read what it was sent
(``requests``: path, query, lower-cased headers and the client's port, one per request).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TOKEN = "standin-token-8f3e"
ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:{name}-NhBWsc"  # the Agent's FAKE_ARN
VERSION = "5767290c-d089-49ed-b97c-17086f8c9d79"  # the Agent's DEFAULT_VERSION
CREATED = "1569534789.046"  # the Agent's test CreatedDate

NOT_FOUND = (
    400,
    b'{"__type":"ResourceNotFoundException", "message":"Secrets Manager can\'t find the specified secret."}',
)
KMS_DENIED = (400, b'{"__type":"AccessDeniedException", "message":"Access to KMS is not allowed"}')
INTERNAL = (500, b'{"__type":"InternalFailure"}')
BAD_GATEWAY = (502, b'{"__type":"ConnectionError", "message":"Read Error"}')
GATEWAY_TIMEOUT = (504, b'{"__type":"TimeoutError", "message":"Timeout"}')
TOO_MANY = (429, b"Connection limit exceeded")
BAD_TOKEN = (403, b"Bad Token")
FORWARDED = (400, b"Forwarded")
NOT_ALLOWED = (405, b"Not allowed")
NO_PATH = (404, b"Not found")
UNKNOWN_PARAMETER = (400, b"unknown parameter: abc")


@dataclass(frozen=True)
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    port: int


@dataclass
class Secret:
    """A secret the stand-in knows: a string or a binary value, and its version."""

    name: str
    string: str | None = None
    binary: bytes | None = None
    version: str = VERSION
    stages: list[str] = field(default_factory=lambda: ["AWSCURRENT"])

    def body(self) -> bytes:
        """The Agent's success body for this secret."""
        fields: dict[str, object] = {"ARN": ARN.format(name=self.name), "Name": self.name, "VersionId": self.version}
        if self.string is not None:
            fields["SecretString"] = self.string
        if self.binary is not None:
            fields["SecretBinary"] = base64.b64encode(self.binary).decode("ascii")
        fields["VersionStages"] = self.stages
        fields["CreatedDate"] = CREATED
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class AgentStandIn:
    """The stand-in server. Thread-safe; ``url`` once started (:func:`running`)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.secrets: dict[str, Secret] = {}
        self.requests: list[Seen] = []
        self.outage: tuple[int, bytes] | None = None  # answered to every secret request while set
        self.delay = threading.Event()  # while clear and hold is set, requests wait (a hung server)
        self.hold = False
        self._next: deque[tuple[int, bytes]] = deque()
        self._cuts: deque[str] = deque()
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.max_conn: int | None = None  # None: no limit
        self._open_count = 0
        self._over: set[int] = set()  # fds of the open connections accepted past max_conn

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, name: str, string: str | None = None, binary: bytes | None = None, **kwargs: object) -> Secret:
        """Make ``name`` a known secret."""
        secret = self.secrets[name] = Secret(name, string, binary, **kwargs)  # type: ignore[arg-type]
        return secret

    def fail_next(self, *answers: tuple[int, bytes]) -> None:
        """Answer the next secret requests (past the token check) with ``answers``, in order."""
        with self._lock:
            self._next.extend(answers)

    def cut_next(self, *framings: str) -> None:
        """Break the next success answers after their value: the head, the body up to ``VersionStages``, then close.

        Each of ``framings`` frames one answer: ``"length"`` (a ``Content-Length`` of the whole body)
        or ``"chunked"`` (the part sent is the first chunk of a chunked body).
        """
        with self._lock:
            self._cuts.extend(framings)

    def accepted(self, fd: int) -> None:
        """Count a connection just accepted, and mark it refused if it is past ``max_conn`` (server.rs, at accept)."""
        with self._lock:
            self._open_count += 1
            if self.max_conn is not None and self._open_count > self.max_conn:
                self._over.add(fd)

    def closed(self, fd: int) -> None:
        """Forget a connection the server has closed."""
        with self._lock:
            self._open_count -= 1
            self._over.discard(fd)

    def take_cut(self) -> str | None:
        """The framing of the next cut, if one is scripted (taken once)."""
        with self._lock:
            return self._cuts.popleft() if self._cuts else None

    def gets(self) -> list[Seen]:
        """The requests for a secret received so far."""
        with self._lock:
            return [seen for seen in self.requests if seen.path == "/secretsmanager/get"]

    def answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        """What the Agent answers this request, in its order of checks."""
        parts = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append(
                Seen(handler.command, parts.path, dict(parse_qsl(parts.query)), headers, handler.client_address[1])
            )
        if self.hold:
            self.delay.wait(10)
        with self._lock:
            refused = handler.connection.fileno() in self._over
        if refused:
            return TOO_MANY
        if parts.path != "/ping":
            if "x-forwarded-for" in headers:
                return FORWARDED
            if self.token not in (headers.get("x-aws-parameters-secrets-token"), headers.get("x-vault-token")):
                return BAD_TOKEN
        if handler.command != "GET":
            return NOT_ALLOWED
        if parts.path == "/ping":
            return 200, b"healthy"
        if parts.path != "/secretsmanager/get":
            return NO_PATH
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in ("secretId", "versionId", "versionStage", "refreshNow"):
                return 400, f"unknown parameter: {key}".encode()
            if key == "refreshNow" and value.lower() not in ("true", "1", "false", "0"):
                return 400, b"invalid refreshNow value"
            query[key] = value
        if not query.get("secretId"):
            return 400, b"missing parameter secretId"
        with self._lock:
            scripted = self._next.popleft() if self._next else self.outage
        if scripted is not None:
            return scripted
        secret = self.secrets.get(query["secretId"])
        return NOT_FOUND if secret is None else (200, secret.body())


def _handler(standin: AgentStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as hyper serves

        def _reply(self) -> None:
            status, body = standin.answer(self)
            framing = standin.take_cut() if status == 200 and self.path.startswith("/secretsmanager/get") else None
            if framing is not None:
                self._cut(body, framing)
                return
            self.send_response_only(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Date", self.date_time_string())
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # a client that timed out has gone
                self.wfile.write(body)

        def _cut(self, body: bytes, framing: str) -> None:
            sent = body[: body.index(b',"VersionStages"')]  # the value is in it, the rest of the body is not
            self.send_response_only(200)
            if framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(sent), sent))
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(sent)
            self.wfile.flush()
            self.close_connection = True  # the handler closes the connection when it returns

        do_GET = do_POST = do_PUT = do_DELETE = _reply

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows stderr

    return Handler


class _Server(ThreadingHTTPServer):
    """The threading server, telling the stand-in of each connection accepted and closed."""

    standin: AgentStandIn

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the connection on the accepting thread, in the order of accepts (as server.rs counts)."""
        self.standin.accepted(request.fileno())
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Uncount it, before its descriptor can be reused."""
        self.standin.closed(request.fileno())
        super().shutdown_request(request)


@contextmanager
def running(standin: AgentStandIn | None = None, port: int = 0) -> Iterator[AgentStandIn]:
    """Serve ``standin`` (a new one by default) on 127.0.0.1 until the block ends."""
    standin = standin or AgentStandIn()
    server = _Server(("127.0.0.1", port), _handler(standin))
    server.standin = standin
    server.daemon_threads = True
    standin.server = server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        standin.delay.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
