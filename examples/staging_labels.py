"""Staging labels during a rotation: AWSCURRENT, AWSPENDING, AWSPREVIOUS and change listeners.

Run locally (no AWS account; moto stands in for Secrets Manager):
    pip install -e '.[demo]' && python examples/staging_labels.py
"""

from __future__ import annotations

import boto3

from secretcache import SecretCache, SecretChange, SecretNotFoundError


def log_change(change: SecretChange) -> None:
    # Listeners get ids only, never values: safe to log.
    print(f"  {change.version_stage} of {change.name} moved {change.old_version_id[:8]} -> {change.new_version_id[:8]}")


def main(client: object, cache: SecretCache) -> None:
    cache.on_change(log_change)
    secret = "prod/app/token"
    print(f"AWSCURRENT: {cache.get_secret_string(secret)}")
    try:
        cache.get_secret_string(secret, version_stage="AWSPENDING")
    except SecretNotFoundError:
        print("AWSPENDING: none (no rotation in progress)")

    # A rotation: the new version is staged as AWSPENDING first...
    old = cache.get_secret(secret).version_id
    new = client.put_secret_value(SecretId=secret, SecretString="token-v2", VersionStages=["AWSPENDING"])  # type: ignore[attr-defined]
    # A label found missing is remembered for RetryPolicy.failure_backoff (1 s by default) so a
    # hot loop cannot hammer the API; force_refresh looks again at once.
    print(f"AWSPENDING: {cache.get_secret_string(secret, version_stage='AWSPENDING', force_refresh=True)}")
    # ...then AWSCURRENT moves to it, and the old version becomes AWSPREVIOUS.
    client.update_secret_version_stage(  # type: ignore[attr-defined]
        SecretId=secret, VersionStage="AWSCURRENT", MoveToVersionId=new["VersionId"], RemoveFromVersionId=old
    )
    print(f"AWSCURRENT (cached until its TTL): {cache.get_secret_string(secret)}")
    print("refresh() fetches now:")
    print(f"AWSCURRENT: {cache.refresh(secret).secret_string}")
    print(f"AWSPREVIOUS: {cache.get_secret_string(secret, version_stage='AWSPREVIOUS')}")
    # A version id never changes its value, so it is cached until evicted:
    print(f"by version id {old[:8]}: {cache.get_secret_string(secret, version_id=old)}")


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        sm.create_secret(Name="prod/app/token", SecretString="token-v1")
        main(sm, SecretCache(sm, ttl=300))
