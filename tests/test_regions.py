"""Replica Regions: failover when the primary Region fails transiently, and the way back.

Faults are injected on the primary Region's client only (botocore events in-process, the fault
proxy over HTTP). moto keeps the replica in us-west-2 in sync, with the same version ids.
Counts, not timings: the cache runs on a fake clock and the retry policy does not wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import tenacity
from botocore.config import Config
from botocore.exceptions import ClientError

from secretcache import (
    AsyncSecretCache,
    InvalidSecretRequestError,
    RetryPolicy,
    SecretAccessDeniedError,
    SecretCache,
    SecretCacheError,
    SecretChange,
    SecretDecryptionError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._fetcher import Fetcher, build_client
from secretcache._regions import Regions, check_replicas, in_region
from secretcache._stats import Counters
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock, _reset, quiescent, wait_until
from tests.faultproxy import THROTTLE, FaultProxy
from tests.leaks import assert_value_absent
from tests.regions import PRIMARY, REPLICA, THROTTLING, create, logged, regional
from tests.test_cache import make_cache, rotate


def sent_ids(client: Any) -> list[Any]:
    """The ``SecretId`` (or ``SecretIdList``) of every call ``client`` makes from now on."""
    seen: list[Any] = []
    Calls(client).add_fault(lambda _op, params: seen.append(params.get("SecretId", params.get("SecretIdList"))))
    return seen


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
    stats = cache.stats()
    assert (stats.stale_served, stats.failovers, stats.errors) == (1, 0, 1)


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


# -- prefetch, refresh-ahead, forced refresh ---------------------------------------------------


def test_prefetch_during_an_outage_is_one_batch_call_to_the_replica(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """The batch fails over as a whole; ARNs in it are rewritten; values match the ids asked."""
    names = [f"app/secret-{index}" for index in range(3)]
    arns = [create(admin, name, f"value-of-{name}") for name in names]
    seen = sent_ids(replica)
    calls.fail_with(THROTTLING)
    cache = regional(client, replica, clock)
    asked = [arns[0], *names[1:]]
    assert cache.prefetch(asked) == {}
    assert calls.counts == {"BatchGetSecretValue": 3}
    assert replica_calls.counts == {"BatchGetSecretValue": 1}
    assert seen == [[in_region(arns[0], REPLICA), *names[1:]]]
    values = [cache.get_secret(secret_id) for secret_id in asked]
    assert [value.secret_string for value in values] == [f"value-of-{name}" for name in names]
    assert [(value.arn, value.region) for value in values] == [(arn, REPLICA) for arn in arns]
    assert (calls.total, replica_calls.total) == (3, 1)  # the reads were hits
    assert cache.stats().failovers == 1  # a batch counts once


def test_prefetch_during_an_outage_keeps_a_secret_the_replica_lacks(
    client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock
) -> None:
    """As for single reads, the replica's "not found" is no verdict: the stale value stays served."""
    create(admin, "db", "pw-1")
    create(admin, "local", "only-here", replicated=False)
    cache = regional(client, replica, clock)
    assert cache.prefetch(["db", "local"]) == {}
    calls.fail_with(THROTTLING)
    clock.advance(61)
    failures = cache.prefetch(["db", "local"])
    assert list(failures) == ["local"]
    assert isinstance(failures["local"], SecretUnavailableError)
    assert cache.get_secret_string("local") == "only-here"  # stale, as a single read would serve it


