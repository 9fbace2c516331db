"""secretcache.otel over its lifecycle: instrumenting before or after the SDK is set, telemetry
that fails while a fetch ends, and ``uninstrument()`` with a fetch in flight.

The global meter provider can be set once per process; the ``global_meters`` fixture gives each
test a fresh, unset one (what opentelemetry-python's own ``reset_metrics_globals`` test helper
does) and puts the old one back afterwards.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.sdk.metrics import ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from secretcache import CacheStats, SecretCache, SecretNotFoundError, otel
from secretcache._cache import store_of
from secretcache._observe import Fetch
from secretcache.otel import instrument
from tests.conftest import WATCHDOG, inside, wait_until
from tests.otel import NAME, VALUE, Telemetry, telemetry
from tests.test_cache import make_cache
from tests.threads import start

__all__ = ["telemetry"]  # a fixture, used by name


@pytest.fixture
def global_meters(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global meter provider set yet (a fresh proxy), no cache instrumented; all restored after."""
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_api, "_PROXY_METER_PROVIDER", metrics_api._ProxyMeterProvider())
    # A cache a failed test left instrumented with an older proxy must not count in the next test.
    monkeypatch.setattr(otel, "_MEMBERS", ())
    monkeypatch.setattr(otel, "_RETIRED", weakref.WeakKeyDictionary())
    monkeypatch.setattr(otel, "_SHARES", weakref.WeakKeyDictionary())


# Each step: instrument cache "a" or "b" with the global provider or the SDK provider passed
# explicitly, or set the SDK provider as the global one ("set").
ORDERS = {
    "global before set, global after": ["a:global", "set", "b:global"],
    "both global before set": ["a:global", "b:global", "set"],
    "both global after set": ["set", "a:global", "b:global"],
    "global before set, explicit after": ["a:global", "set", "b:explicit"],
    "explicit before set, global before set": ["b:explicit", "a:global", "set"],
    "global before set, explicit before set": ["a:global", "b:explicit", "set"],
    "explicit, then global after set": ["b:explicit", "set", "a:global"],
}


@pytest.mark.usefixtures("global_meters")
@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_metrics_equal_the_sum_of_stats_whatever_the_order_of_instrument_and_set(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry, order: list[str]
) -> None:
    """Caches instrumented before and after the SDK provider is set globally all reach its exporter."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    caches = {"a": make_cache(client, clock), "b": make_cache(client, clock)}
    removers: dict[str, Callable[[], None]] = {}
    for step in order:
        if step == "set":
            metrics.set_meter_provider(telemetry.meters)
            continue
        name, how = step.split(":")
        provider = telemetry.meters if how == "explicit" else None
        removers[name] = instrument(caches[name], meter_provider=provider, tracer_provider=telemetry.tracers)
    for name, reads in (("a", 3), ("b", 5)):  # different counts, so a lost cache shows
        for _ in range(reads):
            caches[name].get_secret_string(NAME)

    _assert_metrics_equal_stats(telemetry, [cache.stats() for cache in caches.values()])
    [(_, histogram)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert histogram.count == 2  # one fetch each
    # Removing the first cache instrumented (whose instruments the SDK kept) leaves the other's counts
    # counting and keeps its own as they were: no counter goes down; its entries leave the gauge.
    first = next(step.split(":")[0] for step in order if step != "set")
    removers.pop(first)()
    at_removal = caches[first].stats()
    caches[first].refresh(NAME)  # after its removal: not counted
    [other] = [cache for name, cache in caches.items() if name != first]
    other.get_secret_string(NAME)
    _assert_metrics_equal_stats(telemetry, [at_removal, other.stats()], held=[other.stats()])


def _assert_metrics_equal_stats(
    telemetry: Telemetry, stats: list[CacheStats], held: list[CacheStats] | None = None
) -> None:
    """The counters equal the sums of ``stats``; the entries gauge, the sum of ``held`` (``stats`` by default)."""
    reads = telemetry.sums("secretcache.reads", "secretcache.result")
    assert reads[("hit",)] == sum(item.hits for item in stats)
    assert reads[("miss",)] == sum(item.misses for item in stats)
    api = telemetry.sums("secretcache.api_calls", "aws.operation")
    assert api[("GetSecretValue",)] == sum(item.api_calls.get("GetSecretValue", 0) for item in stats)
    assert [point.value for _, point in telemetry.metrics()["secretcache.entries"]] == [
        sum(item.size for item in (stats if held is None else held))
    ]


@pytest.mark.usefixtures("global_meters")
def test_counts_from_before_the_sdk_is_set_are_exported_durations_are_not(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry
) -> None:
    """A fetch before the SDK is set shows in the counters, read at collection, but has no duration sample."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    remove = instrument(cache, tracer_provider=telemetry.tracers)
    cache.get_secret_string(NAME)  # a miss and a fetch, with no SDK yet
    metrics.set_meter_provider(telemetry.meters)
    cache.get_secret_string(NAME)  # a hit
    assert telemetry.sums("secretcache.reads", "secretcache.result") == {
        ("hit",): 1,
        ("miss",): 1,
        ("stale",): 0,
        ("error",): 0,
    }
    assert "secretcache.fetch.duration" not in telemetry.metrics()
    remove()


