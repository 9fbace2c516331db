"""Quick start: one cache per process, shared by every thread.

Run locally (no AWS account; moto stands in for Secrets Manager):
    pip install -e '.[demo]' && python examples/quickstart.py
"""

from __future__ import annotations

import boto3

from secretcache import SecretCache, SecretNotFoundError

# One cache for the whole process. Without a client it builds one lazily from the usual
# AWS environment (region, credentials), with botocore retries off and bounded timeouts.
cache = SecretCache(ttl=300)


def handle_request() -> str:
    api_key = cache.get_secret_string("prod/payments/api-key")  # a dict lookup once warm
    return f"calling the payments API with a key of {len(api_key)} characters"


def main() -> None:
    for _ in range(1000):
        handle_request()
    stats = cache.stats()
    print(f"1000 requests: {stats.total_api_calls} API call(s), hits={stats.hits}, misses={stats.misses}")
    try:
        cache.get_secret_string("prod/does-not-exist")
    except SecretNotFoundError as err:
        print(f"typed error: {err}")


if __name__ == "__main__":
    import os

    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the lazily built client needs a region
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="prod/payments/api-key", SecretString="pk_live_example_0123456789"
        )
        main()
