"""Fleet-wide invalidation: an SQS listener applies Secrets Manager change events to a cache.

Run locally (no AWS account; moto stands in for Secrets Manager, EventBridge and SQS):
    pip install -e '.[demo]' && python examples/sqs_listener.py
"""

from __future__ import annotations

import json
import time

import boto3

from secretcache import SecretCache
from secretcache.events import SqsInvalidationListener


def main() -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    arn = sm.create_secret(Name="prod/orders/db", SecretString="password-1")["ARN"]

    # Infrastructure, normally CloudFormation/Terraform: rule on aws.secretsmanager -> this queue.
    queue_url = sqs.create_queue(QueueName="orders-host-1-secret-changes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="secret-changes", EventPattern=json.dumps({"source": ["aws.secretsmanager"]}))
    events.put_targets(Rule="secret-changes", Targets=[{"Id": "queue", "Arn": queue_arn}])

    cache = SecretCache(sm, ttl=3600)  # a long TTL: events do the fast pickup
    print("cached:", cache.get_secret_string("prod/orders/db"))
    with SqsInvalidationListener(cache, queue_url, client=sqs, wait_time_seconds=1, refresh=True):
        # A rotation happens; Secrets Manager publishes "Secret Label Updated" (simulated here).
        version = sm.put_secret_value(SecretId="prod/orders/db", SecretString="password-2")["VersionId"]
        detail = {"name": "prod/orders/db", "labelUpdated": "AWSCURRENT", "versionId": version}
        events.put_events(
            Entries=[{"Source": "aws.secretsmanager", "DetailType": "Secret Label Updated",
                      "Detail": json.dumps(detail), "Resources": [arn]}]
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while cache.stats().api_calls.get("BatchGetSecretValue", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the listener thread invalidates, then prefetches the new value
        print("after the event:", cache.get_secret_string("prod/orders/db"), "(well before the 1 h TTL)")
    print(f"api_calls={dict(cache.stats().api_calls)}")


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        main()