def test_refresh_ahead_fails_over_in_the_background(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """A background refresh during an outage installs the replica's value; reads never wait."""
    create(admin, "db", "pw-1")
    cache = regional(client, replica, clock, refresh_ahead=0.5)
    assert cache.get_secret("db").region == PRIMARY
    calls.fail_with(THROTTLING)
    rotate(admin, "db", "pw-2")
    clock.advance(31)  # past the refresh point, within the TTL
    assert cache.get_secret_string("db") == "pw-1"  # served at once
    wait_until(lambda: cache.stats().failovers == 1)
    value = cache.get_secret("db")
    assert (value.secret_string, value.region) == ("pw-2", REPLICA)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (1 + 3, 1)
    assert cache.stats().background_refreshes == 1


def test_forced_refresh_fails_over(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """refresh() during an outage returns the replica's current value, not the cached one."""
    create(admin, "db", "pw-1")
    cache = regional(client, replica, clock)
    assert cache.get_secret_string("db") == "pw-1"
    calls.fail_with(THROTTLING)
    rotate(admin, "db", "pw-2")
    value = cache.refresh("db")
    assert (value.secret_string, value.region) == ("pw-2", REPLICA)
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (1 + 3, 1)
    assert cache.stats().failovers == 1


def test_replica_given_by_name_gets_a_client_of_its_region(client: Any, admin: Any, calls: Calls) -> None:
    create(admin, "db", "pw-1")
    calls.fail_with(THROTTLING)
    cache = make_cache(client, FakeClock(), replica_regions=[REPLICA])
    assert cache.get_secret("db").region == REPLICA


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    _reset(moto_server)
    proxy = FaultProxy(moto_server)
    yield proxy
    proxy.close()
    _reset(moto_server)


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


# -- the time budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("episode", "primary", "replica"), [(False, [0.0, 1.0], [1.0, 2.0, 3.0]), (True, [], [0.0, 1.0, 2.0, 3.0])]
)
def test_a_fetch_keeps_within_the_deadline_across_regions(
    episode: bool,
    primary: list[float],
    replica: list[float],
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Primary within half the deadline, replicas within what is left: no attempt starts past it.

    Waits are their largest (1 s each) so the deadline, not the attempts, ends the retries; they
    go through the fake clock (:class:`SecretCache` passes no sleep to its fetcher, so this test
    drives a :class:`Fetcher`).
    """
    monkeypatch.setattr(tenacity.wait, "random", SimpleNamespace(uniform=lambda _low, high: high))
    policy = RetryPolicy(attempts=10, initial_delay=1.0, max_delay=1.0, deadline=4.0)
    replica_client = boto3.client("secretsmanager", region_name=REPLICA)
    create(admin, "db", "pw-1")
    regions = Regions(check_replicas([replica_client], build_client, wait=policy.deadline), policy, clock)
    fetcher = Fetcher(client, policy, Counters(), sleep=clock.sleep, regions=regions, clock=clock)
    if episode:  # the primary failed just now: it is skipped during its backoff
        error = ClientError({"Error": {"Code": THROTTLING}}, "GetSecretValue")
        regions.primary_failed(PRIMARY, error, "GetSecretValue", regions.now())
    started = clock.now
    times: dict[str, list[float]] = {"primary": [], "replica": []}
    for name, target in (("primary", client), ("replica", replica_client)):
        spy = Calls(target)
        spy.add_fault(lambda _op, _params, name=name: times[name].append(clock.now - started))
        spy.fail_with(THROTTLING)
    with pytest.raises(SecretUnavailableError):
        fetcher.get_secret_value("db", None, None)
    assert times == {"primary": primary, "replica": replica}
    assert clock.now - started <= policy.deadline


# -- asyncio and telemetry ---------------------------------------------------------------------


def test_an_async_cache_fails_over_too(
    client: Any, admin: Any, calls: Calls, replica: Any, replica_calls: Calls, clock: FakeClock
) -> None:
    """``AsyncSecretCache(replica_regions=...)`` reads the replica without blocking the event loop."""
    create(admin, "db", "pw-1")
    calls.fail_with(THROTTLING)

    async def main() -> list[Any]:
        async with AsyncSecretCache(
            client, replica_regions=[replica], retry=FAST_RETRY, refresh_ahead=None, clock=clock
        ) as cache:
            values = await asyncio.gather(*(cache.get_secret("db") for _ in range(8)))
            assert cache.stats().failovers == 1
            return list(values)

    values = asyncio.run(main())
    assert {(value.secret_string, value.region) for value in values} == {("pw-1", REPLICA)}
    assert (calls["GetSecretValue"], replica_calls["GetSecretValue"]) == (3, 1)


def test_telemetry_shows_the_failover(client: Any, admin: Any, calls: Calls, replica: Any, clock: FakeClock) -> None:
    """The fetch span and duration name the replica Region; ``secretcache.failovers`` equals stats()."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from secretcache.otel import instrument

    create(admin, "db", "pw-1")
    calls.fail_with(THROTTLING)
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    cache = regional(client, replica, clock)
    instrument(cache, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracers)
    assert cache.get_secret_string("db") == "pw-1"
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["secretcache.replica.region"] == REPLICA
    assert span.attributes["secretcache.attempts"] == 4  # 3 in the primary Region, 1 in the replica's
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert [point.value for point in points["secretcache.failovers"]] == [cache.stats().failovers] == [1]
    [duration] = points["secretcache.fetch.duration"]
    assert (duration.attributes or {})["secretcache.replica.region"] == REPLICA
