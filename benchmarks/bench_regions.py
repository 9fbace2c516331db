"""Reads during a primary-Region outage, for a cold and a warm process, with and without replicas.

Run:  pip install -e '.[bench]' && python benchmarks/bench_regions.py

Three secrets in moto's in-process Secrets Manager (no network), each replicated from us-east-1
to us-west-2 with ``ReplicateSecretToRegions`` (moto keeps the replicas in sync). The cache gets
a us-east-1 client and, in the "with replicas" rows, a us-west-2 client in ``replica_regions``.
A botocore ``before-call`` hook on each client plays a realistic backend and counts the calls
that reach it: every call sleeps 20-30 ms in us-east-1 and 35-50 ms in us-west-2 (a farther
Region); during the outage, which covers the whole measured run, every us-east-1 call then fails,
alternately with ``EndpointConnectionError`` and a ``ThrottlingException``. us-west-2 never fails.

Each scenario runs 4 reader threads for 4 s of real time; each reads the three secrets in turn
with ``get_secret`` and pauses 5 ms between reads. *Cold*: the cache is created during the
outage (a new container or Lambda environment). *Warm*: the cache read every secret from
us-east-1 just before the outage, with a TTL of 1.5 s, so the values reach their refresh-ahead
point and their TTL during the outage. Cache settings: ``ttl=1.5``, ``replica_ttl=1.0``, default
``refresh_ahead=0.8`` and ``max_stale=3600``, and a small retry policy so the run stays short:
``RetryPolicy(attempts=3, initial_delay=0.05, max_delay=0.2, deadline=2.0, failure_backoff=0.5,
max_failure_backoff=2.0)``. Calls are counted from the end of the warm-up to the cache's close.
Latency figures include the GIL hand-offs of 4 threads; compare the rows of one run with each
other, never across machines.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

import boto3
from _recording import Attempt, Read, Recording, clusters, join_reads, ms, options, percentile, start_readers
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from secretcache import RetryPolicy, SecretCache

PRIMARY = "us-east-1"
REPLICA = "us-west-2"
SECRETS = tuple(f"bench/regions/{index}" for index in range(3))
DELAYS = {PRIMARY: (0.020, 0.030), REPLICA: (0.035, 0.050)}
TTL = 1.5
REPLICA_TTL = 1.0
RETRY = RetryPolicy(
    attempts=3, initial_delay=0.05, max_delay=0.2, deadline=2.0, failure_backoff=0.5, max_failure_backoff=2.0
)
READERS = 4
READ_PAUSE = 0.005
DURATION = 4.0
WAITED = 0.005  # a read slower than this waited for a fetch (a hit takes microseconds)
QUICK_DURATION = 0.5  # --quick: seconds per scenario
# Botocore's own retries off, as in the clients the cache builds: the cache's RetryPolicy is the one policy.
CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"})


class Outage:
    """A Region's fault: while ``down``, calls fail alternately with a connection error and throttling."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.down = False
        self._failed = 0
        self._lock = threading.Lock()

    def __call__(self, _start: float) -> Exception | None:
        with self._lock:
            if not self.down:
                return None
            self._failed += 1
            odd = self._failed % 2 == 1
        if odd:
            return EndpointConnectionError(endpoint_url=f"https://secretsmanager.{self.region}.amazonaws.com")
        return ClientError(
            {
                "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "GetSecretValue",
        )


@dataclass(frozen=True, slots=True)
class Row:
    """One scenario's results."""

    name: str
    reads: list[Read]
    primary_calls: int
    primary_failed: int
    primary_fetches: list[tuple[float, int]]
    replica_calls: int
    stale_served: int
    failovers: int
    api_errors: dict[str, int]


def scenario(*, warm: bool, replicas: bool, duration: float) -> Row:
    """One run in a fresh moto backend: warm up (or not), start the outage, read for ``duration`` s."""
    with mock_aws():
        admin = boto3.client("secretsmanager", region_name=PRIMARY)
        for secret_id in SECRETS:
            admin.create_secret(Name=secret_id, SecretString=f"value of {secret_id}")
            admin.replicate_secret_to_regions(SecretId=secret_id, AddReplicaRegions=[{"Region": REPLICA}])
        clients = {region: boto3.client("secretsmanager", region_name=region, config=CONFIG) for region in DELAYS}
        recording = Recording()
        outages = {region: Outage(region) for region in DELAYS}
        for seed, (region, client) in enumerate(clients.items()):
            client.get_secret_value(SecretId=SECRETS[0])  # load botocore's models before timing
            draw = random.Random(seed)
            low, high = DELAYS[region]
            recording.backend(
                client, delay=lambda d=draw, lo=low, hi=high: d.uniform(lo, hi), fault=outages[region], region=region
            )
        primary = outages[PRIMARY]
        if not warm:
            primary.down = True  # the process starts during the outage
        cache = SecretCache(
            clients[PRIMARY],
            ttl=TTL,
            retry=RETRY,
            replica_regions=[clients[REPLICA]] if replicas else (),
            replica_ttl=REPLICA_TTL,
        )
        if warm:
            for secret_id in SECRETS:
                cache.get_secret(secret_id)
            primary.down = True
        recording.restart()
        before = cache.stats()
        threads, outputs = start_readers(
            recording,
            lambda index, n: cache.get_secret(SECRETS[(index + n) % len(SECRETS)]).region,
            count=READERS,
            pause=READ_PAUSE,
            until=duration,
        )
        reads = join_reads(threads, outputs, timeout=duration + 30.0)
        cache.close()
        stats = cache.stats()
        api_errors = Counter(stats.api_errors)
        api_errors.subtract(before.api_errors)
        calls = recording.sorted_attempts(PRIMARY)
        return Row(
            name=f"{'warm' if warm else 'cold'}, {'with' if replicas else 'without'} replicas",
            reads=reads,
            primary_calls=len(calls),
            primary_failed=sum(not call.ok for call in calls),
            primary_fetches=fetches(calls),
            replica_calls=len(recording.sorted_attempts(REPLICA)),
            stale_served=stats.stale_served - before.stale_served,
            failovers=stats.failovers - before.failovers,
            api_errors={name: count for name, count in api_errors.items() if count},
        )


def fetches(calls: list[Attempt]) -> list[tuple[float, int]]:
    """Group one Region's calls (by start) into fetches: (start s since the origin, attempts).

    A retry comes from the same thread within max_delay (plus a margin) of the attempt before.
    """
    grouped: list[tuple[float, int]] = []
    last: dict[str, tuple[int, float]] = {}  # thread -> (index in grouped, end of its last call)
    for call in calls:
        index, previous = last.get(call.thread, (-1, float("-inf")))
        if index >= 0 and call.start - previous < RETRY.max_delay + 0.1 and grouped[index][1] < RETRY.attempts:
            grouped[index] = (grouped[index][0], grouped[index][1] + 1)
        else:
            index = len(grouped)
            grouped.append((call.start, 1))
        last[call.thread] = (index, call.end)
    return grouped


def table(rows: list[Row]) -> list[str]:
    header = (
        f"{'scenario':<24} {'reads':>6} {'errors':>6} {'stale':>6} {'replica':>7} {'waited':>6} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {PRIMARY + ' calls':>15} {REPLICA + ' calls':>15} {'failovers':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        latencies = sorted(read.latency for read in row.reads)
        errors = sum(read.error is not None for read in row.reads)
        from_replica = sum(read.value == REPLICA for read in row.reads)
        waited = sum(read.latency > WAITED for read in row.reads)
        primary = f"{row.primary_calls} ({row.primary_failed} failed)"
        lines.append(
            f"{row.name:<24} {len(row.reads):>6,} {errors:>6,} {row.stale_served:>6,} {from_replica:>7,} {waited:>6,} "
            f"{ms(percentile(latencies, 0.50)):>7} {ms(percentile(latencies, 0.99)):>7} {ms(latencies[-1]):>7} "
            f"{primary:>15} {row.replica_calls:>15} {row.failovers:>9}"
        )
    return lines


def details(row: Row) -> str:
    """Where the slow reads and the errors were, for the notes under the table."""
    first = row.reads[0]
    slowest = max(row.reads, key=lambda read: read.latency)
    errors = Counter(read.error for read in row.reads if read.error)
    slow = [read for read in row.reads if read.latency > WAITED]
    runs = clusters(slow)  # reads that waited together, for one fetch
    where = ", ".join(
        f"{len(run)} at t={run[0].at:.2f} s up to {max(read.latency for read in run) * 1e3:.0f} ms" for run in runs
    )
    return (
        f"{row.name}: first read {first.latency * 1e3:.0f} ms; slowest {slowest.latency * 1e3:.0f} ms at "
        f"t={slowest.at:.2f} s; {len(slow)} reads waited > {WAITED * 1e3:g} ms ({where or 'none'}); "
        f"read errors: {dict(errors) or 'none'}; API errors: {row.api_errors or 'none'}; {PRIMARY} fetches "
        "(start: attempts): " + (", ".join(f"{at:.2f} s: {count}" for at, count in row.primary_fetches) or "none")
    )


def main() -> None:
    duration = QUICK_DURATION if options(__doc__).quick else DURATION
    print(
        f"{len(SECRETS)} secrets replicated {PRIMARY} -> {REPLICA}; {PRIMARY} down for the whole run "
        f"(EndpointConnectionError / ThrottlingException), {READERS} readers every {READ_PAUSE * 1e3:g} ms "
        f"for {duration:g} s; ttl={TTL:g} s, replica_ttl={REPLICA_TTL:g} s; backend {DELAYS[PRIMARY][0] * 1e3:g}-"
        f"{DELAYS[PRIMARY][1] * 1e3:g} ms ({PRIMARY}), {DELAYS[REPLICA][0] * 1e3:g}-{DELAYS[REPLICA][1] * 1e3:g} ms "
        f"({REPLICA});\n{RETRY}\n"
    )
    rows = [
        scenario(warm=warm, replicas=replicas, duration=duration)
        for warm in (False, True)
        for replicas in (False, True)
    ]
    for line in table(rows):
        print(line)
    print(
        f"\nerrors: reads that raised; stale: reads served a value past its TTL; replica: reads of a value read from "
        f"{REPLICA};\nwaited: reads slower than {WAITED * 1e3:g} ms (they waited for a fetch); calls: attempts "
        "reaching each Region's backend;\nfailovers: stats().failovers\n"
    )
    for row in rows:
        print(details(row))


if __name__ == "__main__":
    main()
