"""Prometheus: the cache's OpenTelemetry metrics on a /metrics endpoint.

The OpenTelemetry SDK's Prometheus reader turns ``secretcache.reads`` into
``secretcache_reads_total{secretcache_result="hit"}`` and so on; prometheus_client serves them.

Run locally (no AWS account; moto stands in for Secrets Manager; the script scrapes itself):
    pip install -e '.[demo,prometheus]' && python examples/otel_prometheus.py
"""

from __future__ import annotations

# --8<-- [start:setup]
from collections.abc import Callable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import start_http_server

from secretcache import SecretCache
from secretcache.otel import instrument

cache = SecretCache(ttl=300)  # one per process, shared by every thread


def serve_metrics(
    cache: SecretCache,
    *,
    port: int = 9464,  # the OpenTelemetry Prometheus exporter's usual port
    addr: str = "0.0.0.0",  # noqa: S104 - every interface: Prometheus scrapes from another host
) -> Callable[[], None]:
    """Serve ``cache``'s metrics at ``http://addr:port/metrics``; return the function that stops it.

    In a service, call it once at start-up and keep the server for the life of the process. If
    the process sets up OpenTelemetry already, pass your meter provider instead of building one
    (or call ``instrument(cache)`` to use the global one).
    """
    reader = PrometheusMetricReader()  # answers scrapes through prometheus_client's default registry
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "orders"}))
    uninstrument = instrument(cache, meter_provider=provider)
    server, thread = start_http_server(port, addr=addr)  # returns both since prometheus_client 0.20

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()
        uninstrument()
        provider.shutdown()

    return stop


# --8<-- [end:setup]


def free_port() -> int:
    """A port nothing listens on (start_http_server cannot be asked for port 0 in every version)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    import urllib.request

    from secretcache import SecretNotFoundError

    port = free_port()
    stop = serve_metrics(cache, port=port, addr="127.0.0.1")  # loopback only for the demo
    try:
        for _ in range(100):
            cache.get_secret_string("prod/payments/api-key")  # 1 miss, then 99 hits
        try:
            cache.get_secret_string("prod/does-not-exist")
        except SecretNotFoundError as err:
            print(f"typed error: {err}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            scrape = response.read().decode()
    finally:
        stop()
    stats = cache.stats()
    print(f"stats(): hits={stats.hits}, misses={stats.misses}, read_errors={stats.read_errors}, size={stats.size}")
    for line in scrape.splitlines():
        if line.startswith("secretcache_") and "_bucket{" not in line:  # the histogram's buckets left out
            print(line)


if __name__ == "__main__":
    import os

    import boto3
    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the lazily built client needs a region
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name="prod/payments/api-key", SecretString="pk_live_example_0123456789"
        )
        main()
