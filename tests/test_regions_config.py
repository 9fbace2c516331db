"""Replica Regions as configured: ids sent to a replica, replicas by name, and refused arguments.

Each replica is sent the id in its own Region; arguments are refused before any call.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from secretcache import (
    SecretCache,
    SecretUnavailableError,
)
from secretcache._fetcher import in_region
from tests.conftest import Calls, FakeClock
from tests.regions import PRIMARY, REPLICA, THROTTLING, create, regional, sent_ids
from tests.test_cache import make_cache

# -- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret_id", "expected"),
    [
        ("db", "db"),
        ("prod/db-AbCdEf", "prod/db-AbCdEf"),
        (
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:prod/db-AbCdEf",
        ),
        (
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:prod/db",
        ),
        (
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:db",
            "arn:aws-cn:secretsmanager:us-west-2:123456789012:secret:db",
        ),
        ("arn:aws:kms:us-east-1:123456789012:key/abc", "arn:aws:kms:us-east-1:123456789012:key/abc"),
    ],
)
def test_in_region_rewrites_secret_arns_only(secret_id: str, expected: str) -> None:
    assert in_region(secret_id, REPLICA) == expected


def test_ids_sent_to_the_replica(client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock) -> None:
    """A full or partial ARN goes to the replica in its Region; a name goes as is."""
    arn = create(admin, "db", "pw-1")
    partial = arn[:-7]
    seen = sent_ids(replica)
    calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    value = cache.get_secret(arn)
    assert (value.secret_string, value.arn, value.region) == ("pw-1", arn, REPLICA)
    assert cache.get_secret_string("db") == "pw-1"
    with pytest.raises(SecretUnavailableError):  # moto finds no partial ARN in a replica Region
        cache.get_secret_string(partial)
    assert seen == [in_region(arn, REPLICA), "db", in_region(partial, REPLICA)]
    assert f":{REPLICA}:" in seen[2]


def test_replica_given_by_name_gets_a_client_of_its_region(client: Any, admin: Any, calls: Calls) -> None:
    create(admin, "db", "pw-1")
    calls.fail_with(THROTTLING)
    cache = make_cache(client, FakeClock(), replica_regions=[REPLICA])
    assert cache.get_secret("db").region == REPLICA


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"replica_regions": REPLICA}, TypeError, "sequence"),
        ({"replica_regions": {REPLICA}}, TypeError, "sequence"),
        ({"replica_regions": [1]}, TypeError, "int"),
        ({"replica_regions": [""]}, ValueError, "invalid Region"),
        ({"replica_regions": [" us-west-2"]}, ValueError, "invalid Region"),
        ({"replica_regions": [REPLICA, REPLICA]}, ValueError, "twice"),
        ({"replica_regions": [SimpleNamespace(get_secret_value=print, meta=None)]}, ValueError, "Region"),
        ({"replica_ttl": -1}, ValueError, "replica_ttl"),
        ({"replica_ttl": "60"}, TypeError, "replica_ttl"),
    ],
)
def test_bad_arguments_fail_before_any_call(
    options: dict[str, Any], error: type[Exception], match: str, client: Any, calls: Calls
) -> None:
    with pytest.raises(error, match=match):
        SecretCache(client, **options)
    assert calls.total == 0


def test_duplicate_regions_given_as_a_name_and_a_client_are_refused(replica: Any, client: Any) -> None:
    with pytest.raises(ValueError, match="twice"):
        SecretCache(client, replica_regions=[REPLICA, replica])


def test_the_primary_region_is_no_replica(client: Any) -> None:
    """A replica in the client's own Region would only repeat the primary's failure."""
    with pytest.raises(ValueError, match="names the primary Region 'us-east-1'"):
        SecretCache(client, replica_regions=[REPLICA, PRIMARY])
