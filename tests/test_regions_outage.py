"""Replica Regions during an outage: failover, what does not fail over, and the way back.

Faults are injected on the primary Region's client only (botocore events in-process, the fault
proxy over HTTP). moto keeps the replica in us-west-2 in sync, with the same version ids.
Counts, not timings: the cache runs on a fake clock and the retry policy does not wait.
The other read paths are in ``test_regions_read_paths.py``, arguments and ids in
``test_regions_config.py``, the contract at its edges in ``test_regions_contract.py``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from secretcache import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretChange,
    SecretDecryptionError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock, quiescent, wait_until
from tests.faultproxy import THROTTLE, FaultProxy
from tests.leaks import assert_value_absent
from tests.regions import PRIMARY, REPLICA, THROTTLING, create, logged, regional
from tests.test_cache import rotate

# -- reads during an outage --------------------------------------------------------------------


def test_cold_process_reads_every_secret_from_the_replica_during_a_primary_outage(
    client: Any,
    admin: Any,
    calls: Calls,
    replica: Any,
    replica_calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """50 reads of 5 secrets: no error; only the first fetch pays the primary's retries."""
    names = [f"app/secret-{index}" for index in range(5)]
    arns = {name: create(admin, name, f"value-of-{name}") for name in names}
    calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    with caplog.at_level(logging.INFO, logger="secretcache"):
        values = [cache.get_secret(names[index % 5]) for index in range(50)]
    assert [value.secret_string for value in values] == [f"value-of-{names[index % 5]}" for index in range(50)]
    assert {value.region for value in values} == {REPLICA}
    assert all(value.arn == arns[value.name] and f":{PRIMARY}:" in value.arn for value in values)
    assert calls.counts == {"GetSecretValue": 3}  # the first fetch's retries, then the backoff skips it
    assert replica_calls.counts == {"GetSecretValue": 5}  # one per fetch
    stats = cache.stats()
    assert (stats.failovers, stats.misses, stats.hits) == (5, 5, 45)
    assert (stats.errors, stats.read_errors, stats.stale_served) == (0, 0, 0)
    assert dict(stats.api_calls) == {"GetSecretValue": 8}
    assert dict(stats.api_errors) == {THROTTLING: 3}
    [warning] = logged(caplog, "is failing")
    assert warning.levelno == logging.WARNING
    assert f"in {PRIMARY} is failing ({THROTTLING}); reading replicas in {REPLICA}" in warning.getMessage()
    assert logged(caplog, "answers again") == []


