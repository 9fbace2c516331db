"""Shared fixtures: AWS backends (in-process moto and moto's HTTP server), call counting,
fault injection through botocore events, and a fake clock."""

from __future__ import annotations

import asyncio
import atexit
import gc
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

# Bytecode. Where PYTHONDONTWRITEBYTECODE is set, every test process would compile again what it
# imports that has no bytecode beside it: this checkout's package and tests (pytest rewrites the
# test modules' asserts and would cache that too), about 2.5 s of CPU per pytest-xdist worker.
# Those processes keep their bytecode under ~/.cache/secretcache-tests/pycache instead (or
# SECRETCACHE_TESTS_PYCACHE), never in the checkout; subprocesses keep the environment's setting.
# With a prefix Python reads no __pycache__ beside the sources: the first run compiles once more
# what the venv holds compiled, into the prefix (CONTRIBUTING.md, "Bytecode").
if sys.dont_write_bytecode and sys.pycache_prefix is None:
    sys.pycache_prefix = os.environ.get("SECRETCACHE_TESTS_PYCACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "secretcache-tests", "pycache"
    )
    sys.dont_write_bytecode = False

# moto's request recorder (moto servers' /moto-api/recorder/...) is one per process and writes to
# a file in the current directory unless told otherwise: one file per test process (each xdist
# worker sets its own, not the one inherited from the controller), read when moto is imported below.
os.environ["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(prefix="moto-recorder-"), "recording")

import boto3
import botocore.session
import coverage
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import settings
from moto import mock_aws
from moto.secretsmanager import models as moto_secretsmanager_models
from moto.server import ThreadedMotoServer

from secretcache import RetryPolicy
from secretcache._run import Runner
from tests import atomic_moto, untraced
from tests.collection import EachExampleRunsOnce, LongTestsFirst
from tests.servers import Server, mariadb, postgres

# That directory goes when this process ends (each test process left one in the temporary directory).
atexit.register(shutil.rmtree, os.path.dirname(os.environ["MOTO_RECORDER_FILEPATH"]), ignore_errors=True)

REGION = "us-east-1"
REPLICA_REGION = "us-west-2"  # where the Region tests replicate secrets to

# No retry delays in tests: backoff timing is the fetcher's business, counts are ours.
FAST_RETRY = RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, deadline=30.0)


# Hypothesis profiles. "ci" (the default) runs the example counts each state machine sets for
# itself; "nightly" runs several times more examples and longer runs of steps, and the thread
# stress test more iterations: `pytest --hypothesis-profile=nightly` (CONTRIBUTING.md).
# SECRETCACHE_HEAVY=1 selects it too (read here, before the autouse fixture clears SECRETCACHE_*).
# The machines read the profile's name at import (tests/test_model.py: machine_settings, HEAVY,
# LIGHT), after the Hypothesis plugin has loaded the one named on the command line.
settings.register_profile("ci", print_blob=True)  # a failure prints the blob that replays it
settings.register_profile("nightly", settings.get_profile("ci"), max_examples=1000)
# "compat": CI's runs on the other supported Pythons (.ci/run), which check that the package works
# there; the full counts run on the default Python in the same CI run. A third of the examples.
settings.register_profile("compat", settings.get_profile("ci"))
settings.load_profile("nightly" if os.environ.get("SECRETCACHE_HEAVY") == "1" else "ci")


def _share_botocore_loaders() -> None:
    """Let every botocore session of this process share one data loader per search path.

    Each ``mock_aws()`` replaces boto3's default session, and a new session parses botocore's
    JSON models again (the endpoints file, the service model, its rule set): about 50 ms of CPU
    per test. The loader caches what it parsed and botocore treats that data as read-only; a
    process-wide loader keeps it between tests. Nothing else of a session is shared.
    """
    create_loader = botocore.session.create_loader
    loaders: dict[str | None, Any] = {}
    lock = threading.Lock()

    def shared(search_path_string: str | None = None) -> Any:
        with lock:
            if search_path_string not in loaders:
                loaders[search_path_string] = create_loader(search_path_string)
            return loaders[search_path_string]

    botocore.session.create_loader = shared  # type: ignore[assignment]


_share_botocore_loaders()
atomic_moto.install()  # moto's Secrets Manager applies each request whole, as the service does
if os.environ.get("SECRETCACHE_TESTS_TRACE_ALL") != "1":  # read before the autouse fixture clears SECRETCACHE_*
    untraced.install()  # moto's work, sessions and clients being built: not traced by coverage.py


DB_SERVER_FIXTURES = frozenset({"pg_server", "maria_server"})


def _names_a_server(code: CodeType) -> bool:
    """Whether ``code``, or code nested in it, holds a server fixture's name as a string constant."""
    for const in code.co_consts:
        if isinstance(const, str) and const in DB_SERVER_FIXTURES:
            return True
        if isinstance(const, CodeType) and _names_a_server(const):
            return True
    return False