# -- telemetry failing while a fetch ends -----------------------------------------------------------


class _FailingExemplars(ExemplarFilter):
    """An exemplar filter that raises: the SDK consults it on every synchronous measurement."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error or RuntimeError("metrics SDK down")

    def should_sample(self, value: Any, time_unix_nano: int, attributes: Any, context: Any) -> bool:
        raise self.error


class _BreakSpans(SpanProcessor):
    """Makes the named method of every span it sees raise, as a broken SDK or exporter hook would."""

    def __init__(self, method: str) -> None:
        self.method = method

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        def fail(*_args: Any, **_kwargs: Any) -> None:
            raise RuntimeError(f"{self.method} down")

        setattr(span, self.method, fail)


def test_a_failing_duration_record_still_ends_the_span_and_restores_the_callers_context(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """If the metrics SDK raises recording a duration, the fetch span is still ended, exported and no longer current."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()], exemplar_filter=_FailingExemplars())
    remove = instrument(cache, meter_provider=meters, tracer_provider=telemetry.tracers)
    app = telemetry.tracers.get_tracer("app")
    with caplog.at_level(logging.WARNING, logger="secretcache.otel"), app.start_as_current_span("request") as request:
        assert cache.get_secret_string(NAME) == VALUE
        assert trace.get_current_span() is request  # not the fetch span
    assert trace.get_current_span() is trace.INVALID_SPAN
    [fetch] = telemetry.spans()
    assert fetch.end_time is not None
    assert fetch.parent is not None
    assert fetch.parent.span_id == request.get_span_context().span_id
    assert fetch.attributes is not None
    assert fetch.attributes["secretcache.attempts"] == 1
    assert [record.getMessage() for record in caplog.records] == [
        "OpenTelemetry failed to record a fetch's duration: RuntimeError"
    ]
    # The next span of the application is a root again, not a child of the fetch.
    with app.start_as_current_span("next"):
        pass
    [after] = [span for span in telemetry.spans(None) if span.name == "next"]
    assert after.parent is None
    remove()
    meters.shutdown()


