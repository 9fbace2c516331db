"""The fetcher and malformed answers: a response field of the wrong type is a SecretFormatError.

It names the field and the type, never the value; in a batch it fails that secret only.
"""

from __future__ import annotations

from typing import Any

import pytest

from secretcache import (
    SecretCache,
    SecretCacheError,
    SecretFormatError,
)
from tests.conftest import Calls, FakeClock
from tests.fetcher import chain_text
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
