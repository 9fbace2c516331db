"""Replica Regions on the other read paths: prefetch, refresh-ahead, forced refresh, asyncio.

Also the time budget of one fetch across Regions, and the telemetry of a failover.

Faults are injected on the primary Region's client only; moto keeps the replica in us-west-2 in
sync. Counts, not timings: the cache runs on a fake clock and the retry policy does not wait.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import tenacity
from botocore.exceptions import ClientError

from secretcache import (
    AsyncSecretCache,
    RetryPolicy,
    SecretCache,
    SecretUnavailableError,
)
from secretcache._fetcher import in_region
from tests.conftest import FAST_RETRY, Calls, FakeClock, wait_until
from tests.regions import PRIMARY, REPLICA, THROTTLING, create, regional, sent_ids
from tests.test_cache import rotate

# -- prefetch, refresh-ahead, forced refresh ---------------------------------------------------


def test_prefetch_during_an_outage_is_one_batch_call_to_the_replica(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """The batch fails over as a whole; ARNs in it are rewritten; values match the ids asked."""
    names = [f"app/secret-{index}" for index in range(3)]
    arns = [create(admin, name, f"value-of-{name}") for name in names]
    seen = sent_ids(replica)
    calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    asked = [arns[0], *names[1:]]
    assert cache.prefetch(asked) == {}
    assert calls.counts == {"BatchGetSecretValue": 3}
    assert replica_calls.counts == {"BatchGetSecretValue": 1}
    assert seen == [[in_region(arns[0], REPLICA), *names[1:]]]
    values = [cache.get_secret(secret_id) for secret_id in asked]
    assert [value.secret_string for value in values] == [f"value-of-{name}" for name in names]
    assert [(value.arn, value.region) for value in values] == [(arn, REPLICA) for arn in arns]
    assert (calls.total, replica_calls.total) == (3, 1)  # the reads were hits
    assert cache.stats().failovers == 1  # a batch counts once


def test_prefetch_during_an_outage_keeps_a_secret_the_replica_lacks(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock
) -> None:
    """As for single reads, the replica's "not found" is no verdict: the stale value stays served."""
    create(admin, "db", "pw-1")
    create(admin, "local", "only-here", replicated=False)
    cache = regional(client, replica, clock)
    assert cache.prefetch(["db", "local"]) == {}
    calls.fail_with(THROTTLING)
    clock.advance(61)
    failures = cache.prefetch(["db", "local"])
    assert list(failures) == ["local"]
    assert isinstance(failures["local"], SecretUnavailableError)
    assert cache.get_secret_string("local") == "only-here"  # stale, as a single read would serve it


