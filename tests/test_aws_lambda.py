"""Lambda decorators: one batch call on cold start, none warm, typed errors, Powertools stacking."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from secretcache import InvalidSecretRequestError, SecretCache, SecretNotFoundError
from secretcache.aws_lambda import default_cache, handle_rotation_event, inject_secrets, reset_default_cache, secret
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock, wait_until
from tests.threads import start


@pytest.fixture(autouse=True)
def _fresh_default_cache() -> Iterator[None]:
    reset_default_cache()
    yield
    reset_default_cache()


def lambda_context() -> Any:
    """A stand-in for the Lambda context object, with the attributes Powertools reads."""
    return SimpleNamespace(
        function_name="orders-handler",
        function_version="$LATEST",
        memory_limit_in_mb=128,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:orders-handler",
        aws_request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        log_group_name="/aws/lambda/orders-handler",
        log_stream_name="2026/11/23/[$LATEST]abc",
        get_remaining_time_in_millis=lambda: 30_000,
    )


@pytest.fixture
def three_secrets(admin: Any) -> None:
    admin.create_secret(Name="prod/api-key", SecretString="key-123")
    admin.create_secret(Name="prod/db", SecretString=json.dumps({"username": "app", "password": "pw"}))
    admin.create_secret(Name="prod/cert", SecretBinary=b"\x00cert")


def test_cold_start_is_one_batch_call_and_warm_invocations_are_free(
    client: Any, calls: Calls, clock: FakeClock, three_secrets: None
) -> None:
    """3 secrets on the first invocation: 1 BatchGetSecretValue; 100 warm invocations: 0 calls."""
    cache = SecretCache(client, ttl=300, ttl_jitter=0, refresh_ahead=None, clock=clock)

    @inject_secrets(
        cache,
        api_key="prod/api-key",
        username=secret("prod/db", key="username"),
        db=secret("prod/db", json=True),
        cert=secret("prod/cert", binary=True),
    )
    def handler(
        event: dict[str, Any], context: Any, *, api_key: str, username: str, db: dict[str, Any], cert: bytes
    ) -> str:
        return f"{api_key}|{username}|{db['password']}|{cert!r}"

    expected = "key-123|app|pw|b'\\x00cert'"
    assert handler({}, lambda_context()) == expected
    assert calls.counts == {"BatchGetSecretValue": 1}
    for _ in range(100):
        assert handler({}, lambda_context()) == expected
    assert calls.total == 1
    clock.advance(301)
    assert handler({}, lambda_context()) == expected
    assert calls.counts == {"BatchGetSecretValue": 2}  # refreshed after the TTL, still batched
    assert handler.get_cache() is cache  # type: ignore[attr-defined]


def test_with_refresh_ahead_a_warm_invocation_past_its_share_refreshes_each_secret_behind(
    client: Any, calls: Calls, clock: FakeClock, three_secrets: None
) -> None:
    """The default ``refresh_ahead`` (0.8): an invocation past 80% of the TTL returns the cached
    values and refreshes each secret read with one background GetSecretValue (not batched)."""
    cache = SecretCache(client, ttl=300, ttl_jitter=0, clock=clock)

    @inject_secrets(cache, api_key="prod/api-key", username=secret("prod/db", key="username"))
    def handler(event: dict[str, Any], context: Any, *, api_key: str, username: str) -> str:
        return f"{api_key}|{username}"

    assert handler({}, lambda_context()) == "key-123|app"
    clock.advance(239)
    assert handler({}, lambda_context()) == "key-123|app"
    assert calls.counts == {"BatchGetSecretValue": 1}  # within 80% of the TTL: free
    clock.advance(2)
    assert handler({}, lambda_context()) == "key-123|app"  # served at once from the cache
    wait_until(lambda: cache.stats().refreshes == 2)
    assert calls.counts == {"BatchGetSecretValue": 1, "GetSecretValue": 2}
    assert cache.stats().background_refreshes == 2
    cache.close()


def test_default_cache_is_built_once_from_the_environment(
    aws: None, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a cache the handler uses one process-wide SecretCache.from_env()."""
    admin.create_secret(Name="prod/api-key", SecretString="key-123")
    monkeypatch.setenv("SECRETCACHE_TTL", "42")

    @inject_secrets(api_key="prod/api-key")
    def handler(event: Any, context: Any, api_key: str = "") -> str:
        return api_key

    assert handler({}, lambda_context()) == "key-123"
    assert handler.get_cache() is default_cache()  # type: ignore[attr-defined]
    assert "ttl=42.0" in repr(default_cache())
    assert default_cache().stats().api_calls == {"BatchGetSecretValue": 1}


