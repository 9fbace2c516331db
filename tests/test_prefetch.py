"""Batch prefetch: one BatchGetSecretValue per 20 secrets, per-secret errors, fallback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from secretcache import InvalidSecretRequestError, SecretCache, SecretNotFoundError, SecretUnavailableError
from secretcache._keys import names
from tests.conftest import FAST_RETRY, REGION, WATCHDOG, Calls, FakeClock, wait_until
from tests.test_cache import make_cache

APP_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbC123"


def create(admin: Any, count: int) -> list[str]:
    names = [f"app/secret-{index:03d}" for index in range(count)]
    for name in names:
        admin.create_secret(Name=name, SecretString=f"value-of-{name}")
    return names


def test_prefetch_of_45_secrets_is_3_calls_then_reads_are_free(backend: Any, clock: FakeClock) -> None:
    """45 secrets warm with 3 BatchGetSecretValue calls; reading them all afterwards costs nothing."""
    client = backend()
    names = create(client, 45)
    calls = Calls(client)
    cache = make_cache(client, clock)
    assert cache.prefetch(names) == {}
    assert calls.counts == {"BatchGetSecretValue": 3}
    assert [cache.get_secret_string(name) for name in names] == [f"value-of-{name}" for name in names]
    assert calls.total == 3
    assert cache.stats().api_calls == {"BatchGetSecretValue": 3}


def test_fresh_secrets_cost_nothing_and_expired_ones_are_refetched(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Only secrets without a fresh value are fetched."""
    names = create(admin, 5)
    cache = make_cache(client, clock)
    cache.get_secret_string(names[0])
    assert cache.prefetch(names) == {}
    assert calls.counts == {"GetSecretValue": 1, "BatchGetSecretValue": 1}
    assert cache.prefetch(names) == {}
    assert calls.total == 2
    clock.advance(61)
    assert cache.prefetch(names + names) == {}  # duplicates are fetched once
    assert calls["BatchGetSecretValue"] == 2


