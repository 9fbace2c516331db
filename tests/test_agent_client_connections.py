"""secretcache.agent.AgentClient: its connections, refused, hung, broken or closed, across threads and a fork.

The server and the fixtures are tests/agent_client.py's.
"""

from __future__ import annotations

import http.client
import itertools
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from secretcache import RetryPolicy, SecretCache, SecretUnavailableError
from secretcache.agent import MAX_BODY, AgentClient
from tests.agent_client import RETRY, VALUE, cache_of
from tests.agent_client import client as client  # a fixture
from tests.agent_client import standin as standin  # a fixture
from tests.agent_standin import TOKEN, AgentStandIn
from tests.conftest import WATCHDOG
from tests.leaks import assert_value_absent


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_connection_refused_past_max_conn_is_not_reused(client: AgentClient, standin: AgentStandIn) -> None:
    """After a 429 the next request goes on a new connection: the Agent counts a connection once, when it
    accepts it, and answers 429 to every request on one it accepted past max_conn (server.rs)."""
    standin.max_conn = 1
    held = http.client.HTTPConnection("127.0.0.1", int(standin.url.rsplit(":", 1)[1]), timeout=WATCHDOG)
    try:
        held.request("GET", "/ping")
        assert held.getresponse().read() == b"healthy"  # accepted and counted: the limit is reached
        with pytest.raises(ClientError) as refused:
            client.get_secret_value(SecretId="app/db")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        standin.max_conn = 3  # room again, for connections accepted from now on
        assert client.get_secret_value(SecretId="app/db")["SecretString"] == VALUE
    finally:
        held.close()
    first, second = standin.gets()
    assert first.port != second.port


def test_connection_refused_is_unavailable_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listening: every attempt fails at once, the cache retries, then SecretUnavailableError (no hang)."""
    with AgentClient(f"http://127.0.0.1:{free_port()}", TOKEN, connect_timeout=0.5, read_timeout=0.5) as agent:
        cache = cache_of(agent)
        with cache, pytest.raises(SecretUnavailableError, match="retries exhausted") as caught:
            cache.get_secret_string("app/db")
        assert cache.stats().api_calls == {"GetSecretValue": RETRY.attempts}
    assert isinstance(caught.value.__cause__, EndpointConnectionError)


def test_hung_server_times_out_and_is_retried(client: AgentClient, standin: AgentStandIn) -> None:
    """A server that does not answer within read_timeout is a transient ReadTimeoutError, retried, then unavailable."""
    standin.hold = True
    with AgentClient(standin.url, TOKEN, read_timeout=0.2) as agent:
        cache = SecretCache(client=agent, retry=RetryPolicy(attempts=2, initial_delay=0, max_delay=0))
        with cache, pytest.raises(SecretUnavailableError) as caught:
            cache.get_secret_string("app/db")
    assert len(standin.gets()) == 2
    assert isinstance(caught.value.__cause__, ReadTimeoutError)


def test_broken_connection_is_transient(client: AgentClient, standin: AgentStandIn) -> None:
    """A connection closed before the answer becomes botocore's ConnectionClosedError, which the cache retries."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with AgentClient(f"http://127.0.0.1:{port}", TOKEN, read_timeout=5) as agent:

            def close_each() -> None:
                for _ in range(2):
                    conn, _addr = listener.accept()
                    conn.recv(4096)
                    conn.close()

            closer = threading.Thread(target=close_each, daemon=True)
            closer.start()
            cache = SecretCache(client=agent, retry=RetryPolicy(attempts=2, initial_delay=0, max_delay=0))
            with cache, pytest.raises(SecretUnavailableError) as caught:
                cache.get_secret_string("app/db")
            closer.join(5)
    assert isinstance(caught.value.__cause__, ConnectionClosedError)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_connection_broken_mid_body_holds_no_body_byte(
    client: AgentClient, standin: AgentStandIn, framing: str
) -> None:
    """A connection that breaks after the value was sent is a transient ConnectionClosedError holding none of the body.

    http.client's IncompleteRead holds the bytes read (the value); neither the client's error nor
    the cache's (raised, then remembered) may reach it by any chain, argument or attribute.
    """
    standin.cut_next(framing)
    with pytest.raises(ConnectionClosedError) as direct:
        client.get_secret_value(SecretId="app/db")
    errors: list[BaseException] = [direct.value]
    with cache_of(client) as cache:
        standin.cut_next(*[framing] * RETRY.attempts)
        for _ in range(2):  # the failure, then the same failure remembered
            with pytest.raises(SecretUnavailableError, match="Connection was closed") as caught:
                cache.get_secret_string("app/db")
            errors.append(caught.value)
        standin.cut_next(framing)
        assert cache.get_secret_string("app/db", force_refresh=True) == VALUE  # retried past the cut
    for error in errors:
        for body_part in (VALUE, '{"ARN":"'):
            assert_value_absent(error, body_part)
    assert direct.value.__context__ is None
    assert len(standin.gets()) == 1 + RETRY.attempts + 2