def test_wraps_keeps_name_doc_signature_and_explicit_arguments(client: Any, three_secrets: None) -> None:
    """The wrapper looks like the handler, and a keyword passed explicitly is not overwritten."""

    @inject_secrets(SecretCache(client), api_key="prod/api-key")
    def handler(event: Any, context: Any, *, api_key: str) -> str:
        """Handle an order."""
        return api_key

    assert handler.__name__ == "handler"
    assert handler.__doc__ == "Handle an order."
    assert list(inspect.signature(handler).parameters) == ["event", "context", "api_key"]
    assert handler({}, None, api_key="from-test") == "from-test"


def test_an_argument_passed_by_position_is_left_alone(client: Any, calls: Calls, three_secrets: None) -> None:
    """A secret parameter the caller fills by position is not injected too (no "multiple values" TypeError)."""

    @inject_secrets(SecretCache(client), api_key="prod/api-key")
    def handler(event: Any, context: Any, api_key: str = "") -> str:
        return api_key

    assert handler({}, None, "from-test") == "from-test"
    assert calls.total == 0
    assert handler({}, None) == "key-123"

    class Orders:
        @inject_secrets(SecretCache(client), api_key="prod/api-key")
        def handle(self, event: Any, context: Any, api_key: str = "") -> str:
            return api_key

    assert Orders().handle({}, None, "from-test") == "from-test"
    assert Orders().handle({}, None) == "key-123"


def test_a_coroutine_handler_stays_a_coroutine_function_and_reads_off_the_loop(
    client: Any, calls: Calls, three_secrets: None
) -> None:
    """An async handler decorated is still a coroutine function; its secrets are read when it is awaited,
    on a worker thread, never on the event loop's."""
    fetching: list[int] = []
    calls.add_fault(lambda _operation, _params: fetching.append(threading.get_ident()))

    @inject_secrets(SecretCache(client), api_key="prod/api-key", db=secret("prod/db", key="username"))
    async def handler(event: Any, context: Any, *, api_key: str, db: str) -> tuple[str, str, int]:
        """Handle an order."""
        return api_key, db, threading.get_ident()

    assert inspect.iscoroutinefunction(handler)
    assert handler.__doc__ == "Handle an order."
    pending = handler({}, None)
    assert calls.total == 0  # nothing read until awaited
    api_key, db, loop_thread = asyncio.run(asyncio.wait_for(pending, WATCHDOG))
    assert (api_key, db) == ("key-123", "app")
    assert calls.counts == {"BatchGetSecretValue": 1}
    assert fetching
    assert loop_thread not in fetching
    assert asyncio.run(asyncio.wait_for(handler({}, None, api_key="from-test"), WATCHDOG))[:2] == ("from-test", "app")
    assert calls.total == 1


def test_decorated_below_staticmethod_or_classmethod(client: Any, three_secrets: None) -> None:
    """Under @staticmethod or @classmethod the function is decorated and held the same way,
    so the handler works called through the class and through an instance."""
    cache = SecretCache(client)

    class Handlers:
        @inject_secrets(cache, api_key="prod/api-key")
        @staticmethod
        def static(event: Any, context: Any, *, api_key: str) -> str:
            return api_key

        @inject_secrets(cache, api_key="prod/api-key")
        @classmethod
        def of_class(cls, event: Any, context: Any, *, api_key: str) -> str:
            return f"{cls.__name__}:{api_key}"

    for holder in (Handlers, Handlers()):
        assert holder.static({}, None) == "key-123"
        assert holder.of_class({}, None) == "Handlers:key-123"


