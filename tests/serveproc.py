"""Helpers of the ``secretcache serve`` process tests: start the command as users do, wait, stop, read its output.

Every wait is bounded by the watchdog: a server that never starts or never stops fails the test.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REGION, WATCHDOG

TOKEN = "tok-3c8f0d1e-serve-test"
READY = "secretcache serve listening on "


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(**extra: str) -> dict[str, str]:
    """This environment without AWS_* and SECRETCACHE_* variables, plus test credentials and ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "SECRETCACHE_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class ServeProcess:
    """A running ``python -m secretcache serve`` and the files holding its standard output and error."""

    process: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path

    def output(self) -> str:
        """Everything the process wrote so far, standard output then standard error."""
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def connection(self) -> http.client.HTTPConnection:
        """A new HTTP connection to the server (IPv4 loopback)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=WATCHDOG)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and return the exit status; fail (killing it) if it does not exit within the watchdog."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=WATCHDOG)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"secretcache serve did not exit after signal {signum}") from None


def start_serve(args: list[str], env: dict[str, str], workdir: Path, *, ready: bool = True) -> ServeProcess:
    """Start ``secretcache serve --port FREE *args``; with ``ready``, return once it logged that it listens."""
    port = free_port()
    out, err = workdir / f"serve-{port}.out", workdir / f"serve-{port}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "secretcache", "serve", "--port", str(port), *args],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    served = ServeProcess(process, port, out, err)
    if ready:
        wait_ready(served)
    return served


def wait_ready(served: ServeProcess) -> None:
    """Wait for the start line (logged once the sockets accept); fail if the process exits first."""
    deadline = time.monotonic() + WATCHDOG
    while READY not in served.err.read_text(errors="replace"):
        if served.process.poll() is not None:
            raise AssertionError(f"secretcache serve exited with {served.process.returncode}: {served.output()}")
        if time.monotonic() > deadline:
            served.process.kill()
            raise AssertionError(f"secretcache serve did not start: {served.output()}")
        time.sleep(0.02)


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to ``host:port`` is accepted now (closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def moto_api(endpoint: str, method: str, path: str) -> bytes:
    """Call moto's own API (``/moto-api/...``) on the server at ``endpoint``."""
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WATCHDOG)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return body
    finally:
        connection.close()


def recorded_calls(endpoint: str) -> Counter[str]:
    """Secrets Manager operations moto's recorder saw since recording started, by name (``GetSecretValue``: n)."""
    calls: Counter[str] = Counter()
    for line in moto_api(endpoint, "GET", "/moto-api/recorder/download-recording").decode().splitlines():
        if line.strip():
            headers = {name.lower(): value for name, value in json.loads(line)["headers"].items()}
            target = headers.get("x-amz-target", "")
            if target.startswith("secretsmanager."):
                calls[target.removeprefix("secretsmanager.")] += 1
    return calls
