"""secretcache.otel: metrics equal to stats(), spans nested as documented, no value or unasked name."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from secretcache import AsyncSecretCache, SecretNotFoundError
from secretcache.otel import instrument
from tests.conftest import REGION, Calls, FakeClock, quiescent, wait_until
from tests.test_cache import make_cache, rotate

VALUE = "VALUE-MARKER-7f3c"  # no exported byte may hold it
NAME = "svc/NAME-MARKER-db"  # nor this, unless secret_names=True


@dataclass
class Telemetry:
    """An SDK meter provider and tracer provider that keep everything in memory."""

    reader: InMemoryMetricReader
    meters: MeterProvider
    exporter: InMemorySpanExporter
    tracers: TracerProvider

    def instrument(self, cache: Any, **options: Any) -> Callable[[], None]:
        """``instrument(cache)`` with these providers."""
        return instrument(cache, meter_provider=self.meters, tracer_provider=self.tracers, **options)

    def spans(self, scope: str | None = "secretcache") -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [
            span
            for span in spans
            if scope is None or (span.instrumentation_scope and span.instrumentation_scope.name == scope)
        ]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Every secretcache data point by metric name: (attributes, point)."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                if scope.scope.name != "secretcache":
                    continue
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(
                        (dict(point.attributes or {}), point) for point in metric.data.data_points
                    )
        return found

    def sums(self, name: str, *keys: str) -> Counter[tuple[Any, ...]]:
        """A counter's values by the given attributes."""
        totals: Counter[tuple[Any, ...]] = Counter()
        for attributes, point in self.metrics().get(name, []):
            totals[tuple(attributes.get(key) for key in keys)] += point.value
        return totals

    def exported_text(self) -> str:
        """Everything exported, as text: spans (names, attributes, events, links, status) and metrics."""
        data = self.reader.get_metrics_data()
        return "\n".join([span.to_json() for span in self.spans(None)] + [data.to_json() if data else ""])


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    yield Telemetry(reader, meters, exporter, tracers)
    meters.shutdown()
    tracers.shutdown()