def test_stacks_with_powertools_logger_and_tracer(
    client: Any, calls: Calls, three_secrets: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Works under @logger.inject_lambda_context and @tracer.capture_lambda_handler."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from aws_lambda_powertools import Logger, Tracer

    logger = Logger(service="orders")
    tracer = Tracer(service="orders")

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @inject_secrets(SecretCache(client), api_key="prod/api-key", db=secret("prod/db", json=True))
    def handler(event: Any, context: Any, *, api_key: str, db: dict[str, Any]) -> dict[str, Any]:
        logger.info("handling", extra={"user": db["username"]})
        return {"key_length": len(api_key)}

    for _ in range(3):
        assert handler({"order": 1}, lambda_context()) == {"key_length": 7}
    assert calls.total == 1
    out = capsys.readouterr().out
    assert '"function_name":"orders-handler"' in out.replace(" ", "")
    assert "key-123" not in out


def test_bad_declarations_fail_at_decoration() -> None:
    """Unknown options, missing handler parameters and key+binary are refused up front."""
    with pytest.raises(TypeError, match="no parameter 'password'"):

        @inject_secrets(SecretCache(), password="prod/db")
        def handler(event: Any, context: Any) -> None: ...

    with pytest.raises(ValueError, match="binary=True cannot be combined"):
        secret("prod/db", key="password", binary=True)
    with pytest.raises(TypeError):
        secret("prod/db", keys="password")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="needs at least one"):
        inject_secrets(SecretCache())
    with pytest.raises(TypeError, match="must be a secret id or secret"):
        inject_secrets(SecretCache(), db=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache must be a SecretCache"):
        inject_secrets("cache", db="x")  # type: ignore[arg-type]

    @inject_secrets(SecretCache(), password="prod/db")
    def accepts_kwargs(event: Any, context: Any, **kwargs: Any) -> None: ...


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"version_stage": 5}, TypeError, "version_stage must be a str"),
        ({"version_stage": b"AWSPENDING"}, TypeError, "version_stage must be a str"),
        ({"version_id": 5}, TypeError, "version_id must be a str"),
        ({"version_stage": ""}, InvalidSecretRequestError, "version_stage"),
        ({"version_stage": "S" * 257}, InvalidSecretRequestError, "version_stage"),
        ({"version_id": "too-short"}, InvalidSecretRequestError, "version_id"),
        ({"version_id": "v" * 65}, InvalidSecretRequestError, "version_id"),
    ],
)
def test_bad_version_options_fail_at_declaration(options: dict[str, Any], error: type[Exception], words: str) -> None:
    """secret() checks version_stage and version_id as reads do, before any handler runs."""
    with pytest.raises(error, match=words):
        secret("prod/db", **options)


def test_unreadable_secret_fails_the_invocation_typed(client: Any, admin: Any, three_secrets: None) -> None:
    """A missing secret raises the typed error naming the secret, never another secret's value."""

    @inject_secrets(SecretCache(client), api_key="prod/api-key", missing="prod/missing")
    def handler(event: Any, context: Any, *, api_key: str, missing: str) -> None: ...

    with pytest.raises(SecretNotFoundError, match="prod/missing") as info:
        handler({}, None)
    assert "key-123" not in str(info.value)


def test_non_current_specs_are_read_individually(client: Any, admin: Any, calls: Calls) -> None:
    """AWSPENDING or version-id specs are read with GetSecretValue beside the batch."""
    admin.create_secret(Name="prod/db", SecretString="pw-1")
    admin.put_secret_value(SecretId="prod/db", SecretString="pw-2", VersionStages=["AWSPENDING"])

    @inject_secrets(SecretCache(client), current="prod/db", pending=secret("prod/db", version_stage="AWSPENDING"))
    def handler(event: Any, context: Any, *, current: str, pending: str) -> tuple[str, str]:
        return current, pending

    assert handler({}, None) == ("pw-1", "pw-2")
    assert calls.counts == {"BatchGetSecretValue": 1, "GetSecretValue": 1}