def test_per_secret_errors_stay_with_their_secret(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A missing secret in a batch is reported and remembered for that secret only."""
    names = create(admin, 3)
    cache = make_cache(client, clock)
    failures = cache.prefetch([*names, "app/missing"])
    assert list(failures) == ["app/missing"]
    assert isinstance(failures["app/missing"], SecretNotFoundError)
    assert [cache.get_secret_string(name) for name in names] == [f"value-of-{name}" for name in names]
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("app/missing")  # remembered: no call
    assert calls.total == 1


def test_ids_spelled_as_arns_are_matched(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """Full and partial ARNs in the list are matched to the values the batch returns."""
    arn = admin.create_secret(Name="team/db", SecretString="pw")["ARN"]
    cache = make_cache(client, clock)
    assert cache.prefetch([arn, arn[:-7], "team/db"]) == {}
    assert {cache.get_secret_string(spelling) for spelling in (arn, arn[:-7], "team/db")} == {"pw"}
    assert calls.total == 1


def test_a_partial_arn_is_matched_to_its_own_secret_never_to_one_it_looks_like(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """The partial ARN of ``app-config`` ends like a full ARN of ``app`` (``-`` and six characters):
    each id of the batch gets its own secret's value, whichever comes first in the answer."""
    app = admin.create_secret(Name="app", SecretString="APP-VALUE")["ARN"]
    config = admin.create_secret(Name="app-config", SecretString="APP-CONFIG-VALUE")["ARN"]
    for order in (["app", config[:-7]], [config[:-7], "app"], [app, config[:-7], app[:-7]]):
        cache = make_cache(client, clock)
        assert cache.prefetch(order) == {}
        assert cache.get_secret_string(config[:-7]) == "APP-CONFIG-VALUE"
        assert cache.get_secret(config[:-7]).name == "app-config"
        assert cache.get_secret_string("app") == "APP-VALUE"
    assert calls.counts == {"BatchGetSecretValue": 3, "GetSecretValue": 1}  # app by name, after its ARNs


@pytest.mark.parametrize(
    ("secret_id", "named"),
    [
        ("app", True),
        (APP_ARN, True),
        (APP_ARN[:-7], True),
        ("app-config", False),  # another secret's name
        (APP_ARN[:-7] + "-config", False),  # the partial ARN of app-config, ending like a full ARN
        (APP_ARN[:-1], False),
        (APP_ARN[:-8], False),
        (APP_ARN.replace("us-east-1", "eu-west-1"), False),  # another Region: matched where it was sent
    ],
)
def test_names_tells_secrets_apart(secret_id: str, named: bool) -> None:
    """``names`` is exact: the name, the full ARN, or the full ARN without its suffix."""
    assert names(secret_id, "app", APP_ARN) is named


def test_refused_batch_falls_back_to_single_calls(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """Without permission for BatchGetSecretValue, each secret is fetched with GetSecretValue."""
    names = create(admin, 3)

    def deny_batch(operation: str, _params: dict[str, Any]) -> None:
        if operation == "BatchGetSecretValue":
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "BatchGetSecretValue"
            )

    calls.add_fault(deny_batch)
    cache = make_cache(client, clock)
    assert cache.prefetch([*names, "app/missing"]) != {}
    assert calls.counts == {"BatchGetSecretValue": 1, "GetSecretValue": 4}
    assert cache.get_secret_string(names[1]) == f"value-of-{names[1]}"
    assert calls.total == 5


def test_batch_outage_is_reported_per_secret(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A batch that keeps failing transiently reports SecretUnavailableError for each secret."""
    names = create(admin, 2)
    calls.fail_with("ThrottlingException")
    cache = make_cache(client, clock)
    failures = cache.prefetch(names)
    assert set(failures) == set(names)
    assert all(isinstance(error, SecretUnavailableError) for error in failures.values())
    assert {name: error.secret_id for name, error in failures.items()} == {name: name for name in names}
    assert all(repr(other) not in str(failures[name]) for name in names for other in names if other != name)
    assert all(isinstance(error.__cause__, ClientError) for error in failures.values())
    assert calls["BatchGetSecretValue"] == 3  # the retry policy's attempts
    for name in names:  # each secret remembers its own error, under its own id
        with pytest.raises(SecretUnavailableError) as info:
            cache.get_secret_string(name)
        assert info.value.secret_id == name
    assert calls.total == 3


def test_a_refused_batch_is_remembered_for_the_failure_backoff(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """After BatchGetSecretValue is refused, later prefetches go straight to single calls until the backoff ends."""
    names = create(admin, 3)
    cache = make_cache(client, clock, ttl=0.5)
    calls.add_fault(_deny_batch)
    assert cache.prefetch(names) == {}
    assert calls.counts == {"BatchGetSecretValue": 1, "GetSecretValue": 3}
    clock.advance(0.5)  # values expired; the refusal is remembered for failure_backoff (1 s)
    assert cache.prefetch(names) == {}
    assert calls.counts == {"BatchGetSecretValue": 1, "GetSecretValue": 6}
    clock.advance(0.5)  # the backoff is over: the batch is tried once more, refused again
    assert cache.prefetch(names) == {}
    assert calls.counts == {"BatchGetSecretValue": 2, "GetSecretValue": 9}
    clock.advance(1.5)  # a second refusal backs off for 2 s
    assert cache.prefetch(names) == {}
    assert calls.counts == {"BatchGetSecretValue": 2, "GetSecretValue": 12}


def _deny_batch(operation: str, _params: dict[str, Any]) -> None:
    if operation == "BatchGetSecretValue":
        error: Any = {"Error": {"Code": "AccessDeniedException", "Message": "denied"}, "ResponseMetadata": {}}
        raise ClientError(error, operation)


def test_readers_wait_for_the_batch_instead_of_fetching(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A read that arrives while its secret is in a batch waits for that batch."""
    names = create(admin, 4)
    gate = calls.hold()
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=2) as pool:
        batch = pool.submit(cache.prefetch, names)
        wait_until(lambda: calls.total == 1)
        reader = pool.submit(cache.get_secret_string, names[2])
        wait_until(lambda: cache.stats().misses == 1)
        gate.set()
        assert batch.result(timeout=WATCHDOG) == {}
        assert reader.result(timeout=WATCHDOG) == f"value-of-{names[2]}"
    assert calls.counts == {"BatchGetSecretValue": 1}


def test_prefetch_refuses_bad_arguments_before_any_call(client: Any, calls: Calls, clock: FakeClock) -> None:
    """A bare string or an invalid id is refused with no API call."""
    cache = make_cache(client, clock)
    with pytest.raises(TypeError, match="not a single string"):
        cache.prefetch("app/db")
    with pytest.raises(InvalidSecretRequestError):
        cache.prefetch(["ok", ""])
    with pytest.raises(TypeError):
        cache.prefetch([1])  # type: ignore[list-item]
    assert cache.prefetch([]) == {}
    assert calls.total == 0


def test_unexpected_failure_finishes_every_claimed_secret(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A non-botocore failure mid-prefetch reaches the caller and leaves no secret stuck in flight."""
    names = create(admin, 45)
    remove = calls.raise_error(RuntimeError("bug in an event handler"))
    cache = make_cache(client, clock)
    with pytest.raises(RuntimeError, match="bug in"):
        cache.prefetch(names)
    assert calls.total == 1  # the first batch failed; the other two were never sent
    remove()
    assert cache.get_secret_string(names[44]) == f"value-of-{names[44]}"  # not stuck behind a flight
    assert cache.stats().in_flight == 0


def test_a_reader_of_a_refused_batch_is_answered_when_its_secret_is_invalidated_before_its_single_fetch(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """Invalidating a secret of a refused batch before its single fetch starts still answers the reader waiting on it.

    A read that arrives during the batch call waits on that secret's fetch. The refusal puts
    the fetches back in the queue for one-by-one calls; an ``invalidate()`` of a queued one
    used to mark it done without waking that reader, who then waited the whole wait bound.
    """
    names = create(admin, 2)
    first, second = names
    in_batch, in_single = threading.Event(), threading.Event()
    release_batch, release_single = threading.Event(), threading.Event()

    def script(operation: str, params: dict[str, Any]) -> None:
        if operation == "BatchGetSecretValue":
            in_batch.set()
            release_batch.wait(WATCHDOG)
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)
        if params.get("SecretId") == first and not in_single.is_set():
            in_single.set()
            release_single.wait(WATCHDOG)

    calls.add_fault(script)
    cache = make_cache(client, clock)
    with ThreadPoolExecutor(max_workers=2) as pool:
        batch = pool.submit(cache.prefetch, names)
        assert in_batch.wait(WATCHDOG)
        reader = pool.submit(cache.get_secret_string, second)
        wait_until(lambda: cache.stats().misses == 1)  # it waits on the batch's fetch of the second secret
        release_batch.set()
        assert in_single.wait(WATCHDOG)  # the first secret's single fetch is held: the second is still queued
        cache.invalidate(second)
        release_single.set()
        assert reader.result(timeout=WATCHDOG) == f"value-of-{second}"
        assert batch.result(timeout=WATCHDOG) == {}


def _break_batch_answer(change: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        change(parsed)

    return after_call


@pytest.mark.parametrize(
    "change",
    [
        lambda parsed: [parsed.pop("SecretValues", None), parsed.pop("Errors", None)],
        lambda parsed: parsed.update(SecretValues=None),
        lambda parsed: parsed.update(Errors=["x"]),
    ],
    ids=["neither-field", "values-null", "errors-not-objects"],
)
def test_a_broken_batch_answer_is_retried_and_keeps_the_stale_value(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, change: Callable[[dict[str, Any]], None]
) -> None:
    """A batch answer without SecretValues and Errors, or either not a list of objects, is retried; stale value kept."""
    admin.create_secret(Name="db", SecretString="stale-but-good")
    cache = make_cache(client, clock)
    assert cache.get_secret_string("db") == "stale-but-good"
    clock.advance(61)
    client.meta.events.register("after-call.secrets-manager.BatchGetSecretValue", _break_batch_answer(change))
    failures = cache.prefetch(["db"])
    assert list(failures) == ["db"]
    assert type(failures["db"]) is SecretUnavailableError
    assert calls["BatchGetSecretValue"] == FAST_RETRY.attempts
    assert cache.get_secret_string("db") == "stale-but-good"


def _stale_through(proxy: Any, clock: FakeClock) -> tuple[SecretCache, str]:
    """A cache reading through ``proxy`` whose value of "db" ("stale-but-good") is past its TTL, and db's ARN."""
    config = Config(retries={"total_max_attempts": 1})
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=proxy.url, config=config)
    arn: str = client.create_secret(Name="db", SecretString="stale-but-good")["ARN"]
    cache = make_cache(client, clock)
    assert cache.get_secret_string("db") == "stale-but-good"
    clock.advance(61)
    return cache, arn


def test_a_cut_off_batch_body_is_retried_and_keeps_the_stale_value(proxy: Any, clock: FakeClock) -> None:
    """A 200 whose BatchGetSecretValue body is cut off mid-way is SecretUnavailableError, retried, never "not found"."""
    cache, arn = _stale_through(proxy, clock)
    cut = f'{{"SecretValues": [{{"ARN": "{arn}", "Name": "db", "SecretStr'
    proxy.then(*[("answer", cut)] * FAST_RETRY.attempts)
    before = proxy.seen
    failures = cache.prefetch(["db"])
    assert type(failures["db"]) is SecretUnavailableError
    assert proxy.seen - before == FAST_RETRY.attempts
    assert cache.get_secret_string("db") == "stale-but-good"


def test_an_id_in_neither_list_of_a_well_formed_batch_answer_is_not_found(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """An answer holding only Errors (SecretValues is optional) is well formed: an id it does not name was not found."""
    admin.create_secret(Name="db", SecretString="pw")
    client.meta.events.register(
        "after-call.secrets-manager.BatchGetSecretValue",
        _break_batch_answer(lambda parsed: parsed.pop("SecretValues")),
    )
    failures = make_cache(client, clock).prefetch(["db"])
    assert type(failures["db"]) is SecretNotFoundError
    assert calls["BatchGetSecretValue"] == 1


def test_a_batch_item_botocore_cannot_parse_is_retried_and_keeps_the_stale_value(proxy: Any, clock: FakeClock) -> None:
    """A batch item whose SecretBinary is not base64 makes prefetch return SecretUnavailableError, never raise."""
    cache, arn = _stale_through(proxy, clock)
    item = (
        f'{{"ARN": "{arn}", "Name": "db", "VersionId": "v2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "SecretBinary": "abc"}}'
    )
    proxy.then(*[("answer", f'{{"SecretValues": [{item}], "Errors": []}}')] * FAST_RETRY.attempts)
    failures = cache.prefetch(["db"])
    assert type(failures["db"]) is SecretUnavailableError
    assert cache.get_secret_string("db") == "stale-but-good"
