"""The application of ``test_serve_fleet.py``: an ASGI app run by ``uvicorn --workers 8``.

Each worker process reads one secret at start-up and then every 0.1 s, through the host's
``secretcache serve`` (``FLEET_MODE=server``: ``AgentClient``, an in-process TTL of
``FLEET_L1_TTL`` seconds) or straight from Secrets Manager (``FLEET_MODE=direct``: the boto3
client a ``SecretCache`` builds). It writes what it read to ``FLEET_DIR/<pid>``, which the test
reads: the test counts the workers and sees when a rotation reaches each of them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from secretcache import SecretCache
from secretcache.agent import AgentClient

SECRET = "prod/fleet/db"


def _cache() -> SecretCache:
    if os.environ["FLEET_MODE"] == "server":
        return SecretCache(client=AgentClient(), ttl=float(os.environ["FLEET_L1_TTL"]))
    return SecretCache(ttl=300)


def _report(cache: SecretCache, where: Path, stop: threading.Event) -> None:
    """Read the secret now and every 0.1 s; write a digest of it (never the value) to ``where``."""
    while True:
        digest = hashlib.sha256(cache.get_secret_string(SECRET).encode()).hexdigest()[:12]
        temporary = where.with_suffix(".tmp")
        temporary.write_text(digest)
        temporary.replace(where)
        if stop.wait(0.1):
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: start the reader thread at start-up; answer every request with the worker's pid."""
    if scope["type"] == "lifespan":
        stop = threading.Event()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                cache = _cache()
                where = Path(os.environ["FLEET_DIR"]) / str(os.getpid())
                threading.Thread(target=_report, args=(cache, where, stop), daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop.set()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})
