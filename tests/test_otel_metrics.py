"""secretcache.otel metrics: equal to stats() and to the script, no value or unasked name, each read counted once.

Also ``uninstrument()``, two caches on one provider, and the arguments refused. The in-memory
providers are in ``tests/otel.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from secretcache import SecretNotFoundError
from secretcache.otel import instrument
from tests.conftest import Calls, FakeClock, quiescent, wait_until
from tests.otel import NAME, VALUE, Telemetry, instrumented
from tests.otel import telemetry as telemetry  # a fixture
from tests.test_cache import make_cache, rotate


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
