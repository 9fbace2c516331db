"""The monitoring recipes, in process: a Prometheus scrape over HTTP, and Powertools EMF and JSON logs.

``tests/test_examples.py`` runs ``examples/otel_prometheus.py`` and
``examples/lambda_powertools_observability.py`` and matches their output; these tests check the
numbers those recipes publish against ``stats()`` after a scripted run with an outage, and that
no secret value (nor, in the scrape, a secret name) leaks.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import secretcache.aws_lambda
from secretcache import CacheStats, SecretCache, SecretNotFoundError, SecretUnavailableError
from secretcache._lazy import Lazy
from secretcache.aws_lambda import reset_default_cache
from secretcache.otel import instrument
from tests.conftest import Calls, FakeClock, quiescent
from tests.test_cache import make_cache

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

NAME = "svc/RECIPE-NAME-MARKER"  # a scrape must not hold it
VALUE = "example-password-RECIPE-MARKER"  # no output may hold it


# -- Prometheus -----------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """A meter provider whose Prometheus reader is served over HTTP from a registry of its own."""

    provider: MeterProvider
    url: str

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310 - a loopback http URL
            text: str = response.read().decode()
            return text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A fresh CollectorRegistry (so tests never clash in the default one), served on a loopback port."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield Endpoint(provider, f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        provider.shutdown()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every ``secretcache_`` sample of a scrape: (sample name, labels without otel_scope_*) -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("secretcache_"):
                labels = frozenset((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope_"))
                samples[sample.name, labels] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample ``name`` with exactly ``labels`` (label values absent from the series read as "")."""
    wanted = {key: val for key, val in labels.items() if val}
    found = [v for (n, ls), v in samples.items() if n == name and {k: x for k, x in ls if x} == wanted]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def test_prometheus_scrape_equals_stats_after_an_outage(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, endpoint: Endpoint
) -> None:
    """Scraped over HTTP: reads and API calls by outcome equal stats(); no secret name or value."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)  # ttl 60, three attempts without delays, failure backoff 1 s
    uninstrument = instrument(cache, meter_provider=endpoint.provider)
    try:
        for _ in range(10):
            assert cache.get_secret_string(NAME) == VALUE  # 1 miss, 9 hits
        clock.advance(61)
        stop_throttling = calls.fail_with("ThrottlingException")
        assert cache.get_secret_string(NAME) == VALUE  # served stale at the first of 3 throttled calls
        quiescent(cache)  # the other two end behind the reader
        assert cache.get_secret_string(NAME) == VALUE  # backing off: stale, no call
        stop_throttling()
        clock.advance(2)
        assert cache.get_secret_string(NAME) == VALUE  # fetched again: a miss
        with pytest.raises(SecretNotFoundError):
            cache.get_secret_string("svc/missing")  # 1 call, a read error
        stats = cache.stats()
        text = endpoint.scrape()
    finally:
        uninstrument()
        cache.close()

    assert VALUE not in text
    assert "RECIPE-NAME-MARKER" not in text
    assert "svc/missing" not in text
    samples = parse(text)

    # Reads: exactly the script, and what stats() says.
    reads = {
        result: value(samples, "secretcache_reads_total", secretcache_result=result)
        for result in ("hit", "miss", "stale", "error")
    }
    assert reads == {"hit": 9, "miss": 2, "stale": 2, "error": 1}
    assert (reads["hit"], reads["stale"], reads["error"]) == (stats.hits, stats.stale_served, stats.read_errors)
    # misses counts every read that waited: the two misses, the first stale read, the error.
    assert stats.misses == reads["miss"] + 1 + reads["error"]
    assert value(samples, "secretcache_stale_served_total") == stats.stale_served

    # API calls, by operation and by outcome and error type.
    assert dict(stats.api_calls) == {"GetSecretValue": 6}
    assert dict(stats.api_errors) == {"ThrottlingException": 3, "ResourceNotFoundException": 1}
    assert total(samples, "secretcache_api_calls_total", aws_operation="GetSecretValue") == 6
    assert total(samples, "secretcache_api_calls_total", secretcache_outcome="ok") == 2
    for kind, count in stats.api_errors.items():
        assert total(samples, "secretcache_api_calls_total", secretcache_outcome="error", error_type=kind) == count

    # One duration sample per fetch: cold, outage, recovery, not found (the fake clock says 0 s).
    assert total(samples, "secretcache_fetch_duration_seconds_count", secretcache_outcome="ok") == 2
    assert total(samples, "secretcache_fetch_duration_seconds_count", error_type="ThrottlingException") == 1
    assert total(samples, "secretcache_fetch_duration_seconds_count", error_type="ResourceNotFoundException") == 1
    assert total(samples, "secretcache_fetch_duration_seconds_sum") == 0.0
    assert value(samples, "secretcache_entries") == stats.size
    assert value(samples, "secretcache_changes_total") == stats.changes == 0
    assert value(samples, "secretcache_evictions_total") == stats.evictions == 0


def test_prometheus_scrape_after_uninstrument_keeps_the_cache_counts_as_they_were(
    client: Any, admin: Any, clock: FakeClock, endpoint: Endpoint
) -> None:
    """Once uninstrumented, the cache's counters stay at their last values (never a reset) and its entries leave."""
    admin.create_secret(Name=NAME, SecretString=VALUE)
    cache = make_cache(client, clock)
    uninstrument = instrument(cache, meter_provider=endpoint.provider)
    cache.get_secret_string(NAME)
    assert value(parse(endpoint.scrape()), "secretcache_reads_total", secretcache_result="miss") == 1
    uninstrument()
    cache.get_secret_string(NAME)
    clock.advance(61)
    cache.get_secret_string(NAME)
    samples = parse(endpoint.scrape())
    assert value(samples, "secretcache_reads_total", secretcache_result="miss") == 1
    assert value(samples, "secretcache_reads_total", secretcache_result="hit") == 0
    assert total(samples, "secretcache_api_calls_total") == 1
    assert not any(name == "secretcache_entries" for name, _ in samples)
    cache.close()


