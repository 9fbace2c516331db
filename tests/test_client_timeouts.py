"""How long a reader waits for another thread's fetch: the retry deadline plus the timeouts of the clients in use.

``Store.wait_bound`` adds one attempt's connect and read timeouts per Region (the primary and
each replica), read from each client's own configuration: a client the caller gives with longer
timeouts gets a longer bound, so waiters do not give up on a fetch still within its client's
timeouts. These tests assert the bound's value; none of them waits.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config

from secretcache import RetryPolicy, SecretCache
from secretcache._client import CONNECT_TIMEOUT, READ_TIMEOUT, call_seconds
from tests.conftest import REGION

POLICY = RetryPolicy(attempts=3, initial_delay=0.1, max_delay=1.0, deadline=10.0)
REPLICA_REGIONS = ("us-west-2", "eu-west-1")


def timed_client(region: str, connect: float, read: float) -> Any:
    return boto3.client("secretsmanager", region_name=region, config=Config(connect_timeout=connect, read_timeout=read))


def bound(cache: SecretCache) -> float:
    return cache._store.wait_bound


@pytest.mark.parametrize("replicas", [0, 1, 2])
def test_the_wait_bound_adds_the_timeouts_of_the_clients_given(aws: None, replicas: int) -> None:
    """Clients with ``Config(connect_timeout=1, read_timeout=3)``: the deadline plus 4 s per Region."""
    client = timed_client(REGION, 1, 3)
    others = [timed_client(region, 1, 3) for region in REPLICA_REGIONS[:replicas]]
    with SecretCache(client, retry=POLICY, replica_regions=others) as cache:
        assert bound(cache) == pytest.approx(POLICY.deadline + (1 + replicas) * 4)


@pytest.mark.parametrize("replicas", [0, 2])
def test_longer_client_timeouts_give_a_longer_wait_bound(aws: None, replicas: int) -> None:
    """A client with larger timeouts than another gets a larger bound, by exactly the difference per Region."""
    caches = []
    for connect, read in ((1, 3), (10, 30)):
        client = timed_client(REGION, connect, read)
        others = [timed_client(region, connect, read) for region in REPLICA_REGIONS[:replicas]]
        caches.append(SecretCache(client, retry=POLICY, replica_regions=others))
    short, long = (bound(cache) for cache in caches)
    assert long > short
    assert long - short == pytest.approx((1 + replicas) * (40 - 4))
    for cache in caches:
        cache.close()


def test_clients_the_cache_builds_count_with_the_timeouts_it_builds_them_with(aws: None) -> None:
    """No client given, replicas by name: each counts ``CONNECT_TIMEOUT + READ_TIMEOUT``, and nothing is built."""
    with SecretCache(retry=POLICY, replica_regions=list(REPLICA_REGIONS)) as cache:
        assert bound(cache) == pytest.approx(POLICY.deadline + 3 * (CONNECT_TIMEOUT + READ_TIMEOUT))
        assert cache._fetcher._client.peek() is None  # the bound built no client


def test_a_given_primary_and_replicas_by_name_each_count_their_own(aws: None) -> None:
    """A given primary counts its timeouts; a replica named by Region, those of the client built for it."""
    with SecretCache(timed_client(REGION, 20, 40), retry=POLICY, replica_regions=["us-west-2"]) as cache:
        assert bound(cache) == pytest.approx(POLICY.deadline + 60 + CONNECT_TIMEOUT + READ_TIMEOUT)


def test_a_plain_boto3_client_counts_botocores_default_timeouts(aws: None) -> None:
    """A client built without a ``Config`` has botocore's default timeouts, and the bound uses them."""
    client = boto3.client("secretsmanager", region_name=REGION)
    config = client.meta.config
    with SecretCache(client, retry=POLICY) as cache:
        assert bound(cache) == pytest.approx(POLICY.deadline + config.connect_timeout + config.read_timeout)


@pytest.mark.parametrize(
    "client",
    [
        SimpleNamespace(get_secret_value=None),  # a test double: no meta at all
        SimpleNamespace(meta=SimpleNamespace(config=SimpleNamespace(connect_timeout=None, read_timeout="5"))),
        SimpleNamespace(meta=SimpleNamespace(config=SimpleNamespace(connect_timeout=True, read_timeout=-1))),
    ],
    ids=["no-meta", "not-numbers", "bool-and-negative"],
)
def test_a_client_whose_config_does_not_say_counts_the_built_clients_timeouts(client: Any) -> None:
    """Without usable timeouts in ``client.meta.config``, one call counts as the client the cache builds."""
    assert call_seconds(client) == CONNECT_TIMEOUT + READ_TIMEOUT
    assert call_seconds(None) == CONNECT_TIMEOUT + READ_TIMEOUT
