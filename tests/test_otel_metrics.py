"""secretcache.otel metrics: equal to stats() and to the script, no value or unasked name, each read counted once.

Also ``uninstrument()``, two caches on one provider, and the arguments refused. The in-memory
providers are in ``tests/otel.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, Sum
from opentelemetry.trace import StatusCode

from secretcache import AsyncSecretCache, SecretNotFoundError
from secretcache.otel import instrument
from tests.conftest import WATCHDOG, Calls, FakeClock, quiescent, wait_until
from tests.otel import NAME, VALUE, Telemetry, instrumented, interrupted
from tests.otel import telemetry as telemetry  # a fixture
from tests.test_cache import make_cache, rotate
from tests.threads import Held, start


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
    assert stats.evictions == 2  # the prefetch evicts NAME, the forced refresh of NAME evicts svc/a
    assert [point.value for _, point in found["secretcache.stale_served"]] == [stats.stale_served] == [1]
    assert [point.value for _, point in found["secretcache.changes"]] == [stats.changes] == [1]
    assert [point.value for _, point in found["secretcache.failovers"]] == [stats.failovers] == [0]  # no replica

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


def test_a_batch_of_one_secret_names_it_as_a_batch_does(
    client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry
) -> None:
    """A prefetch span lists its secrets in ``secretcache.secret.names`` and its duration names none, even for one."""
    for name in ("svc/one", "svc/two", "svc/three"):
        admin.create_secret(Name=name, SecretString=VALUE)
    cache = make_cache(client, clock)
    telemetry.instrument(cache, secret_names=True)
    assert cache.prefetch(["svc/one"]) == {}
    assert cache.prefetch(["svc/two", "svc/three"]) == {}
    spans = telemetry.spans()
    assert [span.attributes and span.attributes.get("secretcache.secret.names") for span in spans] == [
        ("svc/one",),
        ("svc/two", "svc/three"),
    ]
    assert all(span.attributes and "secretcache.secret.name" not in span.attributes for span in spans)
    durations = telemetry.metrics()["secretcache.fetch.duration"]
    assert [point.count for _, point in durations] == [2]  # one series: no name on a batch's samples
    assert all("secretcache.secret.name" not in attributes for attributes, _ in durations)


def test_uninstrument_stops_all_recording(client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry) -> None:
    """After uninstrument() the counters stay where they were, the entries leave, nothing more is recorded."""
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
    for name in ("secretcache.reads", "secretcache.api_calls", "secretcache.changes"):
        assert _values(after[name]) == _values(before[name]), name  # kept, not grown, never gone down
    assert not after.get("secretcache.entries")
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


def test_every_read_of_a_cold_stampede_is_counted_once(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """32 threads on a cold key: one call, one fetch span, and exactly 32 reads across the results."""
    cache = instrumented(telemetry, client, admin, clock)
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


def _values(points: list[tuple[dict[str, Any], Any]]) -> dict[tuple[tuple[str, Any], ...], Any]:
    """A metric's point values by their attributes."""
    return {tuple(sorted(attributes.items())): point.value for attributes, point in points}


# -- counters never go down ---------------------------------------------------------------------

TEMPORALITIES = {"cumulative": AggregationTemporality.CUMULATIVE, "delta": AggregationTemporality.DELTA}

Points = dict[tuple[str, tuple[tuple[str, Any], ...]], float]


def _counter_reader(temporality: AggregationTemporality) -> tuple[InMemoryMetricReader, MeterProvider]:
    """An SDK reader exporting the observable counters with ``temporality``, and its provider."""
    reader = InMemoryMetricReader(preferred_temporality={ObservableCounter: temporality})
    return reader, MeterProvider(metric_readers=[reader])


def _collect(reader: InMemoryMetricReader) -> Points:
    """One collection: every monotonic secretcache counter's points, by metric and attributes."""
    points: Points = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if isinstance(metric.data, Sum) and metric.data.is_monotonic:
                    for point in metric.data.data_points:
                        points[metric.name, tuple(sorted((point.attributes or {}).items()))] = point.value
    return points


