"""HTTP stacks for ``secretcache serve``: req/s and p50/p99 of a cached secret next to each stack's own limit.

Run:  python benchmarks/bench_serve_stacks.py [--quick] [--rounds N] [--seconds S] [--connections C]
      [--stacks NAME,NAME] [--generator auto|wrk|own]

Each stack serves the Secrets Manager Agent's protocol from one process on 127.0.0.1 (workers=1:
one cache per host), in two cases: ``hard``, a hard-coded GetSecretValue-shaped JSON body of about
400 bytes (the stack's own limit), and ``cached``, the same body computed per request from a
:class:`secretcache.SecretCache` hit (a boto3 client on moto's in-process ``mock_aws`` inside the
server process; the ``X-Aws-Parameters-Secrets-Token`` header checked with
``hmac.compare_digest``, the query string parsed, the value dumped to JSON). A third case,
``memo``, is ``cached`` with the rendered body kept per :class:`SecretValue` (immutable, so its
body is too) and the secret id kept per query string: what ``secretcache serve`` can do to reach
the target, a ``cached``/``hard`` ratio of at least 0.8.

The load is ``wrk`` (one thread, so the server keeps the other core of a 2-core machine) with
``--latency``, or, without wrk on ``PATH`` or with ``--generator own``, this script's own asyncio
generator (raw sockets, keep-alive, one request in flight per connection). Both report the load
generator's CPU use: near 100% means the generator, not the server, was the limit. Stacks whose
packages are not installed are skipped with a line saying so (the stdlib's threading server
always runs). ``--quick``: 1 s and 8 connections per case, one round; it checks that every
installed stack answers, its figures measure nothing. Compare rows of one run with each other,
never across machines; the table gives medians over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

HOST = "127.0.0.1"
CASES = ("hard", "cached", "memo")
SECRET_ID = "bench/serve"  # noqa: S105 - a secret's name
TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 - the benchmark's own server token
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"  # noqa: S105 - a header name
TARGET = f"/secretsmanager/get?secretId={SECRET_ID.replace('/', '%2F')}"
SECONDS, CONNECTIONS, ROUNDS, WARMUP = 8.0, 64, 3, 1.0
IMPORT_STARTS = 7  # fresh interpreters per stack for its import time
# A database credential, as most secrets are: with the metadata, a body of about 400 bytes.
SECRET_STRING = json.dumps(
    {"engine": "postgres", "host": "db.internal.example.com", "port": 5432, "dbname": "app", "username": "app_rw"}
    | {"password": "p" * 32}
)
# The hard-coded case's metadata has the lengths moto's has, so both bodies are the same size.
HARD = {
    "ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{SECRET_ID}-AbCdEf",
    "Name": SECRET_ID,
    "VersionId": "01234567-89ab-cdef-0123-456789abcdef",
    "VersionStages": ["AWSCURRENT"],
    "CreatedDate": "1700000000.000000",
}

Answer = Callable[[str, str, "bytes | None"], "tuple[int, bytes]"]  # (path, query, token) -> (status, body)


def body_of(arn: str, name: str, version_id: str, stages: list[str], created: str, secret_string: str) -> bytes:
    """A GetSecretValue response body, as the Secrets Manager Agent returns it."""
    shape = {"ARN": arn, "Name": name, "VersionId": version_id, "SecretString": secret_string}
    return json.dumps(shape | {"VersionStages": stages, "CreatedDate": created}).encode()


HARD_BODY = body_of(
    HARD["ARN"], SECRET_ID, HARD["VersionId"], HARD["VersionStages"], HARD["CreatedDate"], SECRET_STRING
)


def cached_answer(*, memo: bool) -> tuple[Answer, Any]:
    """A handler over a warm SecretCache on moto, and the mock to keep open.

    ``memo=False`` (the ``cached`` case) parses the query with ``parse_qsl`` and dumps the JSON on
    every request. ``memo=True`` (the ``memo`` case) remembers the secret id of each query string
    it has parsed (up to 1024 of them) and keeps each secret's rendered body next to the
    :class:`SecretValue` it came from, rendering again only when the cache hands out another
    value object (a new version, a refresh): the value is immutable, so its body is too. The
    bodies are kept per secret id, so a ``bodies`` like this one in ``secretcache serve`` needs
    the cache's own bound (``max_size``) or an eviction hook.
    """
    import boto3
    from moto import mock_aws

    from secretcache import SecretCache, SecretCacheError, SecretNotFoundError, SecretValue

    mock = mock_aws()
    mock.start()
    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(Name=SECRET_ID, SecretString=SECRET_STRING)
    cache = SecretCache(client)
    cache.get_secret(SECRET_ID)  # warm: every request of the run is a hit
    token = TOKEN.encode()
    bodies: dict[str, tuple[SecretValue, bytes]] = {}
    ids: dict[str, str] = {}  # query string -> secret id

    def render(value: SecretValue) -> bytes:
        created = f"{value.created_date.timestamp():.6f}" if value.created_date else ""
        stages = list(value.version_stages)
        return body_of(value.arn, value.name, value.version_id, stages, created, value.secret_string or "")

    def answer(path: str, query: str, given: bytes | None) -> tuple[int, bytes]:
        if path == "/ping":
            return 200, b"healthy"
        if given is None or not hmac.compare_digest(given, token):
            return 403, b'{"message":"missing or bad X-Aws-Parameters-Secrets-Token"}'
        if path == "/secretsmanager/get":
            secret_id = ids.get(query) if memo else None
            if secret_id is None:
                secret_id = next((value for key, value in parse_qsl(query) if key == "secretId"), "")
                if memo and len(ids) < 1024:  # bounded: a client cannot grow it without end
                    ids[query] = secret_id
        elif path.startswith("/v1/"):
            secret_id = unquote(path[4:])
        else:
            return 404, b'{"message":"not found"}'
        try:
            value = cache.get_secret(secret_id)
        except SecretNotFoundError:
            return 404, b'{"message":"secret not found"}'
        except SecretCacheError:
            return 500, b'{"message":"secret unavailable"}'
        if not memo:
            return 200, render(value)
        kept = bodies.get(secret_id)
        if kept is None or kept[0] is not value:
            kept = bodies[secret_id] = (value, render(value))
        return 200, kept[1]

    return answer, mock


# -- the servers: each runs in a child process (``--serve STACK``), answers, and never returns ----------------


def serve_stdlib(port: int, answer: Answer | None, loop: str) -> None:
    """The standard library's ThreadingHTTPServer, HTTP/1.1 keep-alive, a thread per connection."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_GET(self) -> None:
            if answer is None:
                status, body = 200, HARD_BODY
            else:
                path, _, query = self.path.partition("?")
                token = self.headers.get(TOKEN_HEADER)
                status, body = answer(path, query, token.encode() if token is not None else None)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default 5 drops SYNs of 64 connections at once: p99 of seconds

    Server((HOST, port), Handler).serve_forever()


