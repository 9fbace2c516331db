"""secretcache.otel over its lifecycle: instrumenting before or after the SDK is set, telemetry
that fails while a fetch ends, and ``uninstrument()`` with a fetch in flight.

The global meter provider can be set once per process; the ``global_meters`` fixture gives each
test a fresh, unset one (what opentelemetry-python's own ``reset_metrics_globals`` test helper
does) and puts the old one back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.util._once import Once

from secretcache import SecretCache, otel
from secretcache.otel import instrument
from tests.test_cache import make_cache
from tests.test_otel import NAME, VALUE, Telemetry, telemetry

__all__ = ["telemetry"]  # a fixture, used by name


@pytest.fixture
def global_meters(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global meter provider set yet (a fresh proxy), no cache instrumented; all restored after."""
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_api, "_PROXY_METER_PROVIDER", metrics_api._ProxyMeterProvider())
    # A cache a failed test left instrumented with an older proxy must not count in the next test.
    monkeypatch.setattr(otel, "_MEMBERS", ())


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

    _assert_metrics_equal_stats(telemetry, list(caches.values()))
    [(_, histogram)] = telemetry.metrics()["secretcache.fetch.duration"]
    assert histogram.count == 2  # one fetch each
    # Removing the first cache instrumented (whose instruments the SDK kept) leaves the other's counts.
    first = next(step.split(":")[0] for step in order if step != "set")
    removers.pop(first)()
    _assert_metrics_equal_stats(telemetry, [cache for name, cache in caches.items() if name != first])


def _assert_metrics_equal_stats(telemetry: Telemetry, caches: list[SecretCache]) -> None:
    stats = [cache.stats() for cache in caches]
    reads = telemetry.sums("secretcache.reads", "secretcache.result")
    assert reads[("hit",)] == sum(item.hits for item in stats)
    assert reads[("miss",)] == sum(item.misses for item in stats)
    api = telemetry.sums("secretcache.api_calls", "aws.operation")
    assert api[("GetSecretValue",)] == sum(item.api_calls.get("GetSecretValue", 0) for item in stats)
    assert [point.value for _, point in telemetry.metrics()["secretcache.entries"]] == [
        sum(item.size for item in stats)
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