def test_scripted_run_metrics_equal_stats_and_the_script(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """Cold read, hits, expiry, rotation, an outage served stale, a definite error, a prefetch, a forced refresh."""
    caplog.set_level(logging.DEBUG, logger="secretcache")
    admin.create_secret(Name=NAME, SecretString=VALUE)
    for other in ("svc/a", "svc/b"):
        admin.create_secret(Name=other, SecretString=VALUE)
    cache = make_cache(client, clock, max_size=2)
    uninstrument = telemetry.instrument(cache)

    assert cache.get_secret_string(NAME) == VALUE  # cold: miss, 1 call
    for _ in range(3):
        cache.get_secret_string(NAME)  # hits
    clock.advance(61)
    cache.get_secret_string(NAME)  # expired: miss, refetched in the foreground
    rotate(admin, NAME, VALUE + "-2")
    clock.advance(61)
    assert cache.get_secret_string(NAME) == VALUE + "-2"  # a change
    clock.advance(61)
    stop = calls.fail_with("ThrottlingException")
    assert cache.get_secret_string(NAME) == VALUE + "-2"  # outage: stale served at the first failed attempt
    quiescent(cache)  # its 3 attempts end behind the reader
    stop()
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("svc/missing")  # definite error: 1 call, a read error
    assert cache.prefetch(["svc/a", "svc/b"]) == {}  # one batch call; max_size 2 evicts
    cache.refresh(NAME)  # forced

    stats = cache.stats()
    reads = telemetry.sums("secretcache.reads", "secretcache.result")
    assert reads == {("hit",): 3, ("miss",): 4, ("stale",): 1, ("error",): 1}
    assert reads[("hit",)] == stats.hits
    assert reads[("stale",)] == stats.stale_served
    assert reads[("error",)] == stats.read_errors
    assert sum(reads.values()) == stats.hits + stats.misses + 0  # every read once: 3 hits + 6 that waited
    assert stats.misses == 6

    api = telemetry.sums("secretcache.api_calls", "aws.operation", "secretcache.outcome", "error.type")
    assert api == {
        ("GetSecretValue", "ok", None): 4,
        ("GetSecretValue", "error", "ThrottlingException"): 3,
        ("GetSecretValue", "error", "ResourceNotFoundException"): 1,
        ("BatchGetSecretValue", "ok", None): 1,
    }
    assert stats.api_calls == {"GetSecretValue": 8, "BatchGetSecretValue": 1}
    assert stats.api_errors == {"ThrottlingException": 3, "ResourceNotFoundException": 1}
    assert calls.counts == {"GetSecretValue": 8, "BatchGetSecretValue": 1}

    found = telemetry.metrics()
    assert [point.value for _, point in found["secretcache.entries"]] == [stats.size] == [2]
    assert [point.value for _, point in found["secretcache.evictions"]] == [stats.evictions]
    assert stats.evictions >= 1
    assert [point.value for _, point in found["secretcache.stale_served"]] == [stats.stale_served] == [1]
    assert [point.value for _, point in found["secretcache.changes"]] == [stats.changes] == [1]

    durations = Counter[tuple[Any, ...]]()
    for attributes, point in found["secretcache.fetch.duration"]:
        names = ("aws.operation", "secretcache.refresh", "secretcache.outcome", "error.type")
        durations[tuple(attributes.get(name) for name in names)] += point.count
    assert durations == {
        ("GetSecretValue", "foreground", "ok", None): 3,
        ("GetSecretValue", "foreground", "error", "ThrottlingException"): 1,
        ("GetSecretValue", "foreground", "error", "ResourceNotFoundException"): 1,
        ("BatchGetSecretValue", "prefetch", "ok", None): 1,
        ("GetSecretValue", "forced", "ok", None): 1,
    }

    spans = telemetry.spans()
    assert len(spans) == 7 == sum(durations.values())
    assert {span.name for span in spans} == {"secretcache.fetch"}
    throttled = next(
        span for span in spans if span.attributes and span.attributes.get("error.type") == "ThrottlingException"
    )
    assert throttled.attributes is not None
    assert throttled.attributes["secretcache.attempts"] == 3
    assert throttled.attributes["secretcache.version_stage"] == "AWSCURRENT"
    assert throttled.status.status_code is StatusCode.ERROR
    assert throttled.status.description == "ThrottlingException"
    assert all(not span.events for span in spans)  # no exception events: their messages name the secret

    logged = "\n".join(f"{record.getMessage()} {vars(record)!r}" for record in caplog.records)
    assert VALUE not in telemetry.exported_text() + logged
    assert "NAME-MARKER" not in telemetry.exported_text()
    assert "svc/missing" not in telemetry.exported_text()
    uninstrument()


def test_secret_names_only_when_asked(client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    telemetry.instrument(cache, secret_names=True)
    cache.get_secret_string(NAME)
    [span] = telemetry.spans()
    assert span.attributes is not None
    assert span.attributes["secretcache.secret.name"] == NAME
    [(attributes, _)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert attributes["secretcache.secret.name"] == NAME
    assert VALUE not in telemetry.exported_text()
    # The counters are per cache, never per secret.
    for name, points in telemetry.metrics().items():
        if name != "secretcache.fetch.duration":
            assert all("secretcache.secret.name" not in attributes for attributes, _ in points)


def test_foreground_fetch_is_a_child_of_the_callers_span_and_botocore_nests_under_it(
    client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry
) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    admin.create_secret(Name=NAME, SecretString=VALUE)
    tracer = telemetry.tracers.get_tracer("app")
    botocore = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
    botocore.instrument(tracer_provider=telemetry.tracers)
    try:
        cache_client = boto3.client("secretsmanager", region_name=REGION)  # built after instrumenting
        instrumented = make_cache(cache_client, clock)
        telemetry.instrument(instrumented)
        with tracer.start_as_current_span("request") as request:
            instrumented.get_secret_string(NAME)
    finally:
        botocore.uninstrument()
    [fetch] = telemetry.spans()
    assert fetch.parent is not None
    assert fetch.parent.span_id == request.get_span_context().span_id
    assert fetch.context is not None
    aws_spans = [span for span in telemetry.spans(None) if span.name == "Secrets Manager.GetSecretValue"]
    assert aws_spans, "botocore instrumentation recorded no span"
    assert all(span.parent is not None and span.parent.span_id == fetch.context.span_id for span in aws_spans)
    # As docs/monitoring.md warns: botocore's own spans name the secret, whatever secret_names says.
    assert any(NAME in str(span.attributes) for span in aws_spans)


def test_background_refresh_is_its_own_trace_linked_to_the_trigger(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock, refresh_ahead=0.5)
    telemetry.instrument(cache)
    tracer = telemetry.tracers.get_tracer("app")
    cache.get_secret_string(NAME)
    clock.advance(40)  # past the refresh point (30 s), within the TTL
    with tracer.start_as_current_span("request") as request:
        assert cache.get_secret_string(NAME) == VALUE  # served at once; the refresh runs on a worker
    wait_until(lambda: len(telemetry.spans()) == 2)
    background = next(
        span for span in telemetry.spans() if span.attributes and span.attributes["secretcache.refresh"] == "background"
    )
    trigger = request.get_span_context()
    assert background.parent is None
    assert background.context is not None
    assert background.context.trace_id != trigger.trace_id
    assert [link.context.span_id for link in background.links] == [trigger.span_id]
    wait_until(lambda: cache.stats().background_refreshes == 1 and cache.stats().in_flight == 0)
    durations = telemetry.metrics()["secretcache.fetch.duration"]
    assert sorted(attributes["secretcache.refresh"] for attributes, _ in durations) == ["background", "foreground"]
    cache.close()


def test_async_read_fetch_is_a_child_of_the_tasks_span(
    client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry
) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    tracer = telemetry.tracers.get_tracer("app")

    async def main() -> int:
        async with AsyncSecretCache(client, ttl=60, refresh_ahead=None, clock=clock) as cache:
            telemetry.instrument(cache)
            with tracer.start_as_current_span("request") as request:
                assert await cache.get_secret_string(NAME) == VALUE
            return request.get_span_context().span_id

    request_id = asyncio.run(main())
    [fetch] = telemetry.spans()
    assert fetch.parent is not None
    assert fetch.parent.span_id == request_id


def test_uninstrument_stops_all_recording(client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    uninstrument = telemetry.instrument(cache)
    cache.get_secret_string(NAME)
    before = telemetry.metrics()
    assert before["secretcache.reads"]
    uninstrument()
    uninstrument()  # idempotent
    clock.advance(61)
    cache.get_secret_string(NAME)
    cache.refresh(NAME)
    after = telemetry.metrics()
    assert len(telemetry.spans()) == 1
    for name in ("secretcache.reads", "secretcache.api_calls", "secretcache.entries", "secretcache.changes"):
        assert not after.get(name), name
    [(_, histogram)] = after["secretcache.fetch.duration"]
    assert histogram.count == 1  # the cumulative histogram keeps its one sample and gets no more
    # Instrumenting again works, and counts resume from the cache's counters.
    telemetry.instrument(cache)
    assert telemetry.sums("secretcache.reads", "secretcache.result")[("miss",)] == 3


def test_two_caches_on_one_provider_add_up(client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    first, second = make_cache(client, clock), make_cache(client, clock)
    for cache in (first, second):
        telemetry.instrument(cache)
        cache.get_secret_string(NAME)
        cache.get_secret_string(NAME)
    assert telemetry.sums("secretcache.reads", "secretcache.result") == Counter({("hit",): 2, ("miss",): 2})
    assert [point.value for _, point in telemetry.metrics()["secretcache.entries"]] == [2]


def test_bad_arguments_are_refused(client: Any, clock: FakeClock, telemetry: Telemetry) -> None:
    cache = make_cache(client, clock)
    with pytest.raises(TypeError, match="SecretCache or AsyncSecretCache"):
        instrument(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="secret_names must be a bool"):
        instrument(cache, secret_names="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter_provider"):
        instrument(cache, meter_provider=telemetry.tracers)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracer_provider"):
        instrument(cache, tracer_provider=telemetry.meters)  # type: ignore[arg-type]
    uninstrument = telemetry.instrument(cache)
    with pytest.raises(ValueError, match="instrumented already"):
        telemetry.instrument(cache)
    uninstrument()
    cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        instrument(cache)


def test_a_callback_reading_the_cache_while_a_fetch_runs_does_not_block(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """Collecting metrics while a fetch hangs in Secrets Manager answers at once (no lock held)."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    telemetry.instrument(cache)
    gate = calls.hold()
    reader = threading.Thread(target=cache.get_secret_string, args=(NAME,), daemon=True)
    reader.start()
    wait_until(lambda: calls["GetSecretValue"] == 1)
    assert telemetry.sums("secretcache.reads", "secretcache.result") == {
        ("hit",): 0,
        ("miss",): 0,
        ("stale",): 0,
        ("error",): 0,
    }
    gate.set()
    reader.join(timeout=20)
    assert not reader.is_alive()
    assert telemetry.sums("secretcache.reads", "secretcache.result")[("miss",)] == 1


class _Failing(SpanProcessor):
    """A span processor that breaks on every span: telemetry must not break reads."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("span processor down")


def test_a_failing_span_processor_never_fails_a_read(
    client: Any, admin: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    reader = InMemoryMetricReader()
    tracers = TracerProvider()
    tracers.add_span_processor(_Failing())
    cache = make_cache(client, clock)
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracers)
    with caplog.at_level(logging.WARNING, logger="secretcache.otel"):
        assert cache.get_secret_string(NAME) == VALUE
    [record] = [record for record in caplog.records if record.name == "secretcache.otel"]
    assert record.getMessage() == "OpenTelemetry failed to start a span: RuntimeError"
    assert record.operation == "otel"  # type: ignore[attr-defined]
    data = reader.get_metrics_data()
    assert data is not None
    assert "secretcache.fetch.duration" in data.to_json()  # the duration is still recorded


class _Reentrant(SpanProcessor):
    """Reads the cache when a fetch span ends, on the fetching thread."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.read: list[str] = []
        self.ended: list[str] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)
        if len(self.ended) == 1:  # the first fetch's span: read another secret (a nested fetch)
            self.read.append(self.cache.get_secret_string("svc/other"))


def test_a_span_processor_that_reads_the_cache_does_not_deadlock(client: Any, admin: Any, clock: FakeClock) -> None:
    admin.create_secret(Name=NAME, SecretString=VALUE)
    admin.create_secret(Name="svc/other", SecretString="other")
    cache = make_cache(client, clock)
    tracers = TracerProvider()
    reentrant = _Reentrant(cache)
    tracers.add_span_processor(reentrant)
    instrument(cache, meter_provider=MeterProvider(), tracer_provider=tracers)
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(cache.get_secret_string(NAME)), daemon=True)
    thread.start()
    thread.join(timeout=20)  # a deadlock fails here instead of hanging the suite
    assert not thread.is_alive()
    assert result == [VALUE]
    assert reentrant.read == ["other"]
    assert reentrant.ended == ["secretcache.fetch", "secretcache.fetch"]  # the nested fetch has its span


def test_an_interrupted_fetch_ends_its_span_as_an_error(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """A BaseException mid-fetch (KeyboardInterrupt) still ends the span and records the duration."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    telemetry.instrument(cache)

    def interrupt(_operation: str, _params: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    remove = calls.add_fault(interrupt)
    with pytest.raises(KeyboardInterrupt):
        cache.get_secret_string(NAME)
    remove()
    [span] = telemetry.spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyboardInterrupt"
    assert span.end_time is not None
    [(attributes, point)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert (attributes["secretcache.outcome"], point.count) == ("error", 1)
    assert cache.get_secret_string(NAME) == VALUE  # the cache is not wedged


def test_every_read_of_a_cold_stampede_is_counted_once(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """32 threads on a cold key: one call, one fetch span, and exactly 32 reads across the results."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    telemetry.instrument(cache)
    gate = calls.hold()
    barrier = threading.Barrier(32)
    results: list[str] = []

    def read() -> None:
        barrier.wait(timeout=20)
        results.append(cache.get_secret_string(NAME))

    threads = [threading.Thread(target=read, daemon=True) for _ in range(32)]
    for thread in threads:
        thread.start()
    wait_until(lambda: calls["GetSecretValue"] == 1)
    wait_until(lambda: cache.stats().misses + cache.stats().hits == 32)  # every reader arrived
    gate.set()
    for thread in threads:
        thread.join(timeout=20)
    assert results == [VALUE] * 32
    reads = telemetry.sums("secretcache.reads", "secretcache.result")
    assert sum(reads.values()) == 32
    assert reads[("miss",)] == cache.stats().misses
    assert telemetry.sums("secretcache.api_calls", "aws.operation", "secretcache.outcome") == Counter(
        {("GetSecretValue", "ok"): 1}
    )
    assert len(telemetry.spans()) == 1


def test_hits_record_nothing_and_are_read_at_collection(
    client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry
) -> None:
    """A hit makes no span and no measurement: the hit count is read from the cache when the SDK collects."""
    admin.create_secret(Name=NAME, SecretString=json.dumps({"password": VALUE}))
    cache = make_cache(client, clock)
    telemetry.instrument(cache)
    cache.get_secret_string(NAME)
    recorded: list[Any] = []
    histogram = _instruments(telemetry).duration
    original = histogram.record
    histogram.record = lambda *args, **kwargs: recorded.append(args)
    try:
        for read in (cache.get_secret_string, cache.get_secret, cache.get_secret_json):
            for _ in range(1000):
                read(NAME)
    finally:
        histogram.record = original
    assert recorded == []
    assert len(telemetry.spans()) == 1  # the cold read's fetch only
    assert telemetry.sums("secretcache.reads", "secretcache.result")[("hit",)] == 3000 == cache.stats().hits


def _instruments(telemetry: Telemetry) -> Any:
    from secretcache import otel

    return otel._REGISTRY[telemetry.meters]