def asgi_app(answer: Answer | None) -> Callable[..., Any]:
    """A raw ASGI application (no framework) for uvicorn and granian."""
    json_type = (b"content-type", b"application/json")
    hard_start = {"type": "http.response.start", "status": 200}
    hard_start["headers"] = [json_type, (b"content-length", str(len(HARD_BODY)).encode())]
    hard_body = {"type": "http.response.body", "body": HARD_BODY}
    name = TOKEN_HEADER.lower().encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if answer is None:
            await send(hard_start)
            await send(hard_body)
            return
        token = next((value for key, value in scope["headers"] if key == name), None)
        status, body = answer(scope["path"], scope["query_string"].decode("latin-1"), token)
        headers = [json_type, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def run_loop(loop: str, main: Callable[[], Any]) -> None:
    """Run the coroutine ``main()`` on the stdlib's asyncio loop or on uvloop's."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        import asyncio

        asyncio.run(main())


def serve_uvicorn(port: int, answer: Answer | None, loop: str) -> None:
    """uvicorn with httptools, a raw ASGI app, no lifespan, no access log."""
    import uvicorn

    config = uvicorn.Config(
        asgi_app(answer),
        host=HOST,
        port=port,
        loop=loop,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


def serve_aiohttp(port: int, answer: Answer | None, loop: str) -> None:
    """aiohttp's low-level server (``web.Server`` and a handler), no application or router."""
    import asyncio

    from aiohttp import web

    async def handler(request: web.BaseRequest) -> web.Response:
        if answer is None:
            return web.Response(body=HARD_BODY, content_type="application/json")
        path, _, query = request.raw_path.partition("?")
        token = request.headers.get(TOKEN_HEADER)
        status, body = answer(path, query, token.encode() if token is not None else None)
        return web.Response(status=status, body=body, content_type="application/json")

    async def main() -> None:
        server = web.Server(handler, access_log=None)
        await asyncio.get_running_loop().create_server(server, HOST, port)
        await asyncio.Event().wait()

    run_loop(loop, main)


def serve_granian(port: int, answer: Answer | None, loop: str, *, rsgi: bool) -> None:
    """granian embedded in this process (its experimental ``server.embed``), ASGI or RSGI, one runtime thread."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    if rsgi:
        json_type = [("content-type", "application/json")]
        name = TOKEN_HEADER.lower()

        async def app(scope: Any, proto: Any) -> None:
            if answer is None:
                proto.response_bytes(200, json_type, HARD_BODY)
                return
            token = scope.headers.get(name)
            status, body = answer(scope.path, scope.query_string, token.encode() if token is not None else None)
            proto.response_bytes(status, json_type, body)

        target: Any = app
    else:
        target = asgi_app(answer)
    interface = Interfaces.RSGI if rsgi else Interfaces.ASGINL
    server = Server(target, address=HOST, port=port, interface=interface, log_enabled=False, websockets=False)
    run_loop(loop, server.serve)


def serve_granian_asgi(port: int, answer: Answer | None, loop: str) -> None:
    """granian embedded, ASGI (no lifespan)."""
    serve_granian(port, answer, loop, rsgi=False)


def serve_granian_rsgi(port: int, answer: Answer | None, loop: str) -> None:
    """granian embedded, its own RSGI interface."""
    serve_granian(port, answer, loop, rsgi=True)


@dataclass(frozen=True)
class Stack:
    """One candidate: the modules its server imports (their packages are what it adds) and how it serves."""

    name: str
    modules: tuple[str, ...]
    serve: Callable[[int, Answer | None, str], None]
    loop: str = "asyncio"

    @property
    def dists(self) -> tuple[str, ...]:
        """The distributions it brings (named as their top-level modules; their requirements come along)."""
        tops = dict.fromkeys(module.split(".")[0] for module in self.modules)
        return tuple(top for top in tops if top not in sys.stdlib_module_names)


UVICORN, GRANIAN = "uvicorn.protocols.http.httptools_impl", "granian.server.embed"
STACKS = [
    Stack("stdlib-threading", ("http.server",), serve_stdlib, loop="threads"),
    Stack("uvicorn-httptools", (UVICORN, "httptools"), serve_uvicorn),
    Stack("uvicorn-httptools-uvloop", (UVICORN, "httptools", "uvloop"), serve_uvicorn, loop="uvloop"),
    Stack("aiohttp-lowlevel", ("aiohttp.web",), serve_aiohttp),
    Stack("aiohttp-lowlevel-uvloop", ("aiohttp.web", "uvloop"), serve_aiohttp, loop="uvloop"),
    Stack("granian-asgi", (GRANIAN,), serve_granian_asgi),
    Stack("granian-rsgi", (GRANIAN,), serve_granian_rsgi),
    Stack("granian-rsgi-uvloop", (GRANIAN, "uvloop"), serve_granian_rsgi, loop="uvloop"),
]
BY_NAME = {stack.name: stack for stack in STACKS}
ROOT = Path(__file__).resolve().parents[1]


def serve_main(name: str, case: str, port: int) -> None:
    """A server child: build the case's handler (moto and a warm cache for ``cached``) and serve forever."""
    answer, _mock = cached_answer(memo=case == "memo") if case != "hard" else (None, None)
    stack = BY_NAME[name]
    stack.serve(port, answer, stack.loop)


# -- what a stack costs before it serves: installed size and import time ---------------------------------------


def missing(stack: Stack) -> str | None:
    """The first module ``stack`` needs that is not installed, or None."""
    return next((module for module in stack.modules if importlib.util.find_spec(module.split(".")[0]) is None), None)


def wanted(requirement: str) -> str | None:
    """The distribution a ``Requires-Dist`` line names, or None when its marker excludes it (extras are never in)."""
    name, _, marker = requirement.partition(";")
    if marker:
        try:
            from packaging.markers import Marker

            if not Marker(marker.strip()).evaluate({"extra": ""}):
                return None
        except ImportError:  # no packaging: leave out only the extras
            if "extra" in marker:
                return None
    found = re.match(r"[A-Za-z0-9._-]+", name.strip())
    return found.group(0).lower().replace("_", "-") if found else None


def closure(names: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``names`` need, with theirs, by normalised name."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [name.lower() for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        todo += [req for req in map(wanted, dist.requires or []) if req is not None]
    return seen


def weight(stack: Stack) -> tuple[float, list[str]]:
    """MB on disk of the distributions ``stack`` adds to an install of secretcache, and their names."""
    ours = closure(("secretcache",))
    added = {name: dist for name, dist in closure(stack.dists).items() if name not in ours}
    size = 0
    for dist in added.values():
        for file in dist.files or []:
            with contextlib.suppress(OSError):
                size += Path(str(dist.locate_file(file))).stat().st_size
    return size / 1e6, sorted(added)


def import_ms(stacks: list[Stack], starts: int) -> dict[str, float]:
    """Median ms a fresh interpreter spends importing each stack's modules, beyond ``python -c pass``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    codes = {"": "pass"} | {stack.name: "import " + ", ".join(stack.modules) for stack in stacks}
    samples: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(starts):  # interleaved, as bench_import.py does: a busy moment slows all alike
        for name, code in codes.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)  # noqa: S603 - our interpreter
            samples[name].append((time.perf_counter() - start) * 1e3)
    floor = statistics.median(samples.pop(""))
    return {name: statistics.median(values) - floor for name, values in samples.items()}


# -- running a server and loading it ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on HOST that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server(stack: Stack, case: str) -> Iterator[tuple[int, int]]:
    """A server child for ``stack`` and ``case``, listening: its port and pid; stopped on exit."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, __file__, "--serve", stack.name, "--case", case, "--port", str(port)]
    with listening(argv, port, env, f"{stack.name} {case}") as pid:
        yield port, pid


@contextlib.contextmanager
def listening(argv: list[str], port: int, env: dict[str, str], what: str) -> Iterator[int]:
    """Start ``argv``; yield its pid once ``port`` on HOST accepts connections; stop it on exit."""
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603 - ourselves
        try:
            deadline = time.monotonic() + 60
            while True:
                if child.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{what}: server did not start:\n{log.read()[-2000:]}")
                with socket.socket() as probe:
                    if probe.connect_ex((HOST, port)) == 0:
                        break
                time.sleep(0.05)
            yield child.pid
        finally:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)


def get(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    """One GET on a fresh connection: status and body."""
    import http.client

    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers={TOKEN_HEADER: token} if token is not None else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check(port: int, case: str) -> int:
    """The server answers as the agent would (``cached``: the token is required); the body's size."""
    status, body = get(port, TARGET, TOKEN)
    assert status == 200, (status, body[:200])
    assert json.loads(body)["SecretString"] == SECRET_STRING
    assert len(body) == len(HARD_BODY), (len(body), len(HARD_BODY))
    if case != "hard":
        assert get(port, TARGET, None)[0] == 403
        assert get(port, TARGET, "wrong-token")[0] == 403
        assert get(port, "/v1/" + SECRET_ID.replace("/", "%2F"), TOKEN) == (200, body)
        assert get(port, "/ping", None) == (200, b"healthy")
    return len(body)


@dataclass(frozen=True)
class Load:
    """One load run's figures."""

    rps: float
    p50: float  # seconds
    p99: float
    requests: int
    errors: int  # non-200 answers, socket errors, timeouts
    generator_cpu: float  # the load generator's CPU time / wall time (1.0: one core busy)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, seconds: float, connections: int, *, target: str = TARGET, token: str = TOKEN) -> Load:
    """Load with wrk: one thread, ``connections`` keep-alive connections, ``--latency``, GET ``target``."""
    url = f"http://{HOST}:{port}{target}"
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
    before, start = os.times(), time.monotonic()
    out = subprocess.run(  # noqa: S603 - wrk from PATH on loopback
        [*argv, "-H", f"{TOKEN_HEADER}: {token}", url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    after, wall = os.times(), time.monotonic() - start
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert found, out
        return float(found.group(1)) * unit[found.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    assert rps, out
    assert requests, out
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout):? (\d+)", out))
    cpu = after.children_user + after.children_system - before.children_user - before.children_system
    return Load(float(rps.group(1)), latency("50"), latency("99"), int(requests.group(1)), errors, cpu / wall)


def own(port: int, seconds: float, connections: int, *, target: str = TARGET, token: str = TOKEN) -> Load:
    """Load with this script's asyncio generator (uvloop if installed): keep-alive, one request in flight each."""
    import asyncio

    request = f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{TOKEN_HEADER}: {token}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = [0]
    perf = time.perf_counter

    class Client(asyncio.Protocol):
        def __init__(self, deadline: float, done: asyncio.Future[None]) -> None:
            self.deadline, self.done, self.buffer, self.started = deadline, done, bytearray(), 0.0
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.started = perf()
            transport.write(request)

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", self.buffer[:end])
            total = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < total:
                return
            now = perf()
            latencies.append(now - self.started)
            if self.buffer[9:12] != b"200":
                errors[0] += 1
            del self.buffer[:total]
            if now < self.deadline:
                self.started = now
                self.transport.write(request)
            else:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if exc is not None or perf() < self.deadline:
                errors[0] += 1
            if not self.done.done():
                self.done.set_result(None)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = perf()
        deadline = start + seconds
        done = [loop.create_future() for _ in range(connections)]
        for future in done:
            await loop.create_connection(lambda future=future: Client(deadline, future), HOST, port)
        await asyncio.wait_for(asyncio.gather(*done), seconds + 30)
        return perf() - start

    cpu = time.process_time()
    try:
        import uvloop

        wall = uvloop.run(main())
    except ImportError:
        wall = asyncio.run(main())
    cpu = time.process_time() - cpu
    ordered = sorted(latencies)
    p50, p99 = (ordered[min(len(ordered) - 1, round(f * len(ordered)))] for f in (0.50, 0.99))
    return Load(len(latencies) / wall, p50, p99, len(latencies), errors[0], cpu / wall)


# -- the run --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One measurement: a stack, a case, a round, its load figures and the server's CPU use."""

    stack: str
    case: str
    round: int
    load: Load
    server_cpu: float  # CPU time / wall time of the server process (>1.0: more than one core)


def measure(
    stack: Stack, case: str, round_: int, *, seconds: float, connections: int, warmup: float, drive: Callable[..., Load]
) -> Case:
    """Start the server, check it, warm it, load it."""
    with server(stack, case) as (port, pid):
        check(port, case)
        if warmup:
            drive(port, warmup, connections)
        cpu, start = cpu_seconds(pid), time.monotonic()
        load = drive(port, seconds, connections)
        server_cpu = (cpu_seconds(pid) - cpu) / (time.monotonic() - start)
    return Case(stack.name, case, round_, load, server_cpu)


def options() -> argparse.Namespace:
    """The command line (``--serve`` is this script's own server child)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s, 8 connections, one round: checks every stack works")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="load per case")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--stacks", default="", help=f"comma-separated, of: {', '.join(BY_NAME)} (default all)")
    parser.add_argument("--generator", choices=("auto", "wrk", "own"), default="auto", help="auto: wrk if on PATH")
    parser.add_argument("--serve", choices=list(BY_NAME), help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def ms(seconds: float) -> str:
    """Milliseconds with two decimals."""
    return f"{seconds * 1e3:.2f}"


def main() -> int:
    """Measure every installed stack, print each run and a table of medians; 1 if any run failed."""
    args = options()
    if args.serve:
        serve_main(args.serve, args.case, args.port)
        return 0
    if args.quick:
        args.rounds, args.seconds, args.connections = 1, 1.0, 8
    warmup = 0.0 if args.quick else WARMUP
    names = [name for name in args.stacks.split(",") if name] or list(BY_NAME)
    stacks = []
    for name in names:
        stack = BY_NAME[name]
        absent = missing(stack)
        if absent:
            print(f"{name}: skipped: {absent} is not installed (pip install {' '.join(stack.dists)})")
        else:
            stacks.append(stack)
    cases = list(CASES)
    if importlib.util.find_spec("moto") is None:
        print("cached, memo: skipped: moto is not installed (pip install -e '.[bench]')")
        cases = ["hard"]
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    drive = wrk if use_wrk else own
    if use_wrk:
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
        print(f"load: {(version.stdout + version.stderr).splitlines()[0]} -t1 -c{args.connections}", end="")
    else:
        print(f"load: this script's asyncio generator, {args.connections} connections", end="")
    print(f", {args.seconds:g} s per case after {warmup:g} s warm-up, {args.rounds} round(s); GET {TARGET}")
    print(f"body: {len(HARD_BODY)} bytes; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    results: list[Case] = []
    failed: list[str] = []
    for round_ in range(args.rounds):
        print(f"\nround {round_ + 1}: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"{'stack':<26}{'case':<8}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'srv CPU':>8}{'gen CPU':>8}"
        )
        turn = round_ % len(stacks) if stacks else 0
        for stack in stacks[turn:] + stacks[:turn]:  # a different order each round: drifts hit all stacks
            for case in cases:
                try:
                    result = measure(
                        stack,
                        case,
                        round_,
                        seconds=args.seconds,
                        connections=args.connections,
                        warmup=warmup,
                        drive=drive,
                    )
                except (AssertionError, RuntimeError, subprocess.SubprocessError, OSError) as err:
                    print(f"{stack.name:<26}{case:<8}FAILED: {err!r}"[:2000])
                    failed.append(f"{stack.name} {case}")
                    continue
                load = result.load
                print(
                    f"{stack.name:<26}{case:<8}{load.rps:>9.0f}{ms(load.p50):>8}{ms(load.p99):>8}{load.errors:>7}"
                    f"{result.server_cpu:>8.0%}{load.generator_cpu:>8.0%}",
                    flush=True,
                )
                if load.errors:
                    failed.append(f"{stack.name} {case}: {load.errors} errors")
                results.append(result)
    print_table(stacks, results, import_ms(stacks, 1 if args.quick else IMPORT_STARTS))
    for failure in failed:
        print(f"FAILED: {failure}")
    return 1 if failed else 0


def print_table(stacks: list[Stack], results: list[Case], imports: dict[str, float]) -> None:
    """Medians over the rounds, one row per stack: req/s of each case, ratios to ``hard``, latencies, weight.

    A ratio is the median of each round's ratio: the cases of a round run one after the other, so
    a busy spell of the machine moves both sides of a round's ratio, less so the medians' ratio.
    """

    def of(stack: Stack, case: str) -> list[Load]:
        return list(by_round(stack, case).values())

    def by_round(stack: Stack, case: str) -> dict[int, Load]:
        return {r.round: r.load for r in results if r.stack == stack.name and r.case == case}

    def median(loads: list[Load], figure: str) -> float:
        return statistics.median(getattr(load, figure) for load in loads) if loads else float("nan")

    print("\nmedians over the rounds; ratio: req/s over the same stack's hard-coded req/s; p50/p99 in ms")
    print("'adds': MB installed on top of secretcache; import: ms a fresh interpreter spends importing the stack")
    print(
        f"{'stack':<25}{'hard r/s':>9}{'p99':>7}{'cached':>8}{'ratio':>6}{'p50':>6}{'p99':>7}"
        f"{'memo':>7}{'ratio':>6}{'p50':>6}{'p99':>7}{'adds':>6}{'import':>7}  distributions added"
    )
    for stack in stacks:
        hard = of(stack, "hard")
        row = f"{stack.name:<25}{median(hard, 'rps'):>9.0f}{ms(median(hard, 'p99')):>7}"
        for case, width in (("cached", 8), ("memo", 7)):
            loads, bases = of(stack, case), by_round(stack, "hard")
            ratios = [load.rps / bases[n].rps for n, load in by_round(stack, case).items() if n in bases]
            ratio = statistics.median(ratios) if ratios else float("nan")
            row += f"{median(loads, 'rps'):>{width}.0f}{ratio:>6.2f}{ms(median(loads, 'p50')):>6}"
            row += f"{ms(median(loads, 'p99')):>7}"
        size, dists = weight(stack)
        print(f"{row}{size:>6.1f}{imports[stack.name]:>7.0f}  {', '.join(dists) or '-'}")
    print("target: ratio >= 0.80 (a cached secret at 80% of the stack's own limit or better)")


if __name__ == "__main__":
    sys.exit(main())
