"""``secretcache serve`` on the network: who can reach it, and what any bytes on the wire get back.

Bound to loopback (the default), the server refuses a connection made to this host's other
address; bound there with ``--allow-remote``, it answers there. A fuzz of raw requests (query
strings, header values, bytes no client should send) never gets a 500 or makes the server print
a traceback, and no answer or output holds the token. A request that never finishes arriving
is answered 408 and closed, one that never ends 431 (uvicorn in a thread, a shortened timeout).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretcache import SecretCache
from secretcache.serve._app import AgentApp, LimitedHttpToolsProtocol
from secretcache.serve._protocol import Answerer
from tests.conftest import WATCHDOG
from tests.serveproc import TOKEN, ServeProcess, accepts, base_env, start_serve


def non_loopback_address() -> str | None:
    """This host's IPv4 address on its default route, or ``None`` if it has none (connecting UDP sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # TEST-NET-2: only the route is looked up
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture
def address() -> str:
    """This host's non-loopback address; the test needs one (under CI it must be there)."""
    found = non_loopback_address()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("this host has no non-loopback IPv4 address to test refusals with")
        pytest.skip("this host has no non-loopback IPv4 address")
    return found


def test_bound_to_loopback_a_connection_to_another_address_is_refused(address: str, tmp_path: Path) -> None:
    """The default binding answers on 127.0.0.1 only: this host's own non-loopback address is refused."""
    served = start_serve(["--bind", "127.0.0.1"], base_env(AWS_TOKEN=TOKEN), tmp_path)
    try:
        assert accepts(served.port, "127.0.0.1")
        assert not accepts(served.port, address)
    finally:
        assert served.stop() == 0


