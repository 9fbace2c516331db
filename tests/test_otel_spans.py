"""secretcache.otel spans nested as documented.

A foreground fetch is a child of its caller's span (threads and asyncio), botocore's spans nest
under it, and a background refresh is its own trace, linked to its trigger.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import boto3
import pytest

from secretcache import AsyncSecretCache, otel
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock, quiescent, wait_until
from tests.otel import NAME, VALUE, Telemetry, instrumented
from tests.otel import telemetry as telemetry  # a fixture
from tests.store import busy_pool
from tests.test_cache import make_cache


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
    cache = instrumented(telemetry, client, admin, clock, refresh_ahead=0.5)
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


def test_a_refresh_queued_while_a_refresh_thread_is_free_is_linked_to_its_trigger(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh started by a leftover job the moment its read queues it still links to that read's span.

    A refresh thread runs the oldest refresh queued, not the one its job was handed: db's job, its
    refresh taken over, took api's as soon as api's read queued it, before that read had noted its
    span, and api's refresh had no link.
    """
    cache, release = busy_pool(client, admin, calls, clock, more=("api",))
    telemetry.instrument(cache)
    try:
        cache.get_secret_string("db")  # db's refresh queued: its job waits behind the two held refreshes
        cache.refresh("db")  # a reader takes it over: db's job will find nothing of db's to run
        barrier, drained = threading.Barrier(2), threading.Event()

        def mark() -> None:  # both refresh threads here: db's job, queued before, is over
            barrier.wait(WATCHDOG)
            drained.set()

        assert [cache._runner.defer(mark) for _ in range(2)] == [True, True]  # queued behind db's job
        real = otel._Observer.origin

        def origin(self: Any) -> object:  # the read that queues api's refresh, once its lock is released
            token = real(self)
            release.set()
            assert drained.wait(WATCHDOG)
            return token

        monkeypatch.setattr(otel._Observer, "origin", origin)
        with telemetry.tracers.get_tracer("app").start_as_current_span("request") as request:
            assert cache.get_secret_string("api") == "api-1"
    finally:
        release.set()
    quiescent(cache)
    background = [
        span for span in telemetry.spans() if (span.attributes or {}).get("secretcache.refresh") == "background"
    ]
    assert [[link.context.span_id for link in span.links] for span in background] == [
        [request.get_span_context().span_id]
    ]
    assert calls.counts["GetSecretValue"] == 4 + 2 + 1 + 1  # warm-up; s1 and s2; db refreshed; api's once
    cache.close()
