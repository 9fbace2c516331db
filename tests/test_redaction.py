"""A secret value never reaches secretcache's log lines, reprs, error messages or stats."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from secretcache import RetryPolicy, SecretCache, SecretCacheError, SecretChange, SecretValue
from tests.conftest import FAST_RETRY, Calls, FakeClock, wait_until
from tests.test_cache import make_cache, rotate

MARKER = "Zq8-SECRET-MARKER-7Kp"  # recognisable, and unlike anything else in the output


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
    texts += [record.getMessage() for record in caplog.records if record.name.startswith("secretcache")]
    texts += [repr(cache), str(cache.stats()), repr(cache.stats().api_calls)]
    texts += [repr(change) for change in changes]
    for error in errors:
        texts += [str(error), repr(error)]
        cause = error.__cause__
        if cause is not None:
            texts.append(str(cause))
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
    messages = [record.getMessage() for record in caplog.records]
    assert any(record.name == "botocore.parsers" for record in caplog.records)  # bodies were logged...
    assert [message for message in messages if MARKER in message] == []  # ...without the value


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
    texts += [record.getMessage() for record in caplog.records]
    assert [text for text in texts if MARKER in text] == []