def test_another_address_needs_allow_remote_and_then_answers_there_only(address: str, tmp_path: Path) -> None:
    """``--bind ADDR --allow-remote`` listens on that address alone; the token still guards it."""
    served = start_serve(["--bind", address, "--allow-remote"], base_env(AWS_TOKEN=TOKEN), tmp_path)
    try:
        assert not accepts(served.port, "127.0.0.1")
        assert raw(served, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", host=address).startswith(b"HTTP/1.1 200")
        answer = raw(served, b"GET /secretsmanager/get?secretId=a HTTP/1.1\r\nHost: x\r\n\r\n", host=address)
        assert answer.startswith(b"HTTP/1.1 403")
    finally:
        assert served.stop() == 0


def raw(served: ServeProcess, request: bytes, *, host: str = "127.0.0.1") -> bytes:
    """Send ``request`` as is on a new connection; return everything read until the server closes or 64 KiB."""
    with socket.create_connection((host, served.port), timeout=WATCHDOG) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


@pytest.fixture(scope="module")
def fuzzed(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for the fuzz, reading through the session's moto server (unknown ids: AWS errors)."""
    workdir = tmp_path_factory.mktemp("serve-fuzz")
    env = base_env(AWS_TOKEN=TOKEN)
    served = start_serve(["--bind", "127.0.0.1", "--endpoint-url", moto_server, "--log-level", "debug"], env, workdir)
    yield served
    assert served.stop() == 0
    output = served.output()
    assert "Traceback" not in output
    assert TOKEN not in output


_BYTES = st.binary(max_size=64)
_TEXT = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=40)
_TARGETS = st.sampled_from([b"/secretsmanager/get?", b"/v1/", b"/v1/a?", b"/ping?", b"/", b"/secretsmanager/get"])
_NAMES = st.sampled_from([b"secretId", b"versionId", b"versionStage", b"refreshNow", b"", b"x", b"secretId[]"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A request line and headers a client might, or should never, send."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"get", b"DELETE"]))
    query = b"&".join(
        draw(_NAMES) + b"=" + draw(_BYTES | _TEXT.map(str.encode)) for _ in range(draw(st.integers(0, 3)))
    )
    target = (draw(_TARGETS) + query).replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")
    token = draw(st.sampled_from([TOKEN.encode(), b"", b"wrong", draw(_BYTES).replace(b"\r", b"").replace(b"\n", b"")]))
    headers = [b"Host: x", b"X-Aws-Parameters-Secrets-Token: " + token]
    if draw(st.booleans()):
        name = draw(st.sampled_from([b"X-Forwarded-For", b"X-Vault-Token", b"Content-Length", b"Transfer-Encoding"]))
        headers.append(name + b": " + draw(_BYTES).replace(b"\r", b"").replace(b"\n", b""))
    return method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_fuzzed_requests_never_get_a_500(fuzzed: ServeProcess, request: bytes) -> None:
    """Whatever arrives, the answer is a status the protocol defines (or uvicorn's 400), never a 5xx but 502/504."""
    answer = raw(fuzzed, request)
    assert fuzzed.process.poll() is None, fuzzed.output()
    if not answer:  # uvicorn closes a connection whose request it cannot parse at all
        return
    status = answer.split(b" ", 2)[1]
    assert status in {b"200", b"400", b"403", b"404", b"405", b"422"}, answer[:300]
    assert TOKEN.encode() not in answer


class _QuickProtocol(LimitedHttpToolsProtocol):
    request_timeout = 0.3  # the real 10 s, shortened so the test waits little


@pytest.fixture
def quick_server(client: Any) -> Iterator[int]:
    """uvicorn in a thread with the server's protocol (a request timeout of 0.3 s), ``--max-conn 2``; its port."""
    with SecretCache(client) as cache:
        config = uvicorn.Config(
            AgentApp(Answerer(cache, token=None), max_conn=2),
            http=_QuickProtocol,
            lifespan="on",
            access_log=False,
            log_config=None,
        )
        server = uvicorn.Server(config)
        sock = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            pause = threading.Event()  # never set: a bounded sleep
            for _ in range(int(WATCHDOG / 0.01)):
                if server.started:
                    break
                pause.wait(0.01)
            assert server.started
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            thread.join(WATCHDOG)
            sock.close()
    assert not thread.is_alive()


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes it (a socket timeout past the watchdog fails)."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_requests_that_never_finish_arriving_are_closed_and_free_their_places(quick_server: int) -> None:
    """Connections sending part of a request, or nothing, get 408 and are closed; they no longer hold places for ever.

    Before, under --max-conn 2, three such connections kept every later connection at 429 for as
    long as their client kept them open.
    """
    partial = [b"", b"GET /ping HTTP/1.1\r\nHo", b"GET /secretsmanager/get?secretId=a"]
    held = [socket.create_connection(("127.0.0.1", quick_server), timeout=WATCHDOG) for _ in partial]
    try:
        for sock, sent in zip(held, partial, strict=True):
            sock.sendall(sent)
        answers = [_until_closed(sock) for sock in held]
    finally:
        for sock in held:
            sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
    with socket.create_connection(("127.0.0.1", quick_server), timeout=WATCHDOG) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _until_closed(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("flood", ["headers", "one header", "target"])
def test_a_request_head_without_end_is_refused_431_past_max_request_bytes(quick_server: int, flood: str) -> None:
    """Header lines without end, one endless header or an endless target: closed (431) after 64 KiB, not kept.

    The server closes with the rest unread, so the kernel may reset the connection and drop the
    431 before the client reads it: the closing is what is checked, and the answer if one arrives.
    """
    start, line = {
        "headers": (b"GET /ping HTTP/1.1\r\n", b"X-Flood: " + b"a" * 1000 + b"\r\n"),
        "one header": (b"GET /ping HTTP/1.1\r\nX-Flood: ", b"a" * 1000),
        "target": (b"GET /secretsmanager/get?secretId=", b"a" * 1000),
    }[flood]
    limit = 4 << 20  # 4 MiB: 64 times the limit
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", quick_server), timeout=WATCHDOG) as sock:
        try:
            sock.sendall(start)
            while sent < limit:
                sock.sendall(line)
                sent += len(line)
        except OSError:  # the server closed the connection
            pass
        with contextlib.suppress(OSError):
            answer = _until_closed(sock)
    assert sent < limit
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:100]