def test_close_on_another_thread_fails_no_request(client: AgentClient, standin: AgentStandIn) -> None:
    """close() while other threads read: every request is answered once, none fails on the pool close() closed."""
    failures: list[BaseException] = []

    def read() -> None:
        for _ in range(50):
            try:
                client.get_secret_value(SecretId="app/db")
            except Exception as err:
                failures.append(err)

    readers = [threading.Thread(target=read, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    closes = 0
    while any(reader.is_alive() for reader in readers) and closes < 1_000_000:
        client.close()
        closes += 1
    for reader in readers:
        reader.join(30)
    assert [f"{type(err).__name__}: {err}" for err in failures] == []
    assert closes > 0
    assert len(standin.gets()) == 4 * 50  # none sent twice


def test_import_secretcache_does_not_load_the_client() -> None:
    """import secretcache leaves secretcache.agent unloaded; it is importable as a public module."""
    code = "import sys, secretcache; print('secretcache.agent' in sys.modules); import secretcache.agent"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from secretcache.agent import AgentClient

    client = AgentClient(sys.argv[1], sys.argv[2])
    client.get_secret_value(SecretId="app/db")
    pid = os.fork()
    if pid == 0:
        client.get_secret_value(SecretId="app/db")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    client.get_secret_value(SecretId="app/db")
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_opens_its_own_connection(standin: AgentStandIn, tmp_path: Path) -> None:
    """After a fork the child reads over a new connection, and the parent keeps reusing its own."""
    script = tmp_path / "fork_client.py"
    script.write_text(FORK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    result = subprocess.run(
        [sys.executable, str(script), standin.url, TOKEN], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    parent, child, parent_again = (seen.port for seen in standin.gets())
    assert child != parent
    assert parent_again == parent


class _RawServer:
    """A loopback server answering each request with ``head`` then ``body_parts``, one part every ``gap`` seconds.

    It stops sending when the client closes the connection, and after the watchdog at the latest;
    ``sent`` counts the body bytes the client took before it closed.
    """

    def __init__(self, head: bytes, body_parts: Iterator[bytes], gap: float = 0.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._head, self._parts, self._gap = head, body_parts, gap
        self.sent = 0
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.recv(65536)
            deadline = time.monotonic() + WATCHDOG
            try:
                conn.sendall(self._head)
                for part in self._parts:
                    if time.monotonic() > deadline or self.stopped.wait(self._gap):
                        break
                    conn.sendall(part)
                    self.sent += len(part)
            except OSError:  # the client closed the connection
                pass

    def close(self) -> None:
        self.stopped.set()
        self._thread.join(WATCHDOG)
        self._listener.close()


def test_an_answer_trickled_byte_by_byte_times_out_at_the_calls_deadline() -> None:
    """A server sending one body byte now and then cannot hold a call past connect + read timeout: ReadTimeoutError.

    Each byte comes well within read_timeout, so a per-read timeout alone never fires; the call's
    deadline does (before it, the request waited as long as the server kept trickling).
    """
    server = _RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", itertools.repeat(b" "), gap=0.02)
    try:
        with (
            AgentClient(server.url, TOKEN, connect_timeout=0.1, read_timeout=0.3) as agent,
            pytest.raises(ReadTimeoutError) as caught,
        ):
            agent.get_secret_value(SecretId="app/db")
    finally:
        server.close()
    assert caught.value.__context__ is None
    assert server.sent < 100000


@pytest.mark.parametrize("status", [200, 500])
def test_an_endless_body_is_not_read_past_max_body(status: int) -> None:
    """An answer longer than MAX_BODY is refused after MAX_BODY bytes: memory stays bounded whatever the server sends.

    A 200 is a ResponseParserError (retried), an error status a ClientError with that status;
    neither quotes a byte of the body.
    """
    head = b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n" % status
    chunk = b"x" * 65536
    server = _RawServer(head, itertools.repeat(b"%x\r\n%s\r\n" % (len(chunk), chunk), 1024))  # 64 MiB at most
    try:
        with AgentClient(server.url, TOKEN) as agent, pytest.raises((ResponseParserError, ClientError)) as caught:
            agent.get_secret_value(SecretId="app/db")
    finally:
        server.close()
    assert f"longer than {MAX_BODY} bytes" in str(caught.value) or f"more than {MAX_BODY} bytes" in str(caught.value)
    if status != 200:
        assert isinstance(caught.value, ClientError)
        assert caught.value.response["Error"]["Code"] == "500"
    assert "xxxx" not in str(caught.value)
    assert server.sent < 32 * MAX_BODY  # the rest was never read (socket buffers hold a few MiB)
