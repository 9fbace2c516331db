"""In-memory OpenTelemetry providers shared by the ``secretcache.otel`` tests (``test_otel_*.py``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from secretcache import SecretCache
from secretcache.otel import instrument
from tests.conftest import Calls, FakeClock
from tests.test_cache import make_cache

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


def instrumented(telemetry: Telemetry, client: Any, admin: Any, clock: FakeClock, **options: Any) -> SecretCache:
    """Secret ``NAME`` created with ``VALUE``, and ``make_cache(client, clock, **options)`` instrumented."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock, **options)
    telemetry.instrument(cache)
    return cache


def interrupted(calls: Calls, read: Callable[[], object]) -> None:
    """Run ``read`` while every Secrets Manager call raises KeyboardInterrupt; it must raise it."""

    def interrupt(_operation: str, _params: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    remove = calls.add_fault(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            read()
    finally:
        remove()


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
