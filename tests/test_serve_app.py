"""The ASGI app of ``secretcache serve``: scope to Request, answers over a real cache in moto, the 429 rule, lifespan.

Requests go through httpx's ASGITransport (no socket); the connection count that uvicorn's
protocol subclass puts in the scope is set by hand here (the process tests check the real one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from secretcache import SecretCache
from secretcache.serve._app import OPEN_AT_ACCEPT, AgentApp, request_of
from secretcache.serve._protocol import Answerer, Request
from tests.conftest import WATCHDOG, Calls

TOKEN = "tok-app-0b1c"
VALUE = "app-VALUE-5f5f"


@pytest.fixture
def app(client: Any, admin: Any) -> Iterator[AgentApp]:
    """The app over a SecretCache of in-process moto, with one secret ``app/db``."""
    admin.create_secret(Name="app/db", SecretString=VALUE)
    with SecretCache(client) as cache:
        yield AgentApp(Answerer(cache, token=TOKEN), max_conn=2)


def test_request_of_keeps_the_raw_path_and_query_and_a_repeated_headers_first_value() -> None:
    """raw_path stays percent-encoded without its query; names are lower-cased; a repeated header is its first value."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/app/db",
        "raw_path": b"/v1/app%2Fdb",
        "query_string": b"versionStage=AWS%20X&refreshNow=1",
        "headers": [(b"X-Vault-Token", b"a"), (b"x-vault-token", b"b"), (b"accept", b"\xff")],
    }
    request = request_of(scope)
    assert request == Request(
        "GET",
        "/v1/app%2Fdb",
        "versionStage=AWS%20X&refreshNow=1",
        {"x-vault-token": "a", "accept": "\udcff"},
    )
    assert request_of({"type": "http", "method": "GET", "path": "/v1/a b"}).path == "/v1/a%20b"  # no raw_path


@pytest.mark.parametrize(
    ("values", "status"),
    [([TOKEN, "other"], 200), ([TOKEN, TOKEN], 200), (["other", TOKEN], 403)],
)
def test_a_token_header_sent_twice_is_read_as_the_agent_reads_it(app: AgentApp, values: list[str], status: int) -> None:
    """A token header sent twice counts by its first value, as the Agent's headers[name] reads it (server.rs)."""
    headers = [("X-Aws-Parameters-Secrets-Token", value) for value in values]
    response = _get(app, "/secretsmanager/get?secretId=app/db", headers)
    assert response.status_code == status


def _get(
    app: AgentApp, target: str, headers: dict[str, str] | list[tuple[str, str]] | None = None, method: str = "GET"
) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:2773") as client:
            return await client.request(method, target, headers=headers)

    return asyncio.run(asyncio.wait_for(send(), WATCHDOG))


def test_a_read_is_the_get_secret_value_body_with_its_headers(app: AgentApp, client: Any) -> None:
    """A GET with the token returns the GetSecretValue JSON, its content-type and length; a second is a cache hit."""
    calls = Calls(client)
    for _ in range(2):
        response = _get(app, "/secretsmanager/get?secretId=app/db", {"X-Aws-Parameters-Secrets-Token": TOKEN})
        assert response.status_code == 200
        assert json.loads(response.content)["SecretString"] == VALUE
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-length"] == str(len(response.content))
    assert calls["GetSecretValue"] == 1
    by_path = _get(app, "/v1/app%2Fdb", {"X-Aws-Parameters-Secrets-Token": TOKEN})
    assert json.loads(by_path.content)["Name"] == "app/db"


@pytest.mark.parametrize(
    ("method", "target", "headers", "status", "body"),
    [
        ("GET", "/secretsmanager/get?secretId=app/db", {}, 403, b"Bad Token"),
        (
            "DELETE",
            "/secretsmanager/get?secretId=app/db",
            {"X-Aws-Parameters-Secrets-Token": TOKEN},
            405,
            b"Not allowed",
        ),
        ("GET", "/ping", {}, 200, b"healthy"),
    ],
)
def test_protocol_answers_pass_through(
    app: AgentApp, method: str, target: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    """What the Answerer decides is what goes on the wire, as text/plain."""
    response = _get(app, target, headers, method)
    assert (response.status_code, response.content, response.headers["content-type"]) == (status, body, "text/plain")


def test_only_answers_served_again_keep_their_start_message(app: AgentApp) -> None:
    """A success's start message is built once and kept; an error's (a new answer per request,
    whose body names what was asked) is not, so failing requests leave nothing behind."""
    headers = {"X-Aws-Parameters-Secrets-Token": TOKEN}
    for number in range(20):
        assert _get(app, f"/v1/missing-{number}", headers).status_code in (400, 404)  # moto answers 404
    assert len(app._starts) == 0
    assert _get(app, "/v1/app/db", headers).status_code == 200
    assert _get(app, "/v1/app/db", headers).status_code == 200
    assert len(app._starts) == 1


async def _call(app: AgentApp, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("path", "open_at_accept", "status"),
    [
        ("/secretsmanager/get", 2, 400),  # within --max-conn 2: answered (missing secretId)
        ("/secretsmanager/get", 3, 429),
        ("/ping", 4, 200),  # health checks get two more, as in the Agent
        ("/ping", 5, 429),
    ],
)
def test_a_connection_accepted_past_max_conn_gets_429_and_close(
    app: AgentApp, path: str, open_at_accept: int, status: int
) -> None:
    """The count taken at accept decides: past the limit, 429 'Connection limit exceeded' and connection: close."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"x-aws-parameters-secrets-token", TOKEN.encode())],
        OPEN_AT_ACCEPT: open_at_accept,
    }
    start, body = asyncio.run(asyncio.wait_for(_call(app, scope), WATCHDOG))
    assert start["status"] == status
    closes = (b"connection", b"close") in start["headers"]
    assert closes == (status == 429)
    if status == 429:
        assert body["body"] == b"Connection limit exceeded"


def test_lifespan_completes_startup_and_shutdown(app: AgentApp) -> None:
    """The lifespan protocol is answered: startup.complete, then shutdown.complete and the app returns."""
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(events)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    asyncio.run(asyncio.wait_for(app({"type": "lifespan"}, receive, send), WATCHDOG))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_accepted_connections_send_without_nagle_delay() -> None:
    """Connections accepted on the sockets ``serve`` binds have TCP_NODELAY (else ~40 ms per keep-alive request)."""
    import socket

    from secretcache.serve._config import ServeConfig
    from secretcache.serve._server import _bind

    sockets = _bind(ServeConfig(port=0, binds=("127.0.0.1",), binds_given=True))
    nodelay: list[int] = []

    async def accept_one() -> None:
        accepted = asyncio.Event()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                nodelay.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                accepted.set()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sockets[0])
        async with server:
            _, writer = await asyncio.open_connection(*sockets[0].getsockname()[:2])
            await asyncio.wait_for(accepted.wait(), WATCHDOG)
            writer.close()

    asyncio.run(accept_one())
    assert nodelay == [1]