def _assert_never_down(collections: list[Points], temporality: AggregationTemporality) -> None:
    """Cumulative: no point lower than in an earlier collection. Delta: no negative point."""
    if temporality is AggregationTemporality.DELTA:
        assert all(value >= 0 for points in collections for value in points.values()), collections
        return
    for earlier, later in itertools.pairwise(collections):
        assert all(later.get(key, 0) >= value for key, value in earlier.items()), (earlier, later)


def _reads(points: Points) -> dict[str, float]:
    """The ``secretcache.reads`` points by result."""
    return {attributes[0][1]: value for (name, attributes), value in points.items() if name == "secretcache.reads"}


def _raised(read: Callable[[], object]) -> BaseException | None:
    """What ``read`` raised, if anything."""
    try:
        read()
    except Exception as err:
        return err
    return None


def _sum_over(collections: list[Points], temporality: AggregationTemporality) -> Points:
    """What the collections add up to: the last one (cumulative) or their sum (delta)."""
    if temporality is AggregationTemporality.CUMULATIVE:
        return collections[-1]
    total: Counter[tuple[str, tuple[tuple[str, Any], ...]]] = Counter()
    for points in collections:
        total.update(points)
    return dict(total)


@pytest.mark.parametrize("temporality", TEMPORALITIES.values(), ids=TEMPORALITIES.keys())
def test_api_calls_never_go_down_while_a_call_that_fails_is_in_flight(
    client: Any, clock: FakeClock, temporality: AggregationTemporality
) -> None:
    """A call collected while in flight is not yet counted ok, so its failure takes nothing back."""
    reader, meters = _counter_reader(temporality)
    cache = make_cache(client, clock)
    remove = instrument(cache, meter_provider=meters)
    held = Held(client, "reader")  # the answer (an error) held after moto gave it
    failed = start(lambda: _raised(lambda: cache.get_secret_string("missing")), "reader")
    assert held.arrived.wait(WATCHDOG)
    collections = [_collect(reader)]  # the call in flight
    held.released.set()
    assert isinstance(failed.result(timeout=WATCHDOG), SecretNotFoundError)
    collections.append(_collect(reader))
    collections.append(_collect(reader))
    _assert_never_down(collections, temporality)
    calls = {
        key: value
        for key, value in _sum_over(collections, temporality).items()
        if key[0] == "secretcache.api_calls" and value
    }
    error = ("aws.operation", "GetSecretValue"), ("error.type", "ResourceNotFoundException")
    assert calls == {("secretcache.api_calls", (*error, ("secretcache.outcome", "error"))): 1}
    remove()
    meters.shutdown()


