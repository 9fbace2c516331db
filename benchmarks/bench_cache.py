"""Hit latency, thread scaling, stampede cost and memory per entry of secretcache.

Run:  pip install -e '.[bench]' && python benchmarks/bench_cache.py

Everything runs locally against moto's in-process Secrets Manager. Rows for the official
``aws-secretsmanager-caching`` library and Powertools ``parameters`` appear when they are
installed (the ``bench`` extra installs both). Figures are medians of repeated batches; compare
rows of one run with each other, never across machines.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from time import monotonic
from typing import Any

import boto3
from _recording import options
from moto import mock_aws

from secretcache import SecretCache

BATCH = 200_000
REPEATS = 9
TURNS = 7  # interleaved throughput measurements per row
SECONDS = 0.5  # per throughput measurement
SLOW_BATCHES = {"official": 20_000, "powertools": 50_000, "boto3": 300}  # reads per batch of the slow rows
MEMORY_ENTRIES = 2000
SECRET = "bench/db"  # noqa: S105 - a secret name


def ns_per_call(batch: Callable[[int], None], n: int = 0, repeats: int = 0) -> float:
    """Median nanoseconds per operation over ``repeats`` batches of ``n`` operations (default BATCH, REPEATS)."""
    n, repeats = n or BATCH, repeats or REPEATS
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        batch(n)
        samples.append((time.perf_counter_ns() - start) / n)
    return statistics.median(samples)


def reference_batch(n: int) -> None:
    """The floor of a cache hit in CPython: a dict lookup plus a monotonic expiry check."""
    table = {SECRET: ("value", monotonic() + 3600.0)}
    get = table.get
    for _ in range(n):
        entry = get(SECRET)
        if entry is not None and monotonic() < entry[1]:
            _ = entry[0]


def loop_of(read: Callable[..., Any], *args: Any) -> Callable[[int], None]:
    """A batch calling ``read(*args)`` in a loop: one call per operation, like the reference."""

    def batch(n: int) -> None:
        for _ in range(n):
            read(*args)

    return batch


def interleaved(batches: dict[str, Callable[[int], None]], n: int = 0, repeats: int = 0) -> dict[str, float]:
    """Median nanoseconds per operation of each batch, the batches taking turns (default BATCH, REPEATS).

    Taking turns, every row sees the same moments of a busy machine, so the ratios between rows
    hold even when the absolute figures swing.
    """
    n, repeats = n or BATCH, repeats or REPEATS
    samples: dict[str, list[float]] = {name: [] for name in batches}
    for _ in range(repeats):
        for name, batch in batches.items():
            start = time.perf_counter_ns()
            batch(n)
            samples[name].append((time.perf_counter_ns() - start) / n)
    return {name: statistics.median(values) for name, values in samples.items()}


def hit_latency(client: Any) -> list[tuple[str, float]]:
    cache = SecretCache(client)
    cache.get_secret_string(SECRET)
    batches = {
        "reference: dict lookup + monotonic() check": reference_batch,
        "secretcache get_secret_string (hit)": loop_of(cache.get_secret_string, SECRET),
        "secretcache get_secret (hit)": loop_of(cache.get_secret, SECRET),
        "secretcache get_secret_json key (hit)": loop_of(cache.get_secret_json, SECRET, "user"),
        "secretcache get_secret_json document (hit)": loop_of(cache.get_secret_json, SECRET),
    }
    batches.update(model_batches(cache))
    with instrumented(client) as other:
        if other is not None:
            batches["secretcache get_secret_string (hit, OpenTelemetry on)"] = loop_of(other.get_secret_string, SECRET)
        rows = list(interleaved(batches).items())
    try:
        from aws_secretsmanager_caching import SecretCache as OfficialCache

        official = OfficialCache(client=client)
        official.get_secret_string(SECRET)
        batch = loop_of(official.get_secret_string, SECRET)
        rows.append(("aws-secretsmanager-caching (hit)", ns_per_call(batch, n=SLOW_BATCHES["official"], repeats=5)))
    except ImportError:
        pass
    try:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        provider = SecretsProvider(boto3_client=client)
        provider.get(SECRET, max_age=300)
        batch = loop_of(provider.get, SECRET, 300)
        rows.append(("powertools parameters (hit)", ns_per_call(batch, n=SLOW_BATCHES["powertools"], repeats=5)))
    except ImportError:
        pass

    def plain(_: int) -> None:
        client.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")

    plain_ns = ns_per_call(loop_of(plain, 0), n=SLOW_BATCHES["boto3"], repeats=3)
    rows.append(("plain boto3 GetSecretValue (moto, no network)", plain_ns))
    return rows


def model_batches(cache: SecretCache) -> dict[str, Callable[[int], None]]:
    """Hits of ``get_secret_model`` (frozen and mutable pydantic models), when pydantic is installed."""
    try:
        from pydantic import BaseModel, ConfigDict, SecretStr
    except ImportError:
        return {}

    class Frozen(BaseModel):
        model_config = ConfigDict(frozen=True)
        user: str
        password: SecretStr

    class Mutable(BaseModel):
        user: str
        password: SecretStr

    return {
        "secretcache get_secret_model frozen (hit)": loop_of(cache.get_secret_model, SECRET, Frozen),
        "secretcache get_secret_model mutable, copied (hit)": loop_of(cache.get_secret_model, SECRET, Mutable),
    }


@contextmanager
def instrumented(client: Any) -> Iterator[SecretCache | None]:
    """A warm cache instrumented by :mod:`secretcache.otel` with the real SDK (``None`` without it).

    On the way out the metrics are collected once, and must include every hit of the benchmark.
    """
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from secretcache.otel import instrument
    except ImportError:
        yield None
        return
    reader = InMemoryMetricReader()
    cache = SecretCache(client)
    uninstrument = instrument(
        cache, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=TracerProvider()
    )
    cache.get_secret_string(SECRET)
    yield cache
    data = reader.get_metrics_data()
    hits = [
        point.value
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "secretcache.reads"
        for point in metric.data.data_points
        if (point.attributes or {}).get("secretcache.result") == "hit"
    ]
    assert hits == [cache.stats().hits], hits  # the benchmark's hits, counted at collection
    uninstrument()


def reference_read(key: str, _table: dict[str, tuple[str, float]] = {SECRET: ("value", 1e18)}) -> str | None:  # noqa: B006
    """The reference row as a function, for the thread-scaling comparison."""
    entry = _table.get(key)
    if entry is not None and monotonic() < entry[1]:
        return entry[0]
    return None


def throughput(read: Callable[[str], Any], threads: int, seconds: float = 0.0) -> float:
    """Total reads per second across ``threads`` threads reading one warm key."""
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        done = 0
        barrier.wait()
        while not stop.is_set():
            for _ in range(1000):
                read(SECRET)
            done += 1000
        counts[index] = done

    seconds = seconds or SECONDS
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in workers:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def stampede(client: Any, threads: int = 32, delay: float = 0.05) -> int:
    """API calls when ``threads`` threads read one cold key at once from a slow backend."""
    calls = [0]
    lock = threading.Lock()

    def slow(**_: Any) -> None:
        with lock:
            calls[0] += 1
        time.sleep(delay)

    client.meta.events.register("before-call.secretsmanager.GetSecretValue", slow)
    try:
        cache = SecretCache(client)
        barrier = threading.Barrier(threads)

        def read(_: int) -> str:
            barrier.wait()
            return cache.get_secret_string(SECRET)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            assert set(pool.map(read, range(threads))) == {json.dumps({"user": "app", "password": "pw"})}
    finally:
        client.meta.events.unregister("before-call.secretsmanager.GetSecretValue", slow)
    return calls[0]


def memory_per_entry(client: Any, count: int = 0) -> tuple[float, int]:
    """Bytes held per cached entry beyond its value, measured by dropping ``count`` entries."""
    count = count or MEMORY_ENTRIES
    value_size = 0
    for index in range(count):
        client.create_secret(Name=f"mem/{index:05d}", SecretString=f"value-{index:05d}")
    cache = SecretCache(client, max_size=count)
    tracemalloc.start()  # only allocations made from here on are traced
    for index in range(count):
        value_size += sys.getsizeof(cache.get_secret_string(f"mem/{index:05d}"))
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    cache.invalidate()
    gc.collect()
    freed = before - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (freed - value_size) / count, value_size // count


def main() -> None:
    global BATCH, REPEATS, TURNS, SECONDS, SLOW_BATCHES, MEMORY_ENTRIES  # --quick shrinks the run
    if options(__doc__).quick:
        BATCH, REPEATS, TURNS, SECONDS, MEMORY_ENTRIES = 2_000, 3, 1, 0.05, 50
        SLOW_BATCHES = {"official": 200, "powertools": 500, "boto3": 3}
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name=SECRET, SecretString=json.dumps({"user": "app", "password": "pw"}))
        print(f"Python {sys.version.split()[0]} on {sys.platform}; medians of {REPEATS} batches of {BATCH:,} reads\n")
        rows = hit_latency(client)
        reference = rows[0][1]
        print("| hit latency | ns/get | x reference |\n| --- | ---: | ---: |")
        for name, ns in rows:
            print(f"| {name} | {ns:,.1f} | {ns / reference:.2f} |")
        by_name = dict(rows)
        json_ns = by_name["secretcache get_secret_json document (hit)"]
        for name in ("secretcache get_secret_model frozen (hit)", "secretcache get_secret_model mutable, copied (hit)"):
            if name in by_name:
                print(f"{name.removeprefix('secretcache ')}: {by_name[name] / json_ns:.2f}x a get_secret_json hit")

        cache = SecretCache(client)
        cache.get_secret_string(SECRET)
        # Interleaved repeats, medians: a shared 2-core VM swings 20% between seconds.
        readers = {"secretcache": cache.get_secret_string, "reference": reference_read}
        rates: dict[tuple[str, int], list[float]] = {(name, n): [] for name in readers for n in (1, 4, 8)}
        for _ in range(TURNS):
            for threads in (1, 4, 8):
                for name, read in readers.items():
                    rates[name, threads].append(throughput(read, threads))
        print("\n| threads reading one warm key | reads/s | x 1 thread | reference x 1 thread |")
        print("| --- | ---: | ---: | ---: |")
        for threads in (1, 4, 8):
            ours = statistics.median(rates["secretcache", threads])
            floor = statistics.median(rates["reference", threads]) / statistics.median(rates["reference", 1])
            ratio = ours / statistics.median(rates["secretcache", 1])
            print(f"| {threads} | {ours:,.0f} | {ratio:.2f} | {floor:.2f} |")

        calls = stampede(client)
        per_entry, value_bytes = memory_per_entry(client)
        print("\n| stampede and memory | value |\n| --- | ---: |")
        print(f"| 32-thread cold stampede, 50 ms backend: GetSecretValue calls | {calls} |")
        print(f"| memory per cached entry beyond its value, bytes | {per_entry:,.0f} |")
        print(f"| value object, bytes | {value_bytes} |")


if __name__ == "__main__":
    main()
