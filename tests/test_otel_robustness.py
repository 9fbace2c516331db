"""secretcache.otel never fails or wedges a read.

Callbacks reading the cache during a fetch, failing or re-entrant span processors, and an
interrupted fetch.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from secretcache.otel import instrument
from tests.conftest import Calls, FakeClock, wait_until
from tests.otel import NAME, VALUE, Telemetry, instrumented, interrupted
from tests.otel import telemetry as telemetry  # a fixture
from tests.test_cache import make_cache


def test_a_callback_reading_the_cache_while_a_fetch_runs_does_not_block(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """Collecting metrics while a fetch hangs in Secrets Manager answers at once (no lock held)."""
    cache = instrumented(telemetry, client, admin, clock)
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
    cache = instrumented(telemetry, client, admin, clock)
    interrupted(calls, lambda: cache.get_secret_string(NAME))
    [span] = telemetry.spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyboardInterrupt"
    assert span.end_time is not None
    [(attributes, point)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert (attributes["secretcache.outcome"], point.count) == ("error", 1)
    assert cache.get_secret_string(NAME) == VALUE  # the cache is not wedged