def _needs_db_server(item: pytest.Item) -> bool:
    """Whether ``item`` uses a database server, directly or through other fixtures.

    ``item.fixturenames`` covers fixtures requested as arguments. Some fixtures and tests pick
    their server at run time with ``request.getfixturevalue("pg_server" if ... else ...)``,
    which no fixture list shows; their code names the server fixture, so look there too.
    """
    if DB_SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)  # the closure's fixture definitions: private, long stable
    if info is not None:
        functions += [definition.func for defs in info.name2fixturedefs.values() for definition in defs]
    codes = [getattr(function, "__code__", None) for function in functions]
    return any(_names_a_server(code) for code in codes if isinstance(code, CodeType))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``db`` every test that needs a PostgreSQL or MariaDB server, so ``-m "not db"`` runs the rest."""
    for item in items:
        if _needs_db_server(item):
            item.add_marker(pytest.mark.db)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what the imports and the collection built out of the garbage collector's reach (``gc.freeze``).

    Python's full collections walk every object the collector tracks; after collection those are
    mostly botocore's and moto's models, the modules and the test items, which live until the
    process ends. Every full collection walked them again: about 0.05 s each, a quarter of the CPU
    time of a run of cheap tests. Objects the tests make are collected as before (``gc.collect``
    still finds them: ``tests/test_failures.py``, ``tests/test_otel_lifecycle.py``).
    """
    gc.collect()  # what is garbage already is freed, not frozen
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run a test marked ``unmeasured`` with coverage measurement stopped, if it is on (CONTRIBUTING.md, "Coverage").

    pytest-cov's own ``no_cover`` mark fails under ``--no-cov`` (pytest-cov 7.1), which CI's
    other Pythons use; this asks coverage.py for the running measurement instead.
    """
    measuring = coverage.Coverage.current() if item.get_closest_marker("unmeasured") else None
    if measuring is None:
        yield
        return
    measuring.stop()
    try:
        yield
    finally:
        measuring.start()


def pytest_configure(config: pytest.Config) -> None:
    """Register the collection steps of :mod:`tests.collection` (each example once, long tests first)."""
    config.pluginmanager.register(EachExampleRunsOnce(), "secretcache-each-example-once")
    config.pluginmanager.register(LongTestsFirst(), "secretcache-long-tests-first")


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; no SECRETCACHE_* or endpoint settings leak in."""
    for name in list(os.environ):
        if name.startswith(("SECRETCACHE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never look for instance credentials


class VersionClock:
    """Stands in for the ``time`` module of moto's Secrets Manager: each call one second later.

    moto stamps a version's ``CreatedDate`` with whole seconds, real Secrets Manager with
    milliseconds; versions a test creates within one second would look created at the same
    moment, and the order of versions is what monotonic reads go by. Each reading is a second
    after the previous one (and never before the real time).
    """

    def __init__(self) -> None:
        self._now = time.time()
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            self._now = max(self._now + 1.0, time.time())
            return self._now


@pytest.fixture(autouse=True)
def _versions_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every version moto creates gets a creation date of its own (see :class:`VersionClock`)."""
    monkeypatch.setattr(moto_secretsmanager_models, "time", VersionClock())


class FakeClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """A ``time.sleep`` for code under test: the clock moves, nobody waits; each call is recorded."""
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` likewise (it still yields to the event loop once)."""
        self.sleep(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Calls:
    """Counts Secrets Manager calls made through one client, and injects faults or delays.

    Hooks run on botocore's ``before-call`` event, the documented way to observe a client.
    """

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._faults: list[Callable[[str, dict[str, Any]], None]] = []
        client.meta.events.register("before-call.secretsmanager.*", self._before_call)

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1
            faults = list(self._faults)
        api_params = json.loads(params["body"] or b"{}")  # the JSON request: SecretId, VersionStage, ...
        for fault in faults:
            fault(model.name, api_params)

    def __getitem__(self, operation: str) -> int:
        with self._lock:
            return self.counts[operation]

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def add_fault(self, fault: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        """Run ``fault(operation, params)`` before every call; returns a remover."""
        with self._lock:
            self._faults.append(fault)

        def remove() -> None:
            with self._lock:
                self._faults.remove(fault)

        return remove

    def fail_with(self, code: str, status: int = 400, times: int | None = None) -> Callable[[], None]:
        """Make calls fail with a service error ``code`` (all calls, or the next ``times``)."""

        def make(operation: str) -> Exception:
            error = {
                "Error": {"Code": code, "Message": f"injected {code}"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            return ClientError(error, operation)  # type: ignore[arg-type]

        return self._raise(make, times)

    def raise_error(self, error: Exception, times: int | None = None) -> Callable[[], None]:
        """Make calls raise ``error`` (all calls, or the next ``times``)."""
        return self._raise(lambda _operation: error, times)

    def _raise(self, make: Callable[[str], Exception], times: int | None) -> Callable[[], None]:
        remaining = [times]

        def fault(operation: str, _params: dict[str, Any]) -> None:
            if remaining[0] is not None:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            raise make(operation)

        return self.add_fault(fault)

    def hold(self) -> threading.Event:
        """Block every call until the returned event is set (a slow backend)."""
        gate = threading.Event()
        self.add_fault(lambda _op, _params: _wait(gate))
        return gate


WATCHDOG = 20.0  # seconds; only ever reached when something deadlocks


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until ``condition`` holds; fail (never hang) if it does not within the watchdog."""
    deadline = time.monotonic() + WATCHDOG
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached: deadlock or lost wake-up")
        time.sleep(0.001)


def quiescent(cache: Any) -> None:
    """Wait (under the watchdog) until ``cache`` has no fetch in flight and none still finishing.

    A reader holding a value it may serve past its TTL returns once its fetch's first attempt
    fails, while the retries go on in the background; tests that script an outage step by step
    wait for those retries to end before moving the clock. A fetch leaves the store's table
    under its lock; its thread then counts, logs and calls the listeners, still inside
    ``Runner.run``: no other thread may be in there for this cache either.
    """
    owner = cache if hasattr(cache, "_store") else cache.cache
    store, runner = owner._store, owner._runner
    wait_until(lambda: store.hits_size_flying()[2] == 0 and not _running(runner))


def _running(runner: Runner) -> bool:
    """Whether a thread other than this one is inside ``runner.run`` (a fetch not finished)."""
    me = threading.get_ident()
    return any(
        frame.f_code is Runner.run.__code__ and frame.f_locals.get("self") is runner
        for ident, top in sys._current_frames().items()
        if ident != me
        for frame in _stack(top)
    )


def inside(thread: threading.Thread, function: Callable[..., object]) -> bool:
    """Whether ``thread`` is running ``function`` now (anywhere on its stack)."""
    return any(frame.f_code is function.__code__ for frame in _stack(sys._current_frames().get(thread.ident or 0)))


def _stack(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and its callers, innermost first."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def _wait(gate: threading.Event) -> None:
    if not gate.wait(timeout=30):
        raise AssertionError("a held call was never released")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's threaded HTTP server on a free loopback port, for the whole session."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _reset(endpoint: str) -> None:
    """Wipe the moto server's state through its reset API."""
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/moto-api/reset")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.fixture(params=["in-process", "http"])
def backend(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """A factory of real boto3 clients talking to moto, in-process or over HTTP."""
    if request.param == "in-process":
        with mock_aws():
            yield lambda: boto3.client("secretsmanager", region_name=REGION)
    else:
        endpoint = request.getfixturevalue("moto_server")
        _reset(endpoint)
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)
        yield lambda: boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint, config=config)
        _reset(endpoint)


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto only, for tests where the wire does not matter."""
    with mock_aws():
        yield


@pytest.fixture
def client(aws: None) -> Any:
    """An in-process moto client used by the cache under test."""
    return boto3.client("secretsmanager", region_name=REGION)


@pytest.fixture
def admin(client: Any) -> Any:
    """A second client for setting up secrets, so set-up calls are not counted."""
    return boto3.client("secretsmanager", region_name=REGION)


@pytest.fixture
def calls(client: Any) -> Calls:
    return Calls(client)


@pytest.fixture
def replica(aws: None) -> Any:
    """A client of the replica Region (in-process moto), for caches that fail over to it."""
    return boto3.client("secretsmanager", region_name=REPLICA_REGION)


@pytest.fixture
def replica_calls(replica: Any) -> Calls:
    return Calls(replica)


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    """A secretsmanager client (no backend) and the botocore ``Stubber`` active on it: each call must be scripted."""
    client = boto3.client("secretsmanager", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture
def cli_secrets(aws: None) -> Any:
    """Three secrets for the command line tests: a JSON object, a plain string and a binary."""
    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name="app/db", SecretString=json.dumps({"username": "app", "port": 5432}))
    client.create_secret(Name="plain", SecretString="pw-1")
    client.create_secret(Name="blob", SecretBinary=b"\x00\x01binary")
    return client


@pytest.fixture
def closed_endpoint() -> str:
    """An endpoint URL on a loopback port nothing listens on: every connection is refused at once."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture
def aws_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Write a temporary AWS config file and shared credentials file and point the environment at them."""

    def write(config: str, credentials: str) -> None:
        (tmp_path / "config").write_text(config)
        (tmp_path / "credentials").write_text(credentials)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))

    return write


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """A throwaway PostgreSQL server with scram-sha-256 password auth, for the whole session."""
    with postgres() as server:
        yield server


@pytest.fixture(scope="session")
def maria_server() -> Iterator[Server]:
    """A throwaway MariaDB server with password auth, for the whole session."""
    with mariadb() as server:
        yield server


# -- shared set-up of the split test modules (issue 23) ----------------------------------------


@pytest.fixture
def proxy(moto_server: str) -> Iterator[Any]:
    """A :class:`tests.faultproxy.FaultProxy` in front of a freshly reset moto server, reset again after."""
    from tests.faultproxy import FaultProxy

    _reset(moto_server)
    proxy = FaultProxy(moto_server)
    yield proxy
    proxy.close()
    _reset(moto_server)
