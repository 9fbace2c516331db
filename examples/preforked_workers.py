"""Pre-forked workers (gunicorn --preload, multiprocessing with fork): warm once, read in children.

The parent warms the cache before forking; each child starts with the values, fresh locks, no
inherited fetches or threads, and its own connections.

Run locally (no AWS account; moto stands in for Secrets Manager):
    pip install -e '.[demo]' && python examples/preforked_workers.py
"""

from __future__ import annotations

import multiprocessing
import os

import boto3

from secretcache import SecretCache

cache: SecretCache  # module-level, created before the fork, as in a gunicorn app module
calls_before_fork = 0


def worker(_: int) -> str:
    password = cache.get_secret_string("prod/app/db-password")  # served from the inherited entry
    new_calls = cache.stats().total_api_calls - calls_before_fork  # counters carry over from the parent
    return f"worker pid {os.getpid()}: password of {len(password)} chars, API calls made by this worker: {new_calls}"


def main() -> None:
    global cache, calls_before_fork
    cache = SecretCache(boto3.client("secretsmanager", region_name="us-east-1"))
    cache.prefetch(["prod/app/db-password"])  # warm in the parent: one call for all workers
    calls_before_fork = cache.stats().total_api_calls
    with multiprocessing.get_context("fork").Pool(3) as pool:
        for line in pool.map(worker, range(3)):
            print(line)


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="prod/app/db-password", SecretString="example-password"
        )
        main()
