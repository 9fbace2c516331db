"""JSON secrets: database credentials as RDS and the rotation templates store them.

Run locally (no AWS account; moto stands in for Secrets Manager):
    pip install -e '.[demo]' && python examples/json_credentials.py
"""

from __future__ import annotations

import json

import boto3

from secretcache import SecretCache, SecretFormatError


def connection_settings(cache: SecretCache, secret_id: str) -> dict[str, object]:
    # Parsed once per fetched version; every call gets its own copy, safe to change.
    creds = cache.get_secret_json(secret_id)
    creds.pop("engine", None)
    return creds


def main(cache: SecretCache) -> None:
    settings = connection_settings(cache, "prod/orders/db")
    print(f"connect to {settings['host']}:{settings['port']} as {settings['username']}")
    # One key at a time:
    print(f"database: {cache.get_secret_json('prod/orders/db', 'dbname')}")
    try:
        cache.get_secret_json("prod/orders/db", "sslrootcert")
    except SecretFormatError as err:
        print(f"format error (never shows the value): {err}")


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(
            Name="prod/orders/db",
            SecretString=json.dumps(
                {
                    "engine": "postgres",
                    "host": "orders.cluster-abc.eu-west-1.rds.amazonaws.com",
                    "port": 5432,
                    "username": "orders_app",
                    "password": "example-password",
                    "dbname": "orders",
                }
            ),
        )
        main(SecretCache(client))
