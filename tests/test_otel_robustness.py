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

from secretcache import SecretNotFoundError
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
    """A span processor that breaks on every span, when it starts or when it ends: telemetry must not break reads."""

    def __init__(self, when: str) -> None:
        self.when = when

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.when == "on_start":
            raise RuntimeError("span processor down")

    def on_end(self, span: ReadableSpan) -> None:
        if self.when == "on_end":
            raise RuntimeError("span processor down")


@pytest.mark.parametrize(
    ("when", "logged"), [("on_start", "start a span"), ("on_end", "end a fetch's span")], ids=["on_start", "on_end"]
)
def test_a_failing_span_processor_never_fails_a_read(
    client: Any, admin: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture, when: str, logged: str
) -> None:
    """A span processor raising as a fetch's span starts, or as it ends, is logged; every read gets its own outcome.

    A value, a definite error of its type (not the processor's ``RuntimeError``) and a prefetch
    that warms its secret.
    """
    admin.create_secret(Name=NAME, SecretString=VALUE)
    admin.create_secret(Name="svc/other", SecretString="other")
    reader = InMemoryMetricReader()
    tracers = TracerProvider()
    tracers.add_span_processor(_Failing(when))
    cache = make_cache(client, clock)
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracers)
    with caplog.at_level(logging.WARNING, logger="secretcache"):
        assert cache.get_secret_string(NAME) == VALUE
        with pytest.raises(SecretNotFoundError):
            cache.get_secret_string("svc/missing")
        assert cache.prefetch(["svc/other"]) == {}
    assert [(record.name, record.getMessage()) for record in caplog.records] == [
        ("secretcache.otel", f"OpenTelemetry failed to {logged}: RuntimeError")
    ] * 3  # one per fetch, and nothing else: no fetch "raised" the processor's error
    assert all(record.operation == "otel" for record in caplog.records)
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