def test_an_interrupt_while_recording_still_ends_the_span_and_restores_the_context(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry
) -> None:
    """A KeyboardInterrupt raised by the metrics SDK goes up to the reader, after the span is ended and detached."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    meters = MeterProvider(
        metric_readers=[InMemoryMetricReader()], exemplar_filter=_FailingExemplars(KeyboardInterrupt())
    )
    remove = instrument(cache, meter_provider=meters, tracer_provider=telemetry.tracers)
    with pytest.raises(KeyboardInterrupt):
        cache.get_secret_string(NAME)
    assert trace.get_current_span() is trace.INVALID_SPAN
    [fetch] = telemetry.spans()
    assert fetch.end_time is not None
    remove()
    assert cache.get_secret_string(NAME) == VALUE  # not wedged
    meters.shutdown()


@pytest.mark.parametrize("method", ["set_attribute", "set_status"])
def test_a_span_that_fails_to_take_attributes_or_status_is_still_ended_and_the_context_restored(
    client: Any, admin: Any, calls: Any, clock: Any, telemetry: Telemetry, method: str
) -> None:
    """If set_attribute or set_status raises, the span is still ended, the duration recorded, the context restored."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    telemetry.tracers.add_span_processor(_BreakSpans(method))
    remove = telemetry.instrument(cache)
    calls.fail_with("ResourceNotFoundException")  # a failure, so set_status is called too
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string(NAME)
    assert trace.get_current_span() is trace.INVALID_SPAN
    [fetch] = telemetry.spans()
    assert fetch.end_time is not None
    [(attributes, point)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert (attributes["secretcache.outcome"], point.count) == ("error", 1)
    remove()


# -- uninstrument() with a fetch in flight ----------------------------------------------------------


def test_uninstrument_with_a_fetch_in_flight_records_nothing_for_it_and_restores_the_callers_context(
    client: Any, admin: Any, calls: Any, clock: Any, telemetry: Telemetry
) -> None:
    """A fetch held in Secrets Manager when uninstrument() is called exports no span and no duration when it ends."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    remove = telemetry.instrument(cache)
    app = telemetry.tracers.get_tracer("app")
    gate = calls.hold()
    seen: dict[str, Any] = {}

    def read() -> None:
        with app.start_as_current_span("request") as request:
            seen["value"] = cache.get_secret_string(NAME)
            seen["current"] = trace.get_current_span() is request
        with app.start_as_current_span("next") as following:
            seen["next"] = following
        seen["after"] = trace.get_current_span()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: calls["GetSecretValue"] == 1)  # the fetch's span is started and current
    remove()
    gate.set()
    reader.join(timeout=20)
    assert not reader.is_alive()
    assert seen["value"] == VALUE
    assert seen["current"]  # the fetch's context was detached on the reader's thread
    assert seen["after"] is trace.INVALID_SPAN
    assert telemetry.spans() == []  # no secretcache.fetch span exported
    [following] = [span for span in telemetry.spans(None) if span.name == "next"]
    assert following.parent is None
    assert "secretcache.fetch.duration" not in telemetry.metrics()
    assert cache.stats().misses == 1  # the read itself went on


def test_a_fetch_that_picked_up_the_observer_just_before_uninstrument_records_nothing(
    client: Any, clock: Any, telemetry: Telemetry
) -> None:
    """The observer a store read just before uninstrument() returned starts no span and records no duration."""
    cache = make_cache(client, clock)
    remove = telemetry.instrument(cache)
    observer = store_of(cache).observer
    assert observer is not None
    remove()
    with observer.observe(Fetch("GetSecretValue", (NAME,), refresh="foreground")):
        assert trace.get_current_span() is trace.INVALID_SPAN
    assert telemetry.spans() == []
    assert "secretcache.fetch.duration" not in telemetry.metrics()


# -- instrument() racing itself -----------------------------------------------------------------


def test_threads_instrumenting_one_cache_at_once_one_wins_the_others_get_value_error(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry
) -> None:
    """Of four threads instrumenting one cache at once, exactly one succeeds; the cache is counted once."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    interval = sys.getswitchinterval()
    for _ in range(30):
        cache = make_cache(client, clock)
        cache.get_secret_string(NAME)  # one entry: the gauge shows how often the cache is counted
        barrier = threading.Barrier(4)

        def race(cache: SecretCache = cache, barrier: threading.Barrier = barrier) -> object:
            barrier.wait(timeout=WATCHDOG)
            try:
                return telemetry.instrument(cache)
            except ValueError as err:
                return err

        # Switch threads often while they race, so an unlocked check-then-act shows; only then,
        # so the rest of the process (moto, the SDK's collection) runs at the usual interval.
        sys.setswitchinterval(1e-6)
        try:
            outcomes = [future.result(timeout=WATCHDOG) for future in [start(race, f"i{n}") for n in range(4)]]
        finally:
            sys.setswitchinterval(interval)
        winners = [outcome for outcome in outcomes if callable(outcome)]
        assert len(winners) == 1, outcomes
        [remove] = winners
        assert sum(isinstance(outcome, ValueError) for outcome in outcomes) == 3
        assert [point.value for _, point in telemetry.metrics()["secretcache.entries"]] == [1]
        remove()
        assert store_of(cache).observer is None
        assert "secretcache.entries" not in telemetry.metrics()
        cache.close()


class _HoldFetchSpans(SpanProcessor):
    """Holds the thread ending a ``secretcache.fetch`` span in ``on_end`` until released."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == "secretcache.fetch" and not self.released.is_set():
            self.arrived.set()
            assert self.released.wait(WATCHDOG), "a held span was never released"


def test_uninstrument_returns_only_once_a_fetch_already_recording_its_end_has_finished(
    client: Any, admin: Any, clock: Any
) -> None:
    """A fetch that was recording its end when uninstrument() was called has exported everything when it returns."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter, held = InMemorySpanExporter(), _HoldFetchSpans()
    tracers = TracerProvider()
    tracers.add_span_processor(held)  # first: the span is held before it is exported
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    remove = instrument(cache, meter_provider=meters, tracer_provider=tracers)
    read = start(lambda: cache.get_secret_string(NAME), "reader")
    assert held.arrived.wait(WATCHDOG)  # the fetch decided to record and is ending its span
    exported: list[int] = []
    remover = threading.Thread(target=lambda: (remove(), exported.append(len(exporter.get_finished_spans()))))
    remover.start()
    # Released once uninstrument() has returned, or is waiting for the fetch (never while it runs).
    wait_until(lambda: not remover.is_alive() or inside(remover, threading.Condition.wait))
    held.released.set()
    assert read.result(timeout=WATCHDOG) == VALUE
    remover.join(timeout=WATCHDOG)
    assert exported == [1]  # the span was exported before uninstrument() returned, not after
    assert len(exporter.get_finished_spans()) == 1
    cache.refresh(NAME)  # after uninstrument(): nothing recorded
    assert len(exporter.get_finished_spans()) == 1
    data = reader.get_metrics_data()
    [duration] = [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "secretcache.fetch.duration"
        for point in metric.data.data_points
    ]
    assert duration.count == 1
    meters.shutdown()
    tracers.shutdown()


class _RemoveOnEnd(SpanProcessor):
    """Calls the given ``uninstrument()`` from ``on_end``, on the thread ending the fetch's span."""

    def __init__(self) -> None:
        self.remove: Callable[[], None] = lambda: None

    def on_end(self, span: ReadableSpan) -> None:
        self.remove()


def test_a_span_processor_may_uninstrument_from_the_fetch_ending_its_span(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry
) -> None:
    """uninstrument() called from a span processor on the recording thread returns (it waits for no one)."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    remover = _RemoveOnEnd()
    telemetry.tracers.add_span_processor(remover)
    remover.remove = telemetry.instrument(cache)
    assert start(lambda: cache.get_secret_string(NAME), "reader").result(timeout=WATCHDOG) == VALUE
    assert len(telemetry.spans()) == 1
    assert store_of(cache).observer is None


@pytest.mark.usefixtures("global_meters")
def test_caches_closed_while_instrumented_are_released_and_their_counts_kept(
    client: Any, admin: Any, clock: Any, telemetry: Telemetry
) -> None:
    """A cache closed without uninstrument() is let go by the next collection, its counts staying in the sums."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    refs, stats = [], []
    for _ in range(5):
        cache = make_cache(client, clock)
        instrument(cache, meter_provider=telemetry.meters, tracer_provider=telemetry.tracers)
        for _ in range(3):
            cache.get_secret_string(NAME)
        stats.append(cache.stats())
        cache.close()
        refs.append(weakref.ref(cache))
    del cache
    counted = (sum(item.hits for item in stats), sum(item.misses for item in stats))
    for _ in range(2):  # the collection that lets them go, then one after: no counter went down
        reads = telemetry.sums("secretcache.reads", "secretcache.result")
        assert (reads[("hit",)], reads[("miss",)]) == counted == (10, 5)
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5
    assert otel._MEMBERS == ()