def test_a_call_cut_off_by_an_interrupt_counts_as_an_error_of_its_type(
    client: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """A KeyboardInterrupt out of a call ends it as an error ``KeyboardInterrupt``, never as ok."""
    cache = make_cache(client, clock)
    telemetry.instrument(cache)
    interrupted(calls, lambda: cache.get_secret_string(NAME))
    assert telemetry.sums("secretcache.api_calls", "secretcache.outcome", "error.type") == {
        ("error", "KeyboardInterrupt"): 1
    }
    assert cache.stats().api_errors == {"KeyboardInterrupt": 1}


@pytest.mark.parametrize("temporality", TEMPORALITIES.values(), ids=TEMPORALITIES.keys())
def test_uninstrumenting_one_of_two_caches_keeps_its_counts_in_the_sums(
    client: Any, admin: Any, clock: FakeClock, temporality: AggregationTemporality
) -> None:
    """Removing one cache leaves its counts in the counters as they were: no sum goes down, none grows from it."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    reader, meters = _counter_reader(temporality)
    first, second = make_cache(client, clock), make_cache(client, clock)
    remove_first = instrument(first, meter_provider=meters)
    remove_second = instrument(second, meter_provider=meters)
    for _ in range(5):
        first.get_secret_string(NAME)
        second.get_secret_string(NAME)
    collections = [_collect(reader)]
    remove_first()
    at_removal = first.stats()
    collections.append(_collect(reader))
    first.get_secret_string(NAME)  # no longer counted
    second.get_secret_string(NAME)
    collections.append(_collect(reader))
    _assert_never_down(collections, temporality)
    reads = _reads(_sum_over(collections, temporality))
    assert reads == {"hit": at_removal.hits + second.stats().hits, "miss": 2, "stale": 0, "error": 0}
    # Instrumented again, the cache counts live once more, from its own counters: nothing twice.
    remove_first = instrument(first, meter_provider=meters)
    collections.append(_collect(reader))
    _assert_never_down(collections, temporality)
    reads = _reads(_sum_over(collections, temporality))
    assert reads["hit"] == first.stats().hits + second.stats().hits == 10
    remove_first()
    remove_second()
    meters.shutdown()


def test_instrumented_again_after_another_provider_each_provider_counts_the_cache_once(
    client: Any, admin: Any, clock: FakeClock, telemetry: Telemetry
) -> None:
    """Instrumented with P, then Q, then P again: P counts the cache's live counts once, Q keeps what it had."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    other_reader, other = _counter_reader(AggregationTemporality.CUMULATIVE)
    remove = telemetry.instrument(cache)
    for _ in range(3):
        cache.get_secret_string(NAME)  # 1 miss, 2 hits
    remove()
    remove = instrument(cache, meter_provider=other)
    cache.get_secret_string(NAME)  # a hit, counted by Q
    remove()
    at_removal = cache.stats()
    remove = telemetry.instrument(cache)
    cache.get_secret_string(NAME)
    assert telemetry.sums("secretcache.reads", "secretcache.result")[("hit",)] == cache.stats().hits == 4
    assert _reads(_collect(other_reader))["hit"] == at_removal.hits == 3  # Q keeps the counts it had
    remove()
    other.shutdown()


def test_a_read_interrupted_in_its_own_fetch_is_counted_once_as_an_error(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """A KeyboardInterrupt out of the reader's own fetch: a miss and a read error, as for its fellow readers."""
    cache = instrumented(telemetry, client, admin, clock)
    interrupted(calls, lambda: cache.get_secret_string(NAME))
    stats = cache.stats()
    reads = telemetry.sums("secretcache.reads", "secretcache.result")
    assert reads == {("hit",): 0, ("miss",): 0, ("stale",): 0, ("error",): 1}
    assert sum(reads.values()) == stats.hits + stats.misses == 1
    assert stats.read_errors == 1


def test_an_async_read_cancelled_while_its_fetch_runs_is_counted_once_as_an_error(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry
) -> None:
    """A task cancelled mid-fetch: one read error; the fetch goes on, one span and one duration, ok."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = AsyncSecretCache(cache=make_cache(client, clock))
    telemetry.instrument(cache)
    gate = calls.hold()

    async def main() -> None:
        task = asyncio.ensure_future(cache.get_secret_string(NAME))
        await asyncio.wait_for(asyncio.to_thread(wait_until, lambda: calls["GetSecretValue"] == 1), WATCHDOG)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WATCHDOG)

    asyncio.run(main())
    gate.set()
    quiescent(cache.cache)
    stats = cache.stats()
    reads = telemetry.sums("secretcache.reads", "secretcache.result")
    assert reads == {("hit",): 0, ("miss",): 0, ("stale",): 0, ("error",): 1}
    assert sum(reads.values()) == stats.hits + stats.misses == 1
    [span] = telemetry.spans()
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    [(attributes, point)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert (attributes["secretcache.outcome"], point.count) == ("ok", 1)
    assert stats.size == 1  # the fetch completed for the next reader
