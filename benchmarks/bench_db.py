"""What a connection factory adds to one connect when the secret is cached, sync and async.

Run:  pip install -e '.[bench]' && python benchmarks/bench_db.py [rounds] [--quick]

Secrets Manager is moto, in-process; the secret is read once before timing, so every timed
connect is a cache hit. To keep network and server noise out of a figure of microseconds, the
driver's connect is replaced by a function that does no I/O and returns a sentinel at once; the
bare row calls that function with fixed credentials, the factory row calls it through
``connection_factory`` / ``async_connection_factory``. Rows run interleaved, round by round, and
the overhead is the median over rounds of (factory - bare) in one round. Compare rows of one run
with each other, never across machines.

With PGHOST (and PGPORT, PGUSER, PGPASSWORD, PGDATABASE) set, it also times real logins to that
server with psycopg and asyncpg (when installed), bare and through a factory (install
``'.[bench,postgres,asyncpg]'``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import boto3
from moto import mock_aws

from secretcache import AsyncSecretCache, SecretCache
from secretcache.db import async_connection_factory, connection_factory

ROUNDS = 21
BATCH = 20_000  # connects per row per round, no I/O
REAL_BATCH = 20  # real logins per row per round
SECRET = "bench/db"  # noqa: S105 - a secret name
SENTINEL = object()
DOCUMENT = {"engine": "postgres", "host": "db.example", "port": 5432, "username": "app", "password": "bench-pw",
            "dbname": "orders"}  # fmt: skip
FIXED = {"host": "db.example", "port": 5432, "user": "app", "password": "bench-pw", "dbname": "orders"}


def no_io_connect(**kwargs: Any) -> object:
    """A driver connect that does nothing: what is left of a connect is the caller's overhead."""
    return SENTINEL


async def no_io_async_connect(**kwargs: Any) -> object:
    return SENTINEL


def sync_batch(connect: Callable[[], object], n: int) -> float:
    """Nanoseconds per ``connect()`` over ``n`` calls."""
    start = time.perf_counter_ns()
    for _ in range(n):
        connect()
    return (time.perf_counter_ns() - start) / n


async def async_batch(connect: Callable[[], Awaitable[object]], n: int) -> float:
    """Nanoseconds per ``await connect()`` over ``n`` calls, in one task."""
    start = time.perf_counter_ns()
    for _ in range(n):
        await connect()
    return (time.perf_counter_ns() - start) / n


def report(title: str, unit: str, scale: float, samples: dict[str, list[float]], pairs: list[tuple[str, str]]) -> None:
    """Medians per row, then the median per-round overhead of each (factory, bare) pair."""
    print(f"\n{title} (median of {len(next(iter(samples.values())))} interleaved rounds)")
    for name, values in samples.items():
        print(f"  {name:<52} {statistics.median(values) / scale:>10.2f} {unit}")
    for factory, bare in pairs:
        overhead = statistics.median(f - b for f, b in zip(samples[factory], samples[bare], strict=True))
        print(f"  overhead of {factory!r}: {overhead / scale:.2f} {unit}")


