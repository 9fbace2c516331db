"""secretcache.otel spans nested as documented.

A foreground fetch is a child of its caller's span (threads and asyncio), botocore's spans nest
under it, and a background refresh is its own trace, linked to its trigger.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3

from secretcache import AsyncSecretCache
from tests.conftest import REGION, Calls, FakeClock, wait_until
from tests.otel import NAME, VALUE, Telemetry, instrumented
from tests.otel import telemetry as telemetry  # a fixture
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
