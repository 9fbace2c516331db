"""A secret value never reaches secretcache's log lines, reprs, error messages or stats."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from secretcache import RetryPolicy, SecretCache, SecretCacheError, SecretChange, SecretValue
from tests.conftest import FAST_RETRY, Calls, FakeClock, wait_until
from tests.leaks import assert_value_absent, record_leaks
from tests.test_cache import make_cache, rotate

MARKER = "Zq8-SECRET-MARKER-7Kp"  # recognisable, and unlike anything else in the output


def assert_no_record_leaks(records: list[logging.LogRecord], value: str = MARKER) -> None:
    """No record shows ``value``: message, extra fields, args, exception chain, traceback text, formatters."""
    assert record_leaks(records, value) == []


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def answer_with(client: Any, status: int, body: str) -> Callable[[], None]:
    """Have ``client``'s GetSecretValue calls answered on the wire with ``status`` and ``body``.

    Answered before moto's own hook, so botocore's parser reads the body as it would a proxy's.
    Returns a remover.
    """

    def send(request: Any, **_: Any) -> AWSResponse:
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Body(body.encode()))  # type: ignore[arg-type]

    event = "before-send.secretsmanager.GetSecretValue"
    client.meta.events.register_first(event, send)
    return lambda: client.meta.events.unregister(event, send)


def success_body(secret_string: str | None = None, secret_binary: str | None = None) -> str:
    """A GetSecretValue answer of secret ``db``, as the service writes it."""
    body: dict[str, Any] = {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf", "Name": "db"}
    body.update(VersionId="v-wire", VersionStages=["AWSCURRENT"], CreatedDate=1700000000.0)
    if secret_string is not None:
        body["SecretString"] = secret_string
    if secret_binary is not None:
        body["SecretBinary"] = secret_binary
    return json.dumps(body)


def cut_in_the_value(body: str) -> str:
    """``body`` cut just after the marker: the value's closing quote and the rest are lost."""
    return body[: body.index(MARKER) + len(MARKER)]


