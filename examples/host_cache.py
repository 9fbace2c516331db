"""One cache per host: ``secretcache serve`` and worker processes reading through ``AgentClient``.

Eight worker processes each keep a short in-process cache in front of the host's server; the
server keeps the long one. Secrets Manager sees one call, not one per worker.

Run locally (no AWS account; a moto server on loopback stands in for Secrets Manager, and the
script counts the calls it receives):
    pip install -e '.[demo,serve]' 'moto[server]' && python examples/host_cache.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# --8<-- [start:worker]
from secretcache import SecretCache
from secretcache.agent import AgentClient


def worker(reads: int) -> str:
    """In each worker process (a gunicorn worker, say): a short local TTL in front of the server."""
    cache = SecretCache(client=AgentClient(), ttl=30)  # token from AWS_TOKEN, as the server's
    for _ in range(reads):
        password = cache.get_secret_string("prod/app/db-password")
    return f"pid {os.getpid()}: {len(password)} chars, requests to the server: {cache.stats().total_api_calls}"


# --8<-- [end:worker]


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, deadline: float) -> None:
    """Wait until ``url`` answers (the server listens once its prefetch list is loaded)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - a loopback http URL
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def calls_seen(moto: str) -> dict[str, int]:
    """The Secrets Manager operations the moto server received, from its request recorder."""
    recording = f"{moto}/moto-api/recorder/download-recording"
    with urllib.request.urlopen(recording, timeout=5) as answer:  # noqa: S310 - a loopback http URL
        lines = answer.read().decode().splitlines()
    counts: dict[str, int] = {}
    for line in filter(None, lines):
        target = json.loads(line).get("headers", {}).get("X-Amz-Target", "")
        if target.startswith("secretsmanager."):
            operation = target.split(".", 1)[1]
            counts[operation] = counts.get(operation, 0) + 1
    return counts


def main() -> None:
    import logging

    os.environ["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(), "recording")  # else ./moto_recording
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no access log lines

    moto_port, port = free_port(), free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto_port}"
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(aws)
    import boto3

    boto3.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name="prod/app/db-password", SecretString="example-password"
    )
    for action in ("reset-recording", "start-recording"):  # count from here on
        control = urllib.request.Request(f"{endpoint}/moto-api/recorder/{action}", method="POST")  # noqa: S310
        urllib.request.urlopen(control, timeout=5).close()  # noqa: S310 - a loopback http URL

    token = secrets.token_hex(32)  # in production: the seeded token file (examples/serve/)
    os.environ["AWS_TOKEN"] = token
    os.environ["SECRETCACHE_AGENT_ENDPOINT"] = f"http://127.0.0.1:{port}"
    # --8<-- [start:serve]
    command = [sys.executable, "-m", "secretcache", "serve", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--endpoint-url", endpoint, "--prefetch", "prod/app/db-password", "--ttl", "300"]
    server = subprocess.Popen(command)  # noqa: S603 - this interpreter
    # --8<-- [end:serve]
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", time.monotonic() + 30)
        with multiprocessing.get_context("spawn").Pool(8) as pool:
            for line in pool.map(worker, [100] * 8):
                print(line)
        print(f"Secrets Manager calls for 8 workers x 100 reads: {calls_seen(endpoint)}")
    finally:
        server.terminate()
        print(f"server exited with {server.wait(timeout=10)}")
        moto.stop()


if __name__ == "__main__":
    main()