def test_rotation_event_handler_invalidates(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A CloudTrail PutSecretValue event drops the secret, so the next read is the new value."""
    arn = admin.create_secret(Name="prod/db", SecretString="pw-1")["ARN"]
    cache = SecretCache(client, clock=clock)
    assert cache.get_secret_string("prod/db") == "pw-1"
    admin.put_secret_value(SecretId="prod/db", SecretString="pw-2")
    event = {
        "version": "0",
        "source": "aws.secretsmanager",
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue",
            "requestParameters": {"secretId": arn},
        },
    }
    assert handle_rotation_event(event, cache) == [arn]
    assert cache.get_secret_string("prod/db") == "pw-2"
    assert handle_rotation_event({"unexpected": True}, cache) == []
    assert handle_rotation_event("not json", cache) == []  # type: ignore[arg-type]


def documented_rule() -> str:
    """The EventBridge event pattern docs/lambda.md gives for a function calling handle_rotation_event."""
    text = (Path(__file__).parent.parent / "docs" / "lambda.md").read_text(encoding="utf-8")
    found = re.search(r"## Rotation events\n.*?```json\n(.*?)```", text, re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_documented_rule_delivers_every_change_of_a_value(
    client: Any, admin: Any, aws: None, clock: FakeClock
) -> None:
    """The rule docs/lambda.md gives reaches the function for a value changed by UpdateSecret, and for the
    native Secret Label Updated event (no trail needed), not only for PutSecretValue and rotations;
    reads (GetSecretValue) do not invoke it."""
    sqs = boto3.client("sqs", region_name=REGION)  # stands in for the function: the rule's target
    url = sqs.create_queue(QueueName="rotation-function")["QueueUrl"]
    target = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="secret-changes", EventPattern=documented_rule())
    events.put_targets(Rule="secret-changes", Targets=[{"Id": "function", "Arn": target}])
    arn = admin.create_secret(Name="prod/db", SecretString="pw-1")["ARN"]
    cache = SecretCache(client, ttl=3600, clock=clock)
    update = {"eventName": "UpdateSecret", "requestParameters": {"secretId": "prod/db"},
              "responseElements": {"arn": arn, "name": "prod/db"}}  # fmt: skip
    label = {"name": "prod/db", "labelUpdated": "AWSCURRENT", "versionId": "v"}
    for value, detail_type, detail, resources in [
        ("pw-2", "AWS API Call via CloudTrail", update, []),
        ("pw-3", "Secret Label Updated", label, [arn]),
    ]:
        assert cache.get_secret_string("prod/db") != value
        admin.update_secret(SecretId="prod/db", SecretString=value)
        read = {"eventName": "GetSecretValue", "requestParameters": {"secretId": "prod/db"}}
        events.put_events(Entries=[
            {"Source": "aws.secretsmanager", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(read)},
            {"Source": "aws.secretsmanager", "DetailType": detail_type, "Detail": json.dumps(detail),
             "Resources": resources},
        ])  # fmt: skip
        delivered = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert len(delivered) == 1
        assert handle_rotation_event(json.loads(delivered[0]["Body"]), cache)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=delivered[0]["ReceiptHandle"])
        assert cache.get_secret_string("prod/db") == value


def test_a_log_handler_reading_the_default_cache_while_it_is_built_does_not_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler on botocore's logger that calls default_cache() while it is being built gets the one cache."""
    monkeypatch.setenv("SECRETCACHE_REPLICA_REGIONS", "us-west-2")  # building looks up the Region: botocore logs
    seen: list[SecretCache] = []

    class Reading(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not reading:
                reading.append(True)
                seen.append(default_cache())

    reading: list[bool] = []
    botocore_logger = logging.getLogger("botocore")
    handler, level = Reading(logging.DEBUG), botocore_logger.level
    botocore_logger.addHandler(handler)
    botocore_logger.setLevel(logging.DEBUG)
    try:
        cache = start(default_cache, "build-default").result(timeout=WATCHDOG)  # a daemon thread: a hang fails
    finally:
        botocore_logger.removeHandler(handler)
        botocore_logger.setLevel(level)
    assert seen == [cache]
    assert default_cache() is cache


def test_concurrent_first_calls_of_default_cache_share_one_cache() -> None:
    """Eight threads calling default_cache() at once on a cold process get one and the same cache."""
    barrier = threading.Barrier(8)

    def first() -> SecretCache:
        barrier.wait(WATCHDOG)
        return default_cache()

    with ThreadPoolExecutor(max_workers=8) as pool:
        caches = [future.result(timeout=WATCHDOG) for future in [pool.submit(first) for _ in range(8)]]
    assert len({id(cache) for cache in caches}) == 1
