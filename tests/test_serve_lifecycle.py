"""``secretcache serve``'s lifecycle as a process: refusals at start, the connection limit, SIGTERM mid-request.

Each test starts its own server (it stops or limits it); every wait is bounded by the watchdog.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from secretcache.__main__ import main
from tests.conftest import REGION, WATCHDOG
from tests.faultproxy import FaultProxy
from tests.serveproc import TOKEN, base_env, free_port, start_serve

VALUE = "slow-VALUE-52aa"


def test_refuses_to_start_without_a_token(moto_server: str) -> None:
    """No token variable: exit 1 with one line naming the three variables, and nothing listens."""
    port = free_port()
    command = [sys.executable, "-m", "secretcache", "serve", "--port", str(port), "--endpoint-url", moto_server]
    result = subprocess.run(command, env=base_env(), capture_output=True, text=True, timeout=WATCHDOG, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("secretcache: error: no SSRF token")
    for variable in ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        assert variable in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--bind", "0.0.0.0"],  # noqa: S104 - refused, never bound
            "--bind 0.0.0.0 is not a loopback address: add --allow-remote",
        ),
        (["--port", "70000"], "--port='70000' is not a port number"),
        (["--ttl", "soon"], "--ttl='soon' is not a number"),
    ],
)
def test_bad_settings_are_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    """A non-loopback address without --allow-remote, or a bad value, stops the command before anything starts."""
    monkeypatch.setenv("AWS_TOKEN", TOKEN)
    assert main(["serve", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert message in captured.err
    assert TOKEN not in captured.err


def _held_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WATCHDOG)


def _exchange(sock: socket.socket, target: str, token: str | None = TOKEN) -> tuple[int, bytes, bool]:
    """Send one GET on ``sock``; return the status, body and whether the server closed the connection after it."""
    header = f"X-Aws-Parameters-Secrets-Token: {token}\r\n" if token else ""
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{header}\r\n".encode())
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    return response.status, body, response.will_close


def test_connections_past_max_conn_get_429(moto_server: str, tmp_path: Path) -> None:
    """--max-conn 2: a request on a third open connection is 429 and closed (/ping has two more); a close frees one."""
    server = start_serve(["--endpoint-url", moto_server, "--max-conn", "2"], base_env(AWS_TOKEN=TOKEN), tmp_path)
    try:
        first, second = _held_connection(server.port), _held_connection(server.port)
        assert _exchange(first, "/secretsmanager/get")[:2] == (400, b"missing parameter secretId")
        assert _exchange(second, "/ping")[:2] == (200, b"healthy")
        third = _held_connection(server.port)
        assert _exchange(third, "/ping", token=None)[:2] == (200, b"healthy")  # health checks get two more
        assert _exchange(third, "/secretsmanager/get") == (429, b"Connection limit exceeded", True)
        third.close()
        assert _exchange(first, "/secretsmanager/get")[:2] == (400, b"missing parameter secretId")  # still served
        first.close()
        # Two open again (second and a new one) once the server has seen the close: a place is free.
        deadline = time.monotonic() + WATCHDOG
        while True:
            with _held_connection(server.port) as fresh:
                status = _exchange(fresh, "/secretsmanager/get")[0]
            if status != 429 or time.monotonic() > deadline:
                break
        second.close()
        assert status == 400
    finally:
        assert server.stop() == 0


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(moto_server: str, tmp_path: Path) -> None:
    """SIGTERM while a read waits on a slow Secrets Manager: the read is answered, then the process exits 0."""
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    admin.create_secret(Name="svc/slow-61e0", SecretString=VALUE)
    proxy = FaultProxy(moto_server)
    gate = threading.Event()
    proxy.then(("hold", gate))
    try:
        server = start_serve(["--endpoint-url", proxy.url], base_env(AWS_TOKEN=TOKEN), tmp_path)
        outcome: dict[str, Any] = {}

        def read() -> None:
            connection = server.connection()
            try:
                connection.request(
                    "GET",
                    "/secretsmanager/get?secretId=svc/slow-61e0",
                    headers={"X-Aws-Parameters-Secrets-Token": TOKEN},
                )
                response = connection.getresponse()
                outcome["answer"] = (response.status, response.read())
            except Exception as err:
                outcome["error"] = err
            finally:
                connection.close()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert proxy.holding.wait(WATCHDOG), "the read never reached Secrets Manager"
        server.process.send_signal(signal.SIGTERM)  # , while the read is held at the proxy
        threading.Timer(0.3, gate.set).start()  # Secrets Manager answers a little later, within the grace
        code = server.stop()
        reader.join(WATCHDOG)
        assert not reader.is_alive()
        assert "error" not in outcome, outcome
        status, body = outcome["answer"]
        assert (status, json.loads(body)["SecretString"]) == (200, VALUE)
        assert code == 0, server.output()
        assert VALUE not in server.output()
    finally:
        gate.set()
        proxy.close()


def test_without_the_serve_extra_one_line_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without uvicorn installed, `secretcache serve` says which extra to install, in one line, exit 1."""
    for name in ("secretcache.serve._server", "secretcache.serve._app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an absent package looks like to import
    monkeypatch.setenv("AWS_TOKEN", TOKEN)
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err == "secretcache: error: secretcache serve needs the serve extra: pip install 'secretcache[serve]'\n"


def test_systemd_is_told_ready_once_the_server_listens(tmp_path: Path) -> None:
    """With ``NOTIFY_SOCKET`` set (a ``Type=notify`` unit) the server sends ``READY=1`` once it accepts connections."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(WATCHDOG)
        served = start_serve(["--bind", "127.0.0.1"], base_env(AWS_TOKEN=TOKEN, NOTIFY_SOCKET=str(path)), tmp_path)
        try:
            assert notify.recv(4096) == b"READY=1"
            with socket.create_connection(("127.0.0.1", served.port), timeout=WATCHDOG):
                pass
        finally:
            assert served.stop() == 0


def test_secret_ids_reach_the_log_only_with_log_ids(moto_server: str, tmp_path: Path) -> None:
    """At DEBUG a failed read's line names the secret with ``--log-ids``; without it the id never appears."""
    name = "svc/logged-id-0b7e"
    outputs = []
    for extra in ([], ["--log-ids"]):
        args = ["--bind", "127.0.0.1", "--endpoint-url", moto_server, "--log-level", "debug", *extra]
        served = start_serve(args, base_env(AWS_TOKEN=TOKEN), tmp_path)
        try:
            connection = served.connection()
            headers = {"X-Aws-Parameters-Secrets-Token": TOKEN}
            connection.request("GET", f"/secretsmanager/get?secretId={name}", headers=headers)
            assert connection.getresponse().status in (400, 404)  # not found (moto answers 404)
            connection.close()
        finally:
            assert served.stop() == 0
        outputs.append(served.output())
    assert name not in outputs[0]
    assert name in outputs[1]


def test_a_refused_prefetch_batch_logs_its_reason_and_no_secret_id(
    moto_server: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    """--prefetch whose BatchGetSecretValue is refused logs why at INFO, without --log-ids naming no secret."""
    names = ["svc/prefetched-a-41d2", "svc/prefetched-b-41d2"]
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    for name in names:
        admin.create_secret(Name=name, SecretString=VALUE)
    proxy.then(
        ("status", (400, "AccessDeniedException", "not authorized to perform: secretsmanager:BatchGetSecretValue"))
    )
    prefetch = [arg for name in names for arg in ("--prefetch", name)]
    served = start_serve(
        ["--bind", "127.0.0.1", "--endpoint-url", proxy.url, *prefetch], base_env(AWS_TOKEN=TOKEN), tmp_path
    )
    try:
        assert proxy.seen == 1 + len(names)  # the refused batch, then one read per secret, before it listens
    finally:
        assert served.stop() == 0
    output = served.output()
    assert "BatchGetSecretValue refused" in output
    assert "AccessDeniedException: not authorized to perform: secretsmanager:BatchGetSecretValue" in output
    for name in names:
        assert name not in output
