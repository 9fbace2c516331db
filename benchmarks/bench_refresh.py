"""Read latency while values refresh, forced-refresh cost, and prefetch cost.

Run:  pip install -e '.[bench]' && python benchmarks/bench_refresh.py

A 50 ms backend (moto in-process behind a sleeping botocore hook), TTL 1 s, 4 reader threads
reading for a few seconds with a short pause between reads (as request handlers would). A read
counts as *blocked* when it takes longer than 20 ms: far above a hit or a GIL hand-off
(5 ms), far below the backend's 50 ms. Peers (the official aws-secretsmanager-caching and
Powertools parameters) get the same backend and TTL when installed.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from _recording import options
from moto import mock_aws

from secretcache import SecretCache

SECRET = "bench/db"  # noqa: S105 - a secret name
BACKEND_DELAY = 0.05
TTL = 1.0
DURATION = 6.0
READERS = 4
BLOCKED = 0.020
REFRESHES = 20  # forced refreshes timed
PREFETCHED = 100  # secrets prefetched, then read one by one


def slow_backend(client: Any) -> list[float]:
    """Make every Secrets Manager call take BACKEND_DELAY; return the list of call times."""
    calls: list[float] = []

    def delay(**_: Any) -> None:
        calls.append(time.perf_counter())
        time.sleep(BACKEND_DELAY)

    client.meta.events.register("before-call.secretsmanager.*", delay)
    return calls


def run_readers(read: Callable[[], Any]) -> list[float]:
    """READERS threads call ``read`` for DURATION seconds; return every read's latency."""
    latencies: list[list[float]] = [[] for _ in range(READERS)]
    stop = threading.Event()

    def reader(out: list[float]) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            read()
            out.append(time.perf_counter() - start)
            time.sleep(0.0005)

    threads = [threading.Thread(target=reader, args=(out,)) for out in latencies]
    for thread in threads:
        thread.start()
    time.sleep(DURATION)
    stop.set()
    for thread in threads:
        thread.join()
    return [latency for out in latencies for latency in out]


def report(name: str, latencies: list[float], calls: int) -> None:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[int(len(ordered) * 0.99)] * 1e6
    blocked = [latency for latency in ordered if latency > BLOCKED]
    print(
        f"{name:<40} {len(ordered):>8,} {p50:>8.1f} {p99:>9.1f} {ordered[-1] * 1e3:>9.1f} "
        f"{len(blocked) / DURATION:>10.1f} {max(blocked, default=0) * 1e3:>11.1f} {calls:>6}"
    )


def latency_under_refresh(client: Any, calls: list[float]) -> None:
    print(
        f"{'reads during refreshes (50 ms backend)':<40} {'reads':>8} {'p50 us':>8} {'p99 us':>9} "
        f"{'max ms':>9} {'blocked/s':>10} {'blocked ms':>11} {'calls':>6}"
    )
    for name, ahead in (("secretcache refresh_ahead=0.8", 0.8), ("secretcache refresh_ahead=None", None)):
        cache = SecretCache(client, ttl=TTL, ttl_jitter=0.0, refresh_ahead=ahead)
        cache.get_secret_string(SECRET)
        before = len(calls)
        report(name, run_readers(lambda c=cache: c.get_secret_string(SECRET)), len(calls) - before)
        cache.close()
    try:
        from aws_secretsmanager_caching import SecretCache as OfficialCache
        from aws_secretsmanager_caching import SecretCacheConfig

        official = OfficialCache(config=SecretCacheConfig(secret_refresh_interval=TTL), client=client)
        official.get_secret_string(SECRET)
        before = len(calls)
        report(
            "aws-secretsmanager-caching", run_readers(lambda: official.get_secret_string(SECRET)), len(calls) - before
        )
    except ImportError:
        pass
    try:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        provider = SecretsProvider(boto3_client=client)
        provider.get(SECRET, max_age=1)
        before = len(calls)
        report("powertools parameters", run_readers(lambda: provider.get(SECRET, max_age=1)), len(calls) - before)
    except ImportError:
        pass


def forced_refresh_cost(client: Any, calls: list[float]) -> None:
    cache = SecretCache(client)
    cache.get_secret_string(SECRET)
    samples = []
    before = len(calls)
    for _ in range(REFRESHES):
        start = time.perf_counter()
        cache.refresh(SECRET)
        samples.append(time.perf_counter() - start)
    print(
        f"\nforced refresh: median {statistics.median(samples) * 1e3:.1f} ms "
        f"for a {BACKEND_DELAY * 1e3:.0f} ms backend, "
        f"{(len(calls) - before) / len(samples):.0f} API call per refresh"
    )


def prefetch_cost(client: Any) -> None:
    names = [f"bench/many-{index:03d}" for index in range(PREFETCHED)]
    for name in names:
        client.create_secret(Name=name, SecretString=name)
    counted: list[str] = []
    client.meta.events.register("before-call.secretsmanager.*", lambda model, **_: counted.append(model.name))
    cache = SecretCache(client)
    cache.prefetch(names)
    batch = len(counted)
    for name in names:
        cache.get_secret_string(name)
    after_prefetch = len(counted) - batch
    one_by_one = SecretCache(client)
    start = len(counted)
    for name in names:
        one_by_one.get_secret_string(name)
    print(
        f"{len(names)} secrets: prefetch = {batch} BatchGetSecretValue calls (+{after_prefetch} for reading them all); "
        f"one by one = {len(counted) - start} GetSecretValue calls"
    )


def main() -> None:
    global DURATION, REFRESHES, PREFETCHED  # --quick shrinks the run (past one refresh-ahead point still)
    if options(__doc__).quick:
        DURATION, REFRESHES, PREFETCHED = 1.0, 3, 25
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name=SECRET, SecretString="pw")
        calls = slow_backend(client)
        print(f"TTL {TTL} s, {READERS} readers for {DURATION} s each, blocked = slower than {BLOCKED * 1e3:.0f} ms\n")
        latency_under_refresh(client, calls)
        forced_refresh_cost(client, calls)
        prefetch_cost(client)


if __name__ == "__main__":
    main()