def test_warm_process_switches_to_the_replica_and_back_without_reporting_a_change(
    client: Any,
    admin: Any,
    calls: Calls,
    replica: Any,
    replica_calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replica values live at most replica_ttl; a real rotation is reported once, the switch never."""
    create(admin, "db", "pw-1")
    create(admin, "api", "key-1")
    cache = regional(client, replica, clock, replica_ttl=10)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    assert [cache.get_secret("db").region, cache.get_secret("api").region] == [PRIMARY, PRIMARY]
    assert calls["GetSecretValue"] == 2
    stop = calls.fail_with(THROTTLING)
    clock.advance(61)  # t=61: the TTL is over during the outage; the episode's backoff ends at t=62
    with caplog.at_level(logging.INFO, logger="secretcache"):
        db = cache.get_secret("db")  # at the primary's first failed attempt: stale (or the replica's, if quicker)
        assert db.secret_string == "pw-1"
        stale = db.region == PRIMARY
        quiescent(cache)  # the primary's retries, then the replica, behind the reader
        db = cache.get_secret("db")
        assert (db.secret_string, db.region) == ("pw-1", REPLICA)  # the replica's value, installed
        assert cache.get_secret("api").region == REPLICA  # the primary is skipped during its backoff
        assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (2 + 3, 2)
        assert cache.stats().stale_served == stale
        rotate(admin, "db", "pw-2")  # on the primary; moto syncs the replica
        clock.advance(9.9)
        assert cache.get_secret_string("db") == "pw-1"  # still within replica_ttl
        assert replica_calls["GetSecretValue"] == 2
        clock.advance(0.2)  # t=71.1: past replica_ttl and past the backoff: one probe, then the replica
        db = cache.get_secret("db")  # the probe fails: the old value at once, or the replica's if quicker
        stale += db.secret_string == "pw-1"
        quiescent(cache)
        db = cache.get_secret("db")
        assert (db.secret_string, db.region) == ("pw-2", REPLICA)
        assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (2 + 3 + 1, 3)
        wait_until(lambda: bool(changes))  # the background fetch that found pw-2 tells its listeners last
        assert [change.new_version_id for change in changes] == [db.version_id]
        stop()  # the primary recovers; the episode's next backoff (2 s) ends at t=73.1
        clock.advance(10.1)
        db = cache.get_secret("db")
        api = cache.get_secret("api")
    assert (db.secret_string, db.region, api.region) == ("pw-2", PRIMARY, PRIMARY)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (2 + 3 + 1 + 2, 3)
    assert len(changes) == 1  # the rotation, once; neither Region switch
    stats = cache.stats()
    assert (stats.failovers, stats.changes, stats.stale_served, stats.read_errors) == (3, 1, stale, 0)
    assert len(logged(caplog, "is failing")) == 1
    [recovered] = logged(caplog, "answers again")
    assert recovered.levelno == logging.INFO
    assert f"in {PRIMARY} answers again" in recovered.getMessage()
    clock.advance(11)  # values from the primary live the full TTL again, not replica_ttl
    cache.get_secret("db")
    assert calls["GetSecretValue"] == 8


def test_every_episode_is_logged_once_when_it_starts_and_once_when_it_ends(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Two outages, with probes failing in the first: two warnings and two recoveries."""
    create(admin, "db", "pw-1")
    cache = regional(client, replica, clock, replica_ttl=5)
    with caplog.at_level(logging.INFO, logger="secretcache"):
        for _episode in range(2):
            stop = calls.fail_with(THROTTLING)
            for _ in range(3):  # a failed fetch, then two failed probes
                assert cache.get_secret("db", force_refresh=True).region == REPLICA
                clock.advance(61)
            stop()
            assert cache.get_secret("db").region == PRIMARY
            clock.advance(61)
    assert len(logged(caplog, "is failing")) == 2
    assert [record.levelno for record in logged(caplog, "answers again")] == [logging.INFO] * 2
    assert "(it had failed 3 time(s))" in logged(caplog, "answers again")[0].getMessage()
    assert cache.stats().failovers == 6


def test_fetches_failing_together_start_one_episode_with_the_first_backoff(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """Four cold fetches failing at once are one sighting of the outage: the primary is probed
    again after failure_backoff (1 s), not after backoff_after(4) (8 s)."""
    names = [f"app/secret-{index}" for index in range(5)]
    for name in names:
        create(admin, name, f"value-of-{name}")
    together = threading.Barrier(4)
    first = threading.local()

    def all_in_the_primary(_op: str, _params: dict[str, Any]) -> None:
        if not getattr(first, "done", False):
            first.done = True
            together.wait(WATCHDOG)

    apart = calls.add_fault(all_in_the_primary)
    calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    with ThreadPoolExecutor(4) as pool:
        regions = list(pool.map(lambda name: cache.get_secret(name).region, names[:4]))
    apart()
    assert regions == [REPLICA] * 4
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (4 * 3, 4)
    clock.advance(FAST_RETRY.failure_backoff)
    assert cache.get_secret(names[4]).region == REPLICA
    assert calls["GetSecretValue"] == 4 * 3 + 1  # the probe when the first backoff ends


# -- what does not fail over -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ResourceNotFoundException", SecretNotFoundError),
        ("AccessDeniedException", SecretAccessDeniedError),
        ("DecryptionFailure", SecretDecryptionError),
        ("InvalidRequestException", InvalidSecretRequestError),
    ],
)
def test_definite_errors_of_the_primary_never_fail_over(
    code: str,
    error: type[SecretCacheError],
    client: Any,
    admin: Any,
    calls: Calls,
    replica: Any,
    replica_calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deleted, forbidden or undecryptable in the primary stays so: typed, one call, no replica."""
    create(admin, "db", "pw-1")
    calls.fail_with(code)
    cache = regional(client, replica, clock)
    with caplog.at_level(logging.INFO, logger="secretcache"), pytest.raises(error) as info:
        cache.get_secret_string("db")
    assert isinstance(info.value.__cause__, ClientError)
    assert (calls["GetSecretValue"], replica_calls.total) == (1, 0)
    assert cache.stats().failovers == 0
    assert logged(caplog, "is failing") == []


def test_definite_error_of_a_probe_is_raised_without_asking_the_replica(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """During an episode, a probe answered "not found" by the primary is the verdict."""
    create(admin, "db", "pw-1")
    stop = calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    assert cache.get_secret("db").region == REPLICA
    stop()
    clock.advance(1)
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("missing")
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (3 + 1, 1)


def test_a_replicas_definite_answer_is_no_verdict(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """A secret not replicated is unavailable during the outage (stale value kept), not "not found"."""
    create(admin, "db", "pw-1")
    create(admin, "local", "only-here", replicated=False)
    cache = regional(client, replica, clock)
    assert cache.get_secret_string("local") == "only-here"
    calls.fail_with(THROTTLING)
    clock.advance(61)  # "local" is past its TTL
    with pytest.raises(SecretUnavailableError) as info:  # the primary was tried: its error is reported
        cache.get_secret_string("missing")
    assert THROTTLING in str(info.value.__cause__)
    # The primary is skipped now (the episode's backoff): the replica alone answers "not found".
    with pytest.raises(SecretUnavailableError, match="replica us-west-2 answered ResourceNotFoundException"):
        cache.get_secret_string("missing-too")
    assert cache.get_secret("local").region == PRIMARY  # stale, from before the outage
    assert cache.stats().stale_served == 1
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (1 + 3, 3)


# -- both Regions failing ----------------------------------------------------------------------


def test_a_primary_attempt_frozen_past_the_deadline_leaves_the_replicas_their_share(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """A primary attempt stopped for 1000 s (a Lambda freeze; deadline 30 s) spends none of the
    deadline: the primary is retried, then the replica is asked and answers."""
    create(admin, "db", "pw-1")
    first = [True]

    def freeze_then_fail(operation: str, _params: dict[str, Any]) -> None:
        if first[0]:
            first[0] = False
            clock.advance(1000)  # frozen mid-request; the connection died meanwhile
            raise ReadTimeoutError(endpoint_url="https://secretsmanager")
        raise ClientError({"Error": {"Code": THROTTLING, "Message": "injected"}}, operation)  # type: ignore[arg-type]

    calls.add_fault(freeze_then_fail)
    cache = regional(client, replica, clock)
    value = cache.get_secret("db")
    assert (value.secret_string, value.region) == ("pw-1", REPLICA)
    assert (calls.counts["GetSecretValue"], replica_calls.counts["GetSecretValue"]) == (3, 1)
    cache.close()


def test_cold_read_with_every_region_failing_is_unavailable_without_the_value(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """Primary and replica throttled: a typed error chaining the primary's, and no value in the chain."""
    marker = "marker-value-7f3a"
    create(admin, "db", marker)
    calls.fail_with(THROTTLING)
    replica_calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    with pytest.raises(SecretUnavailableError, match="'db'") as info:
        cache.get_secret_string("db")
    assert isinstance(info.value.__cause__, ClientError)
    assert_value_absent(info.value, marker)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (3, 3)
    assert cache.stats().failovers == 0


def test_while_the_primary_is_skipped_a_failed_fetch_chains_the_replicas_error(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """regions.md: the cause is the primary's error, or the last replica's while the backoff skips the primary."""
    create(admin, "db", "pw-1")
    create(admin, "other", "pw-2")
    calls.fail_with(THROTTLING)
    replica_calls.fail_with("InternalServiceError", status=500)
    cache = regional(client, replica, clock)
    with pytest.raises(SecretUnavailableError) as first:  # opens the outage: the primary was tried
        cache.get_secret_string("db")
    assert isinstance(first.value.__cause__, ClientError)
    assert first.value.__cause__.response["Error"]["Code"] == THROTTLING
    before = calls["GetSecretValue"]
    with pytest.raises(SecretUnavailableError) as skipped:  # within the backoff: replicas only
        cache.get_secret_string("other")
    assert calls["GetSecretValue"] == before
    assert isinstance(skipped.value.__cause__, ClientError)
    assert skipped.value.__cause__.response["Error"]["Code"] == "InternalServiceError"


def test_warm_read_with_every_region_failing_serves_the_stale_value(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """Every Region failing: the primary's last value, marked as such, at the primary's first failed attempt."""
    create(admin, "db", "pw-1")
    cache = regional(client, replica, clock)
    assert cache.get_secret_string("db") == "pw-1"
    calls.fail_with(THROTTLING)
    replica_calls.fail_with(THROTTLING)
    clock.advance(61)
    value = cache.get_secret("db")  # served at the primary's first failed attempt
    assert (value.secret_string, value.region) == ("pw-1", PRIMARY)
    quiescent(cache)  # the retries and the replica's go on behind the reader
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (1 + 3, 3)
    wait_until(lambda: cache.stats().errors >= 1)  # counted once the flight is over, after it leaves
    stats = cache.stats()
    assert (stats.stale_served, stats.failovers, stats.errors) == (1, 0, 1)


# -- over HTTP ---------------------------------------------------------------------------------


def test_over_http_a_cold_read_fails_over_and_the_recovered_primary_is_used_again(
    proxy: FaultProxy, moto_server: str, clock: FakeClock
) -> None:
    """The proxy throttles the primary only; after the backoff one probe finds it well again."""
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5)
    client = boto3.client("secretsmanager", region_name=PRIMARY, endpoint_url=proxy.url, config=config)
    replica = boto3.client("secretsmanager", region_name=REPLICA, endpoint_url=moto_server, config=config)
    create(boto3.client("secretsmanager", region_name=PRIMARY, endpoint_url=moto_server), "db", "pw-1")
    replica_calls = Calls(replica)
    proxy.always(("status", THROTTLE))
    cache = regional(client, replica, clock, replica_ttl=5)
    value = cache.get_secret("db")
    assert (value.secret_string, value.region) == ("pw-1", REPLICA)
    assert (proxy.seen, proxy.forwarded, replica_calls.total) == (3, 0, 1)
    proxy.always(None)
    assert cache.get_secret_string("db") == "pw-1"  # within replica_ttl: a hit
    clock.advance(5)  # past replica_ttl and the primary's backoff (1 s)
    value = cache.get_secret("db")
    assert (value.secret_string, value.region) == ("pw-1", PRIMARY)
    assert (proxy.seen, proxy.forwarded, replica_calls.total) == (4, 1, 1)
    assert cache.stats().failovers == 1
