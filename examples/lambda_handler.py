"""An AWS Lambda handler with injected secrets: one batch call on cold start, none when warm.

Run locally (no AWS account; moto stands in for Secrets Manager, a loop stands in for Lambda):
    pip install -e '.[demo]' && python examples/lambda_handler.py
"""

from __future__ import annotations

import json
from typing import Any

from secretcache.aws_lambda import default_cache, handle_rotation_event, inject_secrets, secret


# Style 1: the whole secret string as an argument. Style 2: JSON fields mapped to arguments.
@inject_secrets(
    api_key="prod/payments/api-key",
    username=secret("prod/orders/db", key="username"),
    password=secret("prod/orders/db", key="password"),
)
def handler(event: dict[str, Any], context: Any, *, api_key: str, username: str, password: str) -> dict[str, Any]:
    # connect to the database as `username`, call the payments API with `api_key`...
    return {"statusCode": 200, "body": f"order {event['order_id']} handled as {username}"}


# A second function, subscribed through EventBridge to Secrets Manager change events, keeps
# every warm container from serving a rotated secret until its TTL.
def on_secret_change(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"invalidated": handle_rotation_event(event)}


if __name__ == "__main__":
    import os

    import boto3
    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sm = boto3.client("secretsmanager")
        sm.create_secret(Name="prod/payments/api-key", SecretString="pk_example_123")
        sm.create_secret(Name="prod/orders/db", SecretString=json.dumps({"username": "orders_app", "password": "pw"}))
        print(handler({"order_id": 1}, None))  # cold start
        for order_id in range(2, 102):  # 100 warm invocations
            handler({"order_id": order_id}, None)
        print(f"101 invocations: api_calls={dict(default_cache().stats().api_calls)}")
        event = {
            "source": "aws.secretsmanager",
            "detail-type": "AWS API Call via CloudTrail",
            "detail": {"eventName": "PutSecretValue", "requestParameters": {"secretId": "prod/orders/db"}},
        }
        print(on_secret_change(event, None))