# -- AWS Lambda with Powertools -----------------------------------------------------------------


@contextmanager
def _restored(logger: logging.Logger) -> Iterator[None]:
    """Give ``logger`` back its handlers, filters, level and propagation, and drop attributes added to it."""
    saved = dict(vars(logger))
    handlers, filters = list(logger.handlers), list(logger.filters)
    try:
        yield
    finally:
        for name in set(vars(logger)) - set(saved):
            delattr(logger, name)
        logger.handlers = handlers
        logger.filters = filters
        logger.propagate = saved["propagate"]
        logger.disabled = saved["disabled"]
        logger.setLevel(saved["level"])  # also clears the loggers' level caches


@pytest.fixture
def load_recipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], ModuleType]]:
    """Load examples/lambda_powertools_observability.py afresh; put the loggers it configures back afterwards.

    Call it in the test body: Powertools Logger keeps the ``sys.stdout`` of when it was built as
    its stream, and ``capsys`` swaps in the stream it reads only for the test's call phase.
    Powertools configures the stdlib logger named after the service once per process, and
    copy_config_to_registered_loggers rewires the "secretcache" logger: both are restored, so
    other tests (and later loads) find them as they were.
    """
    for name in (
        "POWERTOOLS_DEV",
        "POWERTOOLS_METRICS_DISABLED",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    service, library = logging.getLogger("orders"), logging.getLogger("secretcache")
    pristine = set(vars(logging.Logger("pristine")))
    loaded: list[ModuleType] = []

    def load() -> ModuleType:
        for name in set(vars(service)) - pristine:  # forget an earlier Powertools set-up of "orders"
            delattr(service, name)
        service.handlers = []
        path = EXAMPLES / "lambda_powertools_observability.py"
        spec = importlib.util.spec_from_file_location("lambda_powertools_observability", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)
        return module

    root_filters = [(handler, list(handler.filters)) for handler in logging.root.handlers]  # Powertools adds some
    reset_default_cache()
    with _restored(service), _restored(library):
        try:
            yield load
        finally:
            for module in loaded:
                module.metrics.clear_metrics()
            reset_default_cache()
            for handler, filters in root_filters:
                handler.filters = filters


def _context(request: int) -> Any:
    return SimpleNamespace(
        function_name="orders",
        memory_limit_in_mb=128,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:orders",
        aws_request_id=f"request-{request}",
    )


COUNTS: dict[str, Callable[[CacheStats], int]] = {  # EMF metric name -> what it counts, as the recipe documents
    "SecretCacheHits": lambda s: s.hits,
    "SecretCacheMisses": lambda s: s.misses,
    "SecretsManagerCalls": lambda s: s.total_api_calls,
    "SecretCacheStaleServed": lambda s: s.stale_served,
    "SecretCacheReadErrors": lambda s: s.read_errors,
}


@dataclass
class Invocation:
    before: CacheStats
    after: CacheStats
    lines: list[dict[str, Any]]  # every stdout line, parsed: all are JSON
    error: Exception | None

    @property
    def emf(self) -> dict[str, Any]:
        found = [line for line in self.lines if "_aws" in line]
        assert len(found) == 1, self.lines
        return found[0]

    def records(self, level: str, logger: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("level") == level and line.get("name") == logger]

    def deltas(self) -> dict[str, int]:
        return {name: count(self.after) - count(self.before) for name, count in COUNTS.items()}


def test_lambda_recipe_publishes_stats_deltas_and_logs_library_records_as_json(
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    load_recipe: Callable[[], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each invocation's EMF values equal the stats() deltas; the outage WARNING is JSON with its fields."""
    admin.create_secret(Name="prod/payments/api-key", SecretString="pk_live_example_RECIPE")
    admin.create_secret(Name="prod/orders/db", SecretString=json.dumps({"password": VALUE}))
    cache = make_cache(client, clock)  # ttl 60, max_stale 3600, three attempts without delays
    # The process-wide cache the handler reads through, with a clock the test moves.
    monkeypatch.setattr(secretcache.aws_lambda, "_default", Lazy(cache, SecretCache.from_env, wait=1.0))
    recipe = load_recipe()
    assert recipe.handler.get_cache() is cache  # functools.wraps carries it up the decorators
    capsys.readouterr()
    outputs: list[str] = []

    def invoke(request: int) -> Invocation:
        before = cache.stats()
        error: Exception | None = None
        try:
            recipe.handler({"order_id": request}, _context(request))
        except Exception as err:  # the read-error invocation raises; checked below
            error = err
        out, err_text = capsys.readouterr()
        outputs.extend((out, err_text))
        assert err_text == ""  # no "--- Logging error ---" either
        lines = [json.loads(line) for line in out.splitlines()]
        invocation = Invocation(before, cache.stats(), lines, error)
        metrics = invocation.emf
        directive = metrics["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "MyApp"
        assert directive["Dimensions"] == [["service"]]
        assert metrics["service"] == "orders"
        assert {item["Name"]: item["Unit"] for item in directive["Metrics"]} == dict.fromkeys(COUNTS, "Count")
        assert {name: metrics[name] for name in COUNTS} == {name: [float(n)] for name, n in invocation.deltas().items()}
        return invocation

    cold = invoke(1)
    assert cold.error is None
    assert calls.counts == {"BatchGetSecretValue": 1}
    # inject_secrets prefetches, so the cold start's reads are hits: the call count shows the fetch.
    assert cold.deltas() == {**dict.fromkeys(COUNTS, 0), "SecretCacheHits": 2, "SecretsManagerCalls": 1}
    for request in (2, 3, 4):
        warm = invoke(request)
        assert warm.deltas() == {**dict.fromkeys(COUNTS, 0), "SecretCacheHits": 2}
        assert warm.records("WARNING", "secretcache") == []

    clock.advance(61)
    calls.fail_with("ThrottlingException")
    outage = invoke(5)
    assert outage.error is None  # served stale
    assert outage.deltas() == {**dict.fromkeys(COUNTS, 0), "SecretsManagerCalls": 3, "SecretCacheStaleServed": 2}
    warnings = outage.records("WARNING", "secretcache")
    assert sorted(record["secret_name"] for record in warnings) == ["prod/orders/db", "prod/payments/api-key"]
    for record in warnings:
        assert record["error_type"] == "ThrottlingException"
        assert record["operation"] == "BatchGetSecretValue"
        assert record["attempt"] == 3
        assert record["version_id"] in record["message"]
        assert record["function_request_id"] == "request-5"  # the Lambda context reaches library records too
        assert record["service"] == "orders"

    clock.advance(3600)  # past max_stale: nothing servable, the invocation fails, and still publishes
    failed = invoke(6)
    assert isinstance(failed.error, SecretUnavailableError)
    assert failed.deltas() == {**dict.fromkeys(COUNTS, 0), "SecretsManagerCalls": 3, "SecretCacheReadErrors": 1}
    warnings = failed.records("WARNING", "secretcache")
    assert sorted(record["secret_name"] for record in warnings) == ["prod/orders/db", "prod/payments/api-key"]
    assert {record["error_type"] for record in warnings} == {"ThrottlingException"}

    everything = "".join(outputs)
    assert VALUE not in everything
    assert "pk_live_example" not in everything
