"""The fetcher and malformed answers: a response field of the wrong type is a SecretFormatError.

It names the field and the type, never the value; in a batch it fails that secret only.
"""

from __future__ import annotations

import base64
from typing import Any

import boto3
import pytest
from botocore.config import Config

from secretcache import (
    SecretCache,
    SecretCacheError,
    SecretFormatError,
    SecretUnavailableError,
)
from tests.conftest import FAST_RETRY, REGION, Calls, FakeClock
from tests.faultproxy import FaultProxy
from tests.fetcher import chain_text
from tests.leaks import assert_value_absent
from tests.test_cache import make_cache

MARKER = 918273645  # a "value" no message, argument or attribute may contain


WRONG_TYPES = [  # field, wrong value, the type the message names
    ("SecretString", MARKER, "int"),
    ("SecretString", [f"list-{MARKER}"], "list"),
    ("SecretBinary", [f"list-{MARKER}"], "list"),
    ("VersionStages", f"AWSCURRENT-{MARKER}", "str"),
    ("VersionStages", ["AWSCURRENT", MARKER], "int"),
]


def corrupt(client: Any, operation: str, field: str, wrong: object, name: str = "db") -> None:
    """Make ``client`` return ``wrong`` in ``field`` of secret ``name``, as a misbehaving hook would."""

    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        for item in [parsed, *parsed.get("SecretValues", [])]:
            if item.get("Name") == name:
                item[field] = wrong

    client.meta.events.register(f"after-call.secretsmanager.{operation}", after_call)


def create_db(admin: Any, field: str) -> None:
    if field == "SecretBinary":
        admin.create_secret(Name="db", SecretBinary=b"real-binary-value")
    else:
        admin.create_secret(Name="db", SecretString="real-string-value")


def read(cache: SecretCache, field: str) -> object:
    return cache.get_secret_binary("db") if field == "SecretBinary" else cache.get_secret_string("db")


@pytest.mark.parametrize(("field", "wrong", "named"), WRONG_TYPES)
def test_wrong_value_type_is_a_format_error_without_the_value(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, field: str, wrong: object, named: str
) -> None:
    """A response field of the wrong type raises SecretFormatError naming field and type, never the value, unretried."""
    create_db(admin, field)
    corrupt(client, "GetSecretValue", field, wrong)
    with pytest.raises(SecretFormatError) as info:
        read(make_cache(client, clock), field)
    error = info.value
    assert isinstance(error, SecretCacheError)
    assert error.secret_id == "db"
    assert field in str(error)
    assert f" {named}," in str(error)
    text = chain_text(error)
    assert str(MARKER) not in text
    assert "real-" not in text
    assert error.__cause__ is None
    assert calls["GetSecretValue"] == 1


@pytest.mark.parametrize(("field", "wrong", "named"), WRONG_TYPES)
@pytest.mark.parametrize("by_arn", [False, True])
def test_wrong_value_type_in_a_batch_fails_that_secret_only(
    client: Any, admin: Any, calls: Calls, clock: FakeClock, field: str, wrong: object, named: str, by_arn: bool
) -> None:
    """A batch item of the wrong type fails its own secret with SecretFormatError, never the value; others load."""
    create_db(admin, field)
    admin.create_secret(Name="other", SecretString="fine")
    db = admin.describe_secret(SecretId="db")["ARN"] if by_arn else "db"
    corrupt(client, "BatchGetSecretValue", field, wrong)
    cache = make_cache(client, clock)
    failures = cache.prefetch([db, "other"])
    assert set(failures) == {db}
    error = failures[db]
    assert isinstance(error, SecretFormatError)
    assert error.secret_id == db
    assert field in str(error)
    assert f" {named}," in str(error)
    assert str(MARKER) not in chain_text(error)
    assert "real-" not in chain_text(error)
    with pytest.raises(SecretFormatError, match=field) as info:  # the failure is remembered for readers
        cache.get_secret_binary(db) if field == "SecretBinary" else cache.get_secret_string(db)
    assert str(MARKER) not in chain_text(info.value)
    assert cache.get_secret_string("other") == "fine"
    assert calls["BatchGetSecretValue"] == 1
    assert calls["GetSecretValue"] == 0


SECRET = "s3cr3t-password"
ENCODED = base64.b64encode(SECRET.encode()).decode()  # what a SecretBinary of SECRET is on the wire
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
IDS = f'"Name": "db", "ARN": "{ARN}", "VersionId": "v2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"'
UNPARSABLE = {  # 200 answers botocore's parser raises on, each holding the value or a part of it
    "binary-not-base64": f'{{{IDS}, "SecretBinary": "{ENCODED}x"}}',
    "binary-not-ascii": f'{{{IDS}, "SecretBinary": "{ENCODED}\u00e9"}}',
    "created-not-a-date": f'{{{IDS}, "SecretString": "{SECRET}", "CreatedDate": "garbage"}}',
    "created-out-of-range": f'{{{IDS}, "SecretString": "{SECRET}", "CreatedDate": 1e20}}',
    "body-a-list": f'["{SECRET}"]',
    "body-null": "null",
}


@pytest.fixture
def wire_client(proxy: FaultProxy) -> Any:
    """A client through the fault proxy (botocore's retries off), with secret "db" created through it."""
    config = Config(retries={"total_max_attempts": 1})
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=proxy.url, config=config)
    client.create_secret(Name="db", SecretString=SECRET)
    return client


@pytest.mark.parametrize("body", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
def test_an_answer_botocore_cannot_parse_is_a_retried_outage_holding_nothing_of_it(
    proxy: FaultProxy, wire_client: Any, clock: FakeClock, body: str
) -> None:
    """A 200 that botocore's parser raises on is SecretUnavailableError, retried, with nothing of the answer chained."""
    proxy.then(*[("answer", body)] * FAST_RETRY.attempts)
    before = proxy.seen
    with pytest.raises(SecretUnavailableError, match="could not parse") as info:
        make_cache(wire_client, clock).get_secret_string("db")
    assert proxy.seen - before == FAST_RETRY.attempts
    for part in (SECRET, SECRET.encode(), ENCODED):
        assert_value_absent(info.value, part)


@pytest.mark.parametrize("body", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
def test_an_answer_botocore_cannot_parse_keeps_the_stale_value(
    proxy: FaultProxy, wire_client: Any, clock: FakeClock, body: str
) -> None:
    """Past its TTL, a value is still served while the answers cannot be parsed (a transient failure)."""
    cache = make_cache(wire_client, clock)
    assert cache.get_secret_string("db") == SECRET
    clock.advance(61)
    proxy.then(*[("answer", body)] * FAST_RETRY.attempts)
    assert cache.get_secret_string("db") == SECRET
    assert cache.stats().stale_served == 1


def test_a_batch_item_without_a_value_is_a_broken_answer(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A batch item with neither SecretString nor SecretBinary is retried as a broken answer, never cached."""
    admin.create_secret(Name="db", SecretString="real-string-value")
    corrupt(client, "BatchGetSecretValue", "SecretString", None)
    failures = make_cache(client, clock).prefetch(["db"])
    assert type(failures["db"]) is SecretUnavailableError
    assert "without SecretString or SecretBinary" in str(failures["db"])
    assert calls["BatchGetSecretValue"] == FAST_RETRY.attempts
