"""asyncio: AsyncSecretCache in an async service; hits never suspend, misses never block the loop.

Run locally (no AWS account; moto stands in for Secrets Manager):
    pip install -e '.[demo]' && python examples/asyncio_app.py
"""

from __future__ import annotations

import asyncio

import boto3

from secretcache import AsyncSecretCache


# --8<-- [start:handler]
async def handle_request(cache: AsyncSecretCache, request_id: int) -> str:
    creds = await cache.get_secret_json("prod/orders/db")  # a dict lookup once warm
    return f"request {request_id}: connect as {creds['username']}"
    # --8<-- [end:handler]


async def main(cache: AsyncSecretCache) -> None:
    # Warm everything the service needs in one batch call at start-up.
    failures = await cache.prefetch(["prod/orders/db", "prod/orders/api-key"])
    print(f"prefetched, failures: {failures}")
    # 200 concurrent requests: zero further API calls.
    results = await asyncio.gather(*(handle_request(cache, index) for index in range(200)))
    print(results[0])
    stats = cache.stats()
    print(f"200 requests: api_calls={dict(stats.api_calls)}, hits={stats.hits}")


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(
            Name="prod/orders/db", SecretString='{"username": "orders_app", "password": "example-password"}'
        )
        client.create_secret(Name="prod/orders/api-key", SecretString="example-key")
        asyncio.run(main(AsyncSecretCache(client, ttl=300)))
