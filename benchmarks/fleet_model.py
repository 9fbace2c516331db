"""The fleet cost model: API calls, monthly cost and staleness for 10 to 10,000 processes.

Run:  pip install -e '.[bench]' && python benchmarks/fleet_model.py

Per-process call counts are measured, not assumed: one process reads each of 50 secrets once a
second for a simulated hour (moto in-process, a fake clock), under three set-ups. Fleet figures
multiply those counts. Prices and quotas are AWS's published ones (see PRICE and QUOTA).
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from _recording import options
from moto import mock_aws

from secretcache import SecretCache

SECRETS = 50
HOUR = 3600
PRICE_PER_10K = 0.05  # USD per 10,000 API calls, AWS Secrets Manager pricing page
QUOTA = 10_000  # GetSecretValue requests per second per account and Region (AWS, March 2025)
MONTH = 30 * 24 * HOUR
FLEETS = (10, 1_000, 10_000)
ROTATIONS_PER_MONTH = 1  # each secret rotated monthly; one event refetch per process per rotation


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def measure(client: Any, names: list[str], **settings: Any) -> float:
    """Steady-state calls one warm process makes per hour, reading every secret once a second."""
    counted = [0]

    def count(**_: Any) -> None:
        counted[0] += 1

    client.meta.events.register("before-call.secretsmanager.*", count)
    clock = Clock()
    cache = SecretCache(client, clock=clock, **settings)
    try:
        cache.prefetch(names)  # start warm: the cold start is a one-off, not a rate
        counted[0] = 0
        for _ in range(HOUR):
            for name in names:
                cache.get_secret_string(name)
            deadline = time.monotonic() + 10
            while cache.stats().in_flight and time.monotonic() < deadline:  # background refreshes
                time.sleep(0.0005)
            clock.now += 1
    finally:
        cache.close()
        client.meta.events.unregister("before-call.secretsmanager.*", count)
    return counted[0]


def main() -> None:
    global HOUR  # --quick simulates a shorter hour (its figures are then meaningless)
    if options(__doc__).quick:
        HOUR = 120
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        names = [f"fleet/secret-{index:02d}" for index in range(SECRETS)]
        for name in names:
            client.create_secret(Name=name, SecretString="x")
        setups = [
            ("no cache (GetSecretValue per read)", SECRETS * HOUR, "0 s"),
            ("TTL 300 s (refresh-ahead 0.8)", measure(client, names, ttl=300), "300 s"),
            (
                "TTL 1 h + event invalidation",
                # plus one refetch per process for each rotation event
                measure(client, names, ttl=3600) + SECRETS * ROTATIONS_PER_MONTH / (MONTH / HOUR),
                "seconds (event delivery); 1 h if an event is lost",
            ),
        ]
    print(f"per process: {SECRETS} secrets, each read once a second; calls measured over one simulated hour\n")
    print(f"{'set-up':<36} {'calls/h/process':>16}")
    for name, calls, _ in setups:
        print(f"{name:<36} {calls:>16,.1f}")
    print(
        f"\n{'set-up':<36} {'processes':>10} {'API calls/s':>12} {'% of quota':>11} {'USD/month':>12}  worst staleness"
    )
    for name, calls, staleness in setups:
        for fleet in FLEETS:
            rate = calls * fleet / HOUR
            cost = rate * MONTH / 10_000 * PRICE_PER_10K
            print(f"{name:<36} {fleet:>10,} {rate:>12,.1f} {rate / QUOTA:>10.1%} {cost:>12,.2f}  {staleness}")


if __name__ == "__main__":
    main()