def no_io(client: Any, rounds: int) -> None:
    cache = SecretCache(client, ttl=3600)
    async_cache = AsyncSecretCache(client, ttl=3600)
    sync_factory = connection_factory(cache, SECRET, no_io_connect, mapping="psycopg")
    async_factory = async_connection_factory(async_cache, SECRET, no_io_async_connect, mapping="psycopg")
    wrapped_factory = async_connection_factory(cache, SECRET, no_io_async_connect, mapping="psycopg")
    loop = asyncio.new_event_loop()
    assert sync_factory() is SENTINEL
    assert loop.run_until_complete(async_factory()) is SENTINEL
    assert loop.run_until_complete(wrapped_factory()) is SENTINEL

    rows: dict[str, Callable[[], float]] = {
        "sync: bare connect, fixed credentials": lambda: sync_batch(lambda: no_io_connect(**FIXED), BATCH),
        "sync: connection_factory": lambda: sync_batch(sync_factory, BATCH),
        "async: bare connect, fixed credentials": lambda: loop.run_until_complete(
            async_batch(lambda: no_io_async_connect(**FIXED), BATCH)
        ),
        "async: async_connection_factory (AsyncSecretCache)": lambda: loop.run_until_complete(
            async_batch(async_factory, BATCH)
        ),
        "async: async_connection_factory (SecretCache)": lambda: loop.run_until_complete(
            async_batch(wrapped_factory, BATCH)
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, run in rows.items():
            samples[name].append(run())
    loop.close()
    report(
        "one connect, no I/O (the factory's own cost)",
        "µs",
        1000.0,
        samples,
        [
            ("sync: connection_factory", "sync: bare connect, fixed credentials"),
            ("async: async_connection_factory (AsyncSecretCache)", "async: bare connect, fixed credentials"),
            ("async: async_connection_factory (SecretCache)", "async: bare connect, fixed credentials"),
        ],
    )
    api_calls = sum(cache.stats().api_calls.values()) + sum(async_cache.stats().api_calls.values())
    print(f"  Secrets Manager calls in all: {api_calls} (the first read of each cache; every timed connect hit)")


def real_logins(client: Any, rounds: int) -> None:
    """Real logins to the PostgreSQL server the PG* variables name, bare and through a factory."""
    env = os.environ
    server = {"host": env["PGHOST"], "port": int(env.get("PGPORT", "5432")), "password": env.get("PGPASSWORD", "")}
    user, dbname = env.get("PGUSER", "postgres"), env.get("PGDATABASE", "postgres")
    document = {**server, "username": user, "dbname": dbname}
    client.create_secret(Name="bench/real", SecretString=json.dumps(document))
    login: dict[str, Any] = {**server, "user": user, "dbname": dbname}  # the same login, fixed
    cache = SecretCache(client, ttl=3600)
    rows: dict[str, Callable[[], float]] = {}
    pairs: list[tuple[str, str]] = []
    loop = asyncio.new_event_loop()
    try:
        import psycopg

        def psycopg_bare() -> None:
            psycopg.connect(**login).close()

        psycopg_factory = connection_factory(cache, "bench/real", psycopg.connect)

        def psycopg_through() -> None:
            psycopg_factory().close()

        rows["psycopg: bare connect"] = lambda: sync_batch(psycopg_bare, REAL_BATCH)
        rows["psycopg: connection_factory"] = lambda: sync_batch(psycopg_through, REAL_BATCH)
        pairs.append(("psycopg: connection_factory", "psycopg: bare connect"))
    except ImportError:
        pass
    try:
        import asyncpg

        asyncpg_login: dict[str, Any] = {**server, "user": user, "database": dbname}
        asyncpg_factory = async_connection_factory(cache, "bench/real", asyncpg.connect)

        async def asyncpg_bare() -> None:
            await (await asyncpg.connect(**asyncpg_login)).close()

        async def asyncpg_through() -> None:
            await (await asyncpg_factory()).close()

        rows["asyncpg: bare connect"] = lambda: loop.run_until_complete(async_batch(asyncpg_bare, REAL_BATCH))
        rows["asyncpg: async_connection_factory"] = lambda: loop.run_until_complete(
            async_batch(asyncpg_through, REAL_BATCH)
        )
        pairs.append(("asyncpg: async_connection_factory", "asyncpg: bare connect"))
    except ImportError:
        pass
    if not rows:
        print("\nreal logins: neither psycopg nor asyncpg is installed")
        return
    for run in rows.values():  # warm: the first read of the secret, the drivers' first connect
        run()
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, run in rows.items():
            samples[name].append(run())
    loop.close()
    report(f"one real login to {login['host']}:{login['port']}", "ms", 1_000_000.0, samples, pairs)


def main() -> None:
    global BATCH, REAL_BATCH  # --quick shrinks the run
    args = sys.argv[1:]
    numbers = [arg for arg in args if arg != "--quick"]
    rounds = int(numbers[0]) if numbers else ROUNDS
    if "--quick" in args:  # checks the script works (and the real logins, when PGHOST is set), measures nothing
        rounds, BATCH, REAL_BATCH = 1, 200, 2
    print(f"Python {sys.version.split()[0]}; {rounds} rounds of {BATCH:,} connects per row (no I/O)")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name=SECRET, SecretString=json.dumps(DOCUMENT))
        no_io(client, rounds)
        if os.environ.get("PGHOST"):
            real_logins(client, max(3, rounds // 3))
        else:
            print("\nreal logins: set PGHOST (PGPORT, PGUSER, PGPASSWORD, PGDATABASE) to time them too")


if __name__ == "__main__":
    main()