def test_refresh_ahead_fails_over_in_the_background(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """A background refresh during an outage installs the replica's value; reads never wait."""
    create(admin, "db", "pw-1")
    cache = regional(client, replica, clock, refresh_ahead=0.5)
    assert cache.get_secret("db").region == PRIMARY
    calls.fail_with(THROTTLING)
    rotate(admin, "db", "pw-2")
    clock.advance(31)  # past the refresh point, within the TTL
    assert cache.get_secret_string("db") == "pw-1"  # served at once
    wait_until(lambda: cache.stats().failovers == 1)
    value = cache.get_secret("db")
    assert (value.secret_string, value.region) == ("pw-2", REPLICA)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (1 + 3, 1)
    assert cache.stats().background_refreshes == 1


def test_forced_refresh_fails_over(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """refresh() during an outage returns the replica's current value, not the cached one."""
    create(admin, "db", "pw-1")
    cache = regional(client, replica, clock)
    assert cache.get_secret_string("db") == "pw-1"
    calls.fail_with(THROTTLING)
    rotate(admin, "db", "pw-2")
    value = cache.refresh("db")
    assert (value.secret_string, value.region) == ("pw-2", REPLICA)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (1 + 3, 1)
    assert cache.stats().failovers == 1


# -- the time budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("episode", "primary", "replica"), [(False, [0.0, 1.0], [1.0, 2.0, 3.0]), (True, [], [0.0, 1.0, 2.0, 3.0])]
)
def test_a_fetch_keeps_within_the_deadline_across_regions(
    episode: bool,
    primary: list[float],
    replica: list[float],
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Primary within half the deadline, replicas within what is left: no attempt starts past it.

    Waits are their largest (1 s each) so the deadline, not the attempts, ends the retries; they
    go through the cache's ``sleep``, which moves its fake clock.
    """
    monkeypatch.setattr(tenacity.wait, "random", SimpleNamespace(uniform=lambda _low, high: high))  # jitter, not time
    policy = RetryPolicy(attempts=10, initial_delay=1.0, max_delay=1.0, deadline=4.0)
    replica_client = boto3.client("secretsmanager", region_name=REPLICA)
    create(admin, "db", "pw-1")
    cache = SecretCache(
        client, retry=policy, replica_regions=[replica_client], refresh_ahead=None, clock=clock, sleep=clock.sleep
    )
    regions = cache._fetcher.regions
    assert regions is not None
    if episode:  # the primary failed just now: it is skipped during its backoff
        error = ClientError({"Error": {"Code": THROTTLING}}, "GetSecretValue")
        regions.primary_failed(PRIMARY, error, "GetSecretValue", regions.now())
    started = clock.now
    times: dict[str, list[float]] = {"primary": [], "replica": []}
    for name, target in (("primary", client), ("replica", replica_client)):
        spy = Calls(target)
        spy.add_fault(lambda _op, _params, name=name: times[name].append(clock.now - started))
        spy.fail_with(THROTTLING)
    with pytest.raises(SecretUnavailableError):
        cache.get_secret_string("db")
    assert times == {"primary": primary, "replica": replica}
    assert clock.now - started <= policy.deadline


# -- asyncio and telemetry ---------------------------------------------------------------------


def test_an_async_cache_fails_over_too(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """``AsyncSecretCache(replica_regions=...)`` reads the replica without blocking the event loop."""
    create(admin, "db", "pw-1")
    calls.fail_with(THROTTLING)

    async def main() -> list[Any]:
        async with AsyncSecretCache(
            client, replica_regions=[replica], retry=FAST_RETRY, refresh_ahead=None, clock=clock
        ) as cache:
            values = await asyncio.gather(*(cache.get_secret("db") for _ in range(8)))
            assert cache.stats().failovers == 1
            return list(values)

    values = asyncio.run(main())
    assert {(value.secret_string, value.region) for value in values} == {("pw-1", REPLICA)}
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (3, 1)


def test_telemetry_shows_the_failover(client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock) -> None:
    """The fetch span and duration name the replica Region; ``secretcache.failovers`` equals stats()."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from secretcache.otel import instrument

    create(admin, "db", "pw-1")
    calls.fail_with(THROTTLING)
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    cache = regional(client, replica, clock)
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracers)
    assert cache.get_secret_string("db") == "pw-1"
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["secretcache.replica.region"] == REPLICA
    assert span.attributes["secretcache.attempts"] == 4  # 3 in the primary Region, 1 in the replica's
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert [point.value for point in points["secretcache.failovers"]] == [cache.stats().failovers] == [1]
    [duration] = points["secretcache.fetch.duration"]
    assert (duration.attributes or {})["secretcache.replica.region"] == REPLICA


def test_telemetry_shows_a_failed_fetch_when_a_lagging_replicas_answer_is_refused(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock
) -> None:
    """A replica behind what was served answers: the fetch fails (stats().errors); span and duration say so."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from secretcache.otel import instrument
    from tests.replication import Lag

    create(admin, "db", "pw-1")
    lag = Lag("db", REPLICA)
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    cache = regional(client, replica, clock)
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracers)
    lag.freeze()  # the replica keeps answering pw-1
    rotate(admin, "db", "pw-2")
    assert cache.get_secret_string("db") == "pw-2"  # from the primary
    cache.invalidate("db")
    calls.fail_with(THROTTLING)
    with pytest.raises(SecretUnavailableError, match="older than a version this cache has already served"):
        cache.get_secret_string("db")  # the replica's pw-1 is refused
    stats = cache.stats()
    assert (stats.errors, stats.read_errors, stats.failovers) == (1, 1, 1)
    failed = [
        span
        for span in exporter.get_finished_spans()
        if span.attributes and "secretcache.replica.region" in span.attributes
    ]
    assert len(failed) == 1 == stats.failovers  # the replica answered: the failover shows
    [span] = failed
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "SecretUnavailableError"
    data = reader.get_metrics_data()
    assert data is not None
    outcomes = sorted(
        (dict(point.attributes or {}).get("secretcache.outcome"), dict(point.attributes or {}).get("error.type"))
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "secretcache.fetch.duration"
        for point in metric.data.data_points
    )
    assert outcomes == [("error", "SecretUnavailableError"), ("ok", None)]  # as many failed fetches as stats().errors
