"""examples/fastapi_app.py under concurrent requests through real password rotations on PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WATCHDOG, Calls
from tests.db import Database, finish_rotation, rotate_secret_stage
from tests.servers import Server

asyncpg = pytest.importorskip("asyncpg")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def _load_example() -> Any:
    """examples/fastapi_app.py as a module (examples/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
    spec = importlib.util.spec_from_file_location("fastapi_app_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


create_app = _load_example().create_app

SECRET = "prod/orders/db"
WORKERS = 8  # concurrent clients, each sending requests back to back
PER_PHASE = 40  # requests each phase must serve


class Logins:
    """Wraps ``asyncpg.connect`` (keeping its module, so the factory still infers the driver) and counts logins."""

    def __init__(self) -> None:
        self.password_of: dict[int, str] = {}  # server process id -> password it logged in with
        self.refused = 0

    @functools.wraps(asyncpg.connect)
    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        try:
            connection = await asyncpg.connect(*args, **kwargs)
        except asyncpg.InvalidPasswordError:
            self.refused += 1
            raise
        self.password_of[connection.get_server_pid()] = kwargs["password"]
        return connection


@dataclass
class Traffic:
    """``WORKERS`` clients sending ``GET /whoami`` back to back; each response filed under the phase it began in."""

    http: Any
    phase: str = "before"
    served: list[tuple[str, int]] = field(default_factory=list)  # (phase, backend pid)
    failures: list[str] = field(default_factory=list)
    stop: bool = False
    open: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.open.set()

    async def client(self) -> None:
        while not self.stop:
            await self.open.wait()
            phase = self.phase
            self.in_flight += 1
            try:
                response = await self.http.get("/whoami")
                response.raise_for_status()
                self.served.append((phase, response.json()["backend_pid"]))
            except Exception as error:  # any failed request fails the test, with its phase
                self.failures.append(f"{phase}: {error!r}")
            finally:
                self.in_flight -= 1

    async def next_phase(self, phase: str, engine: Any) -> None:
        """Replace the engine's pool, so every later request runs on a connection opened from here on.

        Traffic pauses while the pool is replaced: SQLAlchemy never closes a connection checked
        out during ``dispose()`` (it goes back to the discarded pool), and asyncpg warns of it.
        """
        self.open.clear()
        await self._until(lambda: self.in_flight == 0, "drain")
        await engine.dispose()
        self.phase = phase
        self.open.set()

    async def serve(self, phase: str, count: int = PER_PHASE) -> None:
        """Wait (within the watchdog) until ``count`` requests started in ``phase`` were served."""
        await self._until(lambda: sum(1 for started, _ in self.served if started == phase) >= count, phase)

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + WATCHDOG  # only ever reached when stuck
        while not condition():
            assert not self.failures, self.failures
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: stuck after {len(self.served)} requests")
            await asyncio.sleep(0.005)

    def pids(self, *phases: str) -> list[int]:
        return [pid for started, pid in self.served if started in phases]


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[Traffic]:
    """The app's lifespan (which httpx's ASGI transport does not run) with traffic flowing."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        traffic = Traffic(http)
        tasks = [asyncio.create_task(traffic.client()) for _ in range(WORKERS)]
        try:
            yield traffic
        finally:
            traffic.stop = True
            traffic.open.set()
            await asyncio.gather(*tasks)


def reads(calls: list[str], stage: str) -> int:
    return sum(1 for read in calls if read == stage)


@pytest.fixture
def db(pg_server: Server) -> Database:
    db = Database(pg_server, "psycopg", f"app_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    db.create_user(db.user, db.password)
    return db


@pytest.fixture
def stages(calls: Calls) -> list[str]:
    """The label of every ``GetSecretValue`` the cache makes, in order."""
    seen: list[str] = []

    def record(operation: str, params: dict[str, Any]) -> None:
        if operation == "GetSecretValue":
            seen.append(params.get("VersionStage", "AWSCURRENT"))

    calls.add_fault(record)
    return seen


async def test_requests_survive_a_single_user_rotation(
    db: Database, client: Any, admin: Any, calls: Calls, stages: list[str]
) -> None:
    """Zero failed requests through a rotation; every login after it uses the new password; 3 API calls in all."""
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    logins = Logins()
    app = create_app(SECRET, client=client, connect=logins.connect)
    new_password = f"pw-{secrets.token_hex(8)}"
    async with running(app) as traffic:
        engine = app.state.engine
        await traffic.serve("before")
        # createSecret and setSecret: the database has the new password, AWSCURRENT still the old.
        old, new = await asyncio.to_thread(rotate_secret_stage, admin, SECRET, db.secret(db.user, new_password))
        await asyncio.to_thread(db.set_password, db.user, new_password)
        await traffic.next_phase("setSecret", engine)  # new connections log in after setSecret
        await traffic.serve("setSecret")
        # finishSecret: AWSCURRENT moves to the new version (the cache still holds the old one).
        await asyncio.to_thread(finish_rotation, admin, SECRET, old, new)
        await traffic.next_phase("finishSecret", engine)
        await traffic.serve("finishSecret")
    assert traffic.failures == []
    assert len(traffic.served) >= 3 * PER_PHASE
    assert {logins.password_of[pid] for pid in traffic.pids("setSecret", "finishSecret")} == {new_password}
    assert not db.login_works(db.user, db.password)  # the rotation really took the old password away
    # The first read, one forced refresh of AWSCURRENT (same version), one read of AWSPENDING:
    # the same 3 calls whatever the number of requests and logins.
    assert (reads(stages, "AWSCURRENT"), reads(stages, "AWSPENDING"), calls.total) == (2, 1, 3)
    assert 1 <= logins.refused <= WORKERS  # only the logins racing the first recovery tried the old password
    print(f"\nrotation: {len(traffic.served)} requests, {len(traffic.failures)} failed, "
          f"{calls.total} Secrets Manager calls {dict(calls.counts)}, {logins.refused} refused logins")  # fmt: skip


async def test_requests_wait_out_the_gap_before_the_secret_moves(
    db: Database, client: Any, admin: Any, calls: Calls, stages: list[str]
) -> None:
    """The database changes first and the secret a moment later: requests wait in the grace, none fails.

    PutSecretValue lands while the second poll of the grace is on its way, so the counts are exact:
    the polls are shared by every waiting login, whatever their number.
    """
    admin.create_secret(Name=SECRET, SecretString=db.secret(db.user, db.password))
    logins = Logins()
    app = create_app(SECRET, client=client, connect=logins.connect)
    new_password = f"pw-{secrets.token_hex(8)}"

    def put_before_the_second_poll(operation: str, params: dict[str, Any]) -> None:
        # AWSCURRENT reads: 1 the first read, 2 the forced refresh, 3 the first poll, 4 the second poll.
        if operation == "GetSecretValue" and reads(stages, "AWSCURRENT") == 4:
            admin.put_secret_value(SecretId=SECRET, SecretString=db.secret(db.user, new_password))

    async with running(app) as traffic:
        await traffic.serve("before")
        calls.add_fault(put_before_the_second_poll)
        await asyncio.to_thread(db.set_password, db.user, new_password)  # no AWSPENDING: a manual change
        await traffic.next_phase("gap", app.state.engine)
        await traffic.serve("gap")
    assert traffic.failures == []
    assert {logins.password_of[pid] for pid in traffic.pids("gap")} == {new_password}
    assert (reads(stages, "AWSCURRENT"), reads(stages, "AWSPENDING"), calls.total) == (4, 1, 4 + 1)
    assert 1 <= logins.refused <= WORKERS
    print(f"\ngap: {len(traffic.served)} requests, {len(traffic.failures)} failed, "
          f"{calls.total} Secrets Manager calls {dict(calls.counts)}, {logins.refused} refused logins")  # fmt: skip
