"""AWS Lambda with Powertools: the cache's counts as CloudWatch metrics, its log records as JSON.

Powertools Metrics publishes each invocation's cache hits, misses, Secrets Manager calls, stale
reads and failed reads in embedded metric format (EMF); Powertools Logger writes secretcache's
own records as JSON, their fields (``secret_name``, ``error_type``, ...) as keys.

Run locally (no AWS account; moto stands in for Secrets Manager, a loop stands in for Lambda):
    pip install -e '.[demo,powertools]' && python examples/lambda_powertools_observability.py
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from secretcache import CacheStats
from secretcache.aws_lambda import inject_secrets, secret

logger = Logger(service="orders")
metrics = Metrics(namespace="MyApp", service="orders")
# secretcache logs through the standard "secretcache" logger: give it the Powertools handler,
# so its records come out as JSON with their fields (secret_name, error_type, ...) as keys.
copy_config_to_registered_loggers(source_logger=logger, include={"secretcache"})

P = ParamSpec("P")
R = TypeVar("R")


def add_cache_metrics(before: CacheStats, after: CacheStats) -> None:
    """Add what the cache did between two ``stats()`` snapshots to this invocation's metrics.

    ``inject_secrets`` warms the secrets (one batch call) before it reads them, so even a cold
    start's reads count as hits: ``SecretsManagerCalls`` is the count that shows the fetches.
    """
    counts = {
        "SecretCacheHits": after.hits - before.hits,
        "SecretCacheMisses": after.misses - before.misses,
        "SecretsManagerCalls": after.total_api_calls - before.total_api_calls,
        "SecretCacheStaleServed": after.stale_served - before.stale_served,
        "SecretCacheReadErrors": after.read_errors - before.read_errors,
    }
    for name, value in counts.items():  # zeros too, so alarms and ratios see every invocation
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def cache_metrics(handler: Callable[P, R]) -> Callable[P, R]:
    """Publish the cache's counts of each invocation; put it above ``@inject_secrets``, which reads."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        cache = handler.get_cache()  # type: ignore[attr-defined]  # the cache inject_secrets reads through
        before = cache.stats()
        try:
            return handler(*args, **kwargs)
        finally:  # failed invocations count too
            add_cache_metrics(before, cache.stats())

    return wrapper


@metrics.log_metrics  # flushes the EMF line after each invocation
@logger.inject_lambda_context  # request id, function name... on every record, secretcache's too
@cache_metrics
@inject_secrets(api_key="prod/payments/api-key", password=secret("prod/orders/db", key="password"))
def handler(event: dict[str, Any], context: Any, *, api_key: str, password: str) -> dict[str, Any]:
    logger.info("order handled", extra={"order_id": event["order_id"]})
    return {"statusCode": 200}


if __name__ == "__main__":
    import json
    import os
    import time
    from types import SimpleNamespace

    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from secretcache.aws_lambda import default_cache

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    # The function's configuration, shortened for the demo: values live 1 s (300 s is a sane
    # production TTL), no refresh-ahead or jitter, and one quick retry.
    os.environ.update(SECRETCACHE_TTL="1", SECRETCACHE_REFRESH_AHEAD="off", SECRETCACHE_TTL_JITTER="0")
    os.environ.update(SECRETCACHE_RETRY_ATTEMPTS="2", SECRETCACHE_RETRY_INITIAL_DELAY="0")

    def invoke(order_id: int) -> None:
        context = SimpleNamespace(  # what Powertools reads from the Lambda context object
            function_name="orders",
            memory_limit_in_mb=128,
            invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:orders",
            aws_request_id=f"00000000-0000-4000-8000-{order_id:012d}",
        )
        handler({"order_id": order_id}, context)

    def throttled(model: Any, **_: Any) -> None:
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        raise ClientError(error, model.name)  # type: ignore[arg-type]

    with mock_aws():
        sm = boto3.client("secretsmanager")
        sm.create_secret(Name="prod/payments/api-key", SecretString="pk_live_example_0123456789")
        sm.create_secret(Name="prod/orders/db", SecretString=json.dumps({"password": "example-password-1"}))
        print("--- cold start: one BatchGetSecretValue")
        invoke(1)
        print("--- warm: from the cache")
        invoke(2)
        invoke(3)
        time.sleep(1.1)  # the values' TTL runs out...
        default_cache().client.meta.events.register("before-call.secretsmanager.*", throttled)  # ...and AWS throttles
        print("--- outage: the expired values are served stale, and a WARNING is logged")
        invoke(4)