def test_value_never_appears_in_logs_reprs_errors_or_stats(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Hits, misses, every error kind, stale serving, listeners and stats never show the value."""
    admin.create_secret(Name="db", SecretString=json.dumps({"password": MARKER}))
    admin.create_secret(Name="plain", SecretString=f"not json {MARKER}")
    admin.create_secret(Name="bin", SecretBinary=MARKER.encode())
    cache = make_cache(client, clock, retry=RetryPolicy(attempts=2, initial_delay=0, max_delay=0, failure_backoff=0))
    texts: list[str] = []
    errors: list[BaseException] = []
    changes: list[SecretChange] = []
    values: list[SecretValue] = []
    cache.on_change(changes.append)

    def broken_listener(change: SecretChange) -> None:
        raise RuntimeError(f"listener failed on {change.name}")

    cache.on_change(broken_listener)

    def attempt(read: Any, *args: Any, **kwargs: Any) -> None:
        try:
            result = read(*args, **kwargs)
            if isinstance(result, SecretValue):  # plain strings are the value, on purpose
                texts.append(repr(result))
                texts.append(str(result))
                values.append(result)
        except SecretCacheError as error:
            errors.append(error)

    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        for _ in range(3):
            attempt(cache.get_secret, "db")
            attempt(cache.get_secret_string, "db")
        attempt(cache.get_secret_json, "plain")
        attempt(cache.get_secret_json, "db", "missing-key")
        attempt(cache.get_secret_string, "bin")
        attempt(cache.get_secret_json, "bin")
        attempt(cache.get_secret, "bin")
        # stale serving through an outage, then exhaustion
        remove = calls.fail_with("ThrottlingException")
        clock.advance(61)
        attempt(cache.get_secret, "db")
        clock.advance(3601)
        attempt(cache.get_secret_string, "db")
        remove()
        # a proxy answering 502 with a success answer cut short (botocore makes it the message):
        # stale serving, then exhaustion
        cache.invalidate()
        attempt(cache.get_secret_string, "db")
        cut = cut_in_the_value(success_body(json.dumps({"password": MARKER})))
        remove = answer_with(client, 502, cut)
        clock.advance(61)
        attempt(cache.get_secret, "db")
        clock.advance(3601)
        attempt(cache.get_secret_string, "db")
        remove()
        # botocore's parser failing on a 200: a cut answer, a SecretBinary that is not base64
        for broken in (cut, success_body(secret_binary=f"{MARKER}!!")):
            remove = answer_with(client, 200, broken)
            cache.invalidate()
            attempt(cache.get_secret_string, "db")
            remove()
        # every typed error kind
        kinds = ["ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure", "InvalidRequestException"]
        for code in kinds:
            remove = calls.fail_with(code)
            cache.invalidate()
            attempt(cache.get_secret_string, "db")
            remove()
        # a rotation reported to a listener
        cache.invalidate()
        attempt(cache.get_secret_string, "db")
        rotate(admin, "db", json.dumps({"password": MARKER + "-2"}))
        clock.advance(61)
        attempt(cache.get_secret_string, "db")

        # prefetch with a per-secret error, and refresh-ahead failing in the background
        ahead = SecretCache(client, ttl=10, refresh_ahead=0.5, retry=FAST_RETRY, clock=clock)
        failures = ahead.prefetch(["db", "plain", "missing"])
        errors.extend(failures.values())
        texts.append(repr(ahead))
        errors_before = ahead.stats().errors  # the prefetch's per-secret errors already count
        remove = calls.fail_with("ThrottlingException")
        clock.advance(6)
        ahead.get_secret_string("db")
        wait_until(lambda: ahead.stats().errors >= errors_before + 1)  # the background refresh has failed
        remove()

    assert len(errors) >= 9
    assert len(values) >= 4
    assert changes
    records = [record for record in caplog.records if record.name.startswith("secretcache")]
    assert any(record.exc_info for record in records)  # the failing listener's traceback
    assert any("502" in record.getMessage() for record in records)
    assert_no_record_leaks(records)
    texts += [record.getMessage() for record in records]
    texts += [repr(cache), str(cache.stats()), repr(cache.stats().api_calls)]
    texts += [repr(change) for change in changes]
    for error in errors:
        assert_value_absent(error, MARKER)
    leaks = [text for text in texts if MARKER in text]
    assert leaks == []
    assert any("stale" in text or "cached value" in text for text in texts)  # the logs were captured


def test_botocore_debug_logs_do_not_leak_values(
    backend: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, botocore's request and response bodies show no secret value."""
    from secretcache import redaction

    client = backend()
    with caplog.at_level(logging.DEBUG):
        client.create_secret(Name="db", SecretString=json.dumps({"password": MARKER}))
        cache = SecretCache(client, clock=clock)  # installs the filter
        assert redaction.installed()
        assert json.loads(cache.get_secret_string("db"))["password"] == MARKER
        client.put_secret_value(SecretId="db", SecretString=f'{MARKER}\\" tricky "quote')
        cache.refresh("db")
        cache.prefetch(["db"])
    assert any(record.name == "botocore.parsers" for record in caplog.records)  # bodies were logged...
    assert_no_record_leaks(caplog.records)  # ...without the value


@pytest.mark.parametrize("status", [200, 502])
def test_botocore_debug_logs_of_an_answer_cut_in_the_value_do_not_leak_it(
    client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """An answer cut inside the value (no closing quote) is masked in botocore's DEBUG lines, to its end."""
    from secretcache import redaction

    cache = SecretCache(client, retry=FAST_RETRY, clock=clock)
    assert redaction.installed()
    cut = cut_in_the_value(success_body(json.dumps({"password": MARKER})))
    remove = answer_with(client, status, cut)
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretCacheError):
        cache.get_secret_string("db")
    remove()
    bodies = [record for record in caplog.records if "Response body" in record.getMessage()]
    assert bodies  # the cut body was logged...
    assert all(redaction.REDACTED in record.getMessage() for record in bodies)
    assert_no_record_leaks(caplog.records)  # ...without the value
    assert_no_record_leaks(caplog.records, MARKER[:6])  # nor its first characters


def test_redaction_opt_out(aws: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """After uninstall() botocore logs bodies as it always does; install(force=True) restores it."""
    import boto3

    from secretcache import redaction

    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(Name="db", SecretString=MARKER)
    redaction.uninstall()
    try:
        SecretCache(client)  # does not reinstall after an explicit uninstall
        assert not redaction.installed()
        with caplog.at_level(logging.DEBUG):
            client.get_secret_value(SecretId="db")
        assert any(MARKER in record.getMessage() for record in caplog.records)
    finally:
        assert redaction.install(force=True)
    assert redaction.installed()


def test_integrations_never_show_the_value(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """DB credentials and factories, Lambda injection, events, the async cache and the CLI keep the value out."""
    import asyncio

    from secretcache import AsyncSecretCache
    from secretcache.__main__ import main
    from secretcache.aws_lambda import inject_secrets, secret
    from secretcache.db import connection_factory, credentials
    from secretcache.events import invalidate_from_event

    admin.create_secret(Name="db", SecretString=json.dumps({"username": "app", "password": MARKER, "port": 1}))
    cache = SecretCache(client, clock=clock)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        creds = credentials(cache, "db")
        texts += [repr(creds), str(creds)]

        def refuse(**kwargs: Any) -> None:
            raise ConnectionRefusedError("connection refused")

        factory = connection_factory(cache, "db", refuse, mapping="pymysql")
        texts.append(repr(factory))
        with pytest.raises(ConnectionRefusedError) as refused:
            factory()
        texts.append(str(refused.value))

        @inject_secrets(cache, password=secret("db", key="password"), missing="nope")
        def handler(event: Any, context: Any, *, password: str, missing: str) -> None: ...

        with pytest.raises(SecretCacheError) as lambda_error:
            handler({}, None)
        texts += [str(lambda_error.value), repr(lambda_error.value)]
        texts += [repr(invalidate_from_event(cache, {"detail": {"secretId": "db"}}))]
        async_cache = AsyncSecretCache(cache=cache)
        texts.append(repr(async_cache))
        assert asyncio.run(async_cache.get_secret_json("db", "password")) == MARKER
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        assert main(["get", "db", "--key", "nope"]) == 1  # the error path prints no value
    captured = capsys.readouterr()
    texts += [captured.err, repr(cache.stats())]
    assert_no_record_leaks(caplog.records)
    assert [text for text in texts if MARKER in text] == []


class _Pool:
    """An application object whose ``repr`` shows the password it was last given (a dataclass's would)."""

    def __init__(self) -> None:
        self.password = ""

    def __repr__(self) -> str:
        return f"_Pool(password={self.password!r})"

    def reconnect(self, change: SecretChange) -> None:
        self.password = MARKER  # as a listener re-reading the secret would
        raise RuntimeError("reconnect failed")


def test_a_failing_listener_is_logged_by_its_name_not_its_repr(
    client: Any, admin: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is named by its qualified name: a bound method's ``repr`` showed its
    object's, value included."""
    admin.create_secret(Name="db", SecretString="v1")
    cache = make_cache(client, clock)
    pool = _Pool()
    cache.on_change(pool.reconnect)
    cache.get_secret_string("db")
    rotate(admin, "db", "v2")
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        cache.refresh("db")
    assert [record.getMessage() for record in caplog.records if record.exc_info] == [
        "on_change listener _Pool.reconnect failed for secret 'db'"
    ]
    assert record_leaks(caplog.records, MARKER) == []
