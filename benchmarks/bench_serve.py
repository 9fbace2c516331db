"""``secretcache serve`` against its own HTTP stack's limit, and the Secrets Manager calls it makes.

Run:  python benchmarks/bench_serve.py [--quick] [--rounds N] [--seconds S] [--connections C]

Two servers, one after the other, each one process on 127.0.0.1, loaded the same way (64
keep-alive connections by default, ``wrk`` with ``--latency`` if on ``PATH``, else the asyncio
generator of ``bench_serve_stacks.py``):

- ``stack limit``: uvicorn with httptools (the ``serve`` extra's stack, configured as the
  server configures it) answering every request with a hard-coded body, byte for byte the body
  ``secretcache serve`` returns for the secret: what the stack itself can do on this machine.
- ``secretcache serve``: the real command (``python -m secretcache serve``), token checked, the
  secret cached, in front of a moto server on loopback whose request recorder counts the
  ``GetSecretValue``/``BatchGetSecretValue`` calls the server makes.

It prints req/s, p50 and p99 of each (medians over the rounds), the ratio of the two (target:
at least 0.8), and the Secrets Manager calls during the whole run (target: 1, the first read,
whatever the number of connections and requests). ``--quick``: 1 s and 8 connections, one round;
it checks that both servers answer and the call count, its timings measure nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_serve_stacks import HOST, TOKEN_HEADER, Load, cpu_seconds, free_port, listening, own, wrk

ROOT = Path(__file__).resolve().parents[1]
SECRET_ID = "bench/serve/db"  # noqa: S105 - a secret's name
TOKEN = "bench-serve-token-0123456789abcdef"  # noqa: S105 - the benchmark's own server token
TARGET = "/secretsmanager/get?secretId=" + SECRET_ID.replace("/", "%2F")
SECRET_STRING = json.dumps({"username": "orders_app", "password": "benchmark-password", "host": "db.internal"})
ROUNDS, SECONDS, CONNECTIONS = 3, 8.0, 64


def hard_server(port: int, body_file: str) -> None:
    """The child: uvicorn + httptools answering every request with the bytes of ``body_file``."""
    import uvicorn

    body = Path(body_file).read_bytes()
    start = {"type": "http.response.start", "status": 200}
    start["headers"] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    message = {"type": "http.response.body", "body": body}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start)
        await send(message)

    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        http="httptools",
        loop="asyncio",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on loopback holding the secret, recording requests from now on."""
    os.environ["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(), "recording")  # else ./moto_recording
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    endpoint = f"http://{HOST}:{port}"
    try:
        import boto3

        client = boto3.client(
            "secretsmanager", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's
        )  # fmt: skip
        client.create_secret(Name=SECRET_ID, SecretString=SECRET_STRING)
        post(f"{endpoint}/moto-api/recorder/reset-recording")
        post(f"{endpoint}/moto-api/recorder/start-recording")
        yield endpoint
    finally:
        server.stop()


def post(url: str) -> None:
    """POST with no body (moto's control API)."""
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).close()  # noqa: S310 - loopback


def calls(endpoint: str) -> int:
    """GetSecretValue and BatchGetSecretValue requests the moto server received since recording began."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording", timeout=10) as answer:  # noqa: S310
        lines = [json.loads(line) for line in answer.read().decode().splitlines() if line.strip()]
    targets = [line.get("headers", {}).get("X-Amz-Target", "") for line in lines]
    return sum(target in ("secretsmanager.GetSecretValue", "secretsmanager.BatchGetSecretValue") for target in targets)


def get(port: int) -> bytes:
    """One read through the server: its 200 body."""
    request = urllib.request.Request(f"http://{HOST}:{port}{TARGET}", headers={TOKEN_HEADER: TOKEN})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        assert answer.status == 200, answer.status
        return bytes(answer.read())


def options() -> argparse.Namespace:
    """The command line (``--hard-server`` is this script's own child)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s, 8 connections, one round: checks it works")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--hard-server", nargs=2, metavar=("PORT", "BODY_FILE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    """Measure both servers; print the table; 1 if a target is missed in a full run, or a check fails."""
    args = options()
    if args.hard_server:
        hard_server(int(args.hard_server[0]), args.hard_server[1])
        return 0
    rounds, seconds, connections = (1, 1.0, 8) if args.quick else (args.rounds, args.seconds, args.connections)
    drive = wrk if shutil.which("wrk") else own
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")  # noqa: S106
    env["AWS_TOKEN"] = TOKEN
    results: dict[str, list[tuple[Load, float]]] = {"stack limit": [], "secretcache serve": []}
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as folder:
        port = free_port()
        serve = [sys.executable, "-m", "secretcache", "serve", "--port", str(port), "--bind", HOST]
        serve += ["--endpoint-url", endpoint, "--ttl", "3600"]
        body_file = Path(folder) / "body.json"
        for round_ in range(1, rounds + 1):
            with listening(serve, port, env, "secretcache serve") as pid:
                body = get(port)
                body_file.write_bytes(body)
                results["secretcache serve"].append(load(drive, port, pid, seconds, connections))
            hard_port = free_port()
            hard = [sys.executable, __file__, "--hard-server", str(hard_port), str(body_file)]
            with listening(hard, hard_port, env, "stack limit") as pid:
                assert get(hard_port) == body
                results["stack limit"].append(load(drive, hard_port, pid, seconds, connections))
            print(
                f"round {round_}: "
                + ", ".join(f"{name} {runs[-1][0].rps:,.0f} req/s" for name, runs in results.items())
            )
        # One server per round, each started cold: one call for its first read, none for the load.
        made = calls(endpoint)
    print(f"\nload: {drive.__name__}, {connections} keep-alive connections, {seconds:g} s per run, {rounds} round(s)")
    print(f"{'server':<20} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'server CPU':>10}")
    medians = {}
    for name, runs in results.items():
        rps = statistics.median(run.rps for run, _ in runs)
        medians[name] = rps
        p50 = statistics.median(run.p50 for run, _ in runs) * 1e3
        p99 = statistics.median(run.p99 for run, _ in runs) * 1e3
        errors = sum(run.errors for run, _ in runs)
        cpu = statistics.median(used for _, used in runs)
        print(f"{name:<20} {rps:>9,.0f} {p50:>7.2f} {p99:>7.2f} {errors:>6} {cpu:>9.0%}")
    ratio = medians["secretcache serve"] / medians["stack limit"]
    print(f"ratio: {ratio:.2f} of the stack's own limit (target >= 0.80)")
    print(f"Secrets Manager calls: {made} for {rounds} cold start(s) of the server (target: {rounds}, one each)")
    failed = made != rounds or any(run.errors for runs in results.values() for run, _ in runs)
    if not args.quick and ratio < 0.8:
        failed = True
    return 1 if failed else 0


def load(drive: Any, port: int, pid: int, seconds: float, connections: int) -> tuple[Load, float]:
    """Warm for a second, then load ``port``; the figures and the server's CPU use over the run."""
    drive(port, 1.0, connections, target=TARGET, token=TOKEN)
    cpu, start = cpu_seconds(pid), time.monotonic()
    result = drive(port, seconds, connections, target=TARGET, token=TOKEN)
    return result, (cpu_seconds(pid) - cpu) / (time.monotonic() - start)


if __name__ == "__main__":
    sys.exit(main())
