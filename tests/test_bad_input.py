"""Bad input across the public API: a clear typed error each time, and the cache stays usable."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from secretcache import (
    AsyncSecretCache,
    InvalidSecretRequestError,
    RetryPolicy,
    SecretAccessDeniedError,
    SecretCache,
    SecretFormatError,
    SecretNotFoundError,
    SecretValue,
)
from secretcache.aws_lambda import inject_secrets, secret
from secretcache.db import connection_factory, credentials
from secretcache.events import SqsInvalidationListener, invalidate_from_event
from tests.conftest import Calls, FakeClock
from tests.test_cache import make_cache

Case = tuple[str, Callable[[SecretCache], Any], type[BaseException], str]

CASES: list[Case] = [
    ("int id", lambda c: c.get_secret_string(7), TypeError, "secret_id must be a str"),
    ("bytes id", lambda c: c.get_secret(b"db"), TypeError, "secret_id must be a str"),
    ("empty id", lambda c: c.get_secret_binary(""), InvalidSecretRequestError, "non-empty"),
    ("huge id", lambda c: c.get_secret_json("x" * 5000), InvalidSecretRequestError, "at most 2048"),
    ("control characters", lambda c: c.get_secret_string("db\x00\n"), InvalidSecretRequestError, "position 2"),
    ("unknown stage", lambda c: c.get_secret_string("db", version_stage="NOPE"), SecretNotFoundError, "'db'"),
    ("stage type", lambda c: c.get_secret_string("db", version_stage=["AWSCURRENT"]), TypeError, "version_stage"),
    ("short version id", lambda c: c.get_secret("db", version_id="v1"), InvalidSecretRequestError, "32 to 64"),
    ("unknown version id", lambda c: c.get_secret("db", version_id="0" * 36), SecretNotFoundError, "'db'"),
    ("negative ttl", lambda c: c.get_secret_string("db", ttl=-1), ValueError, "ttl must be"),
    ("NaN ttl", lambda c: c.get_secret_string("db", ttl=math.nan), ValueError, "ttl must be"),
    ("force_refresh type", lambda c: c.get_secret("db", force_refresh=1), TypeError, "force_refresh"),
    ("json of plain text", lambda c: c.get_secret_json("plain"), SecretFormatError, "not valid JSON"),
    ("json key of a list", lambda c: c.get_secret_json("list", "k"), SecretFormatError, "not an object"),
    ("binary as string", lambda c: c.get_secret_string("bin"), SecretFormatError, "binary"),
    ("string as binary", lambda c: c.get_secret_binary("db"), SecretFormatError, "string"),
    ("prefetch a str", lambda c: c.prefetch("db"), TypeError, "single string"),
    ("prefetch bad id", lambda c: c.prefetch([None]), TypeError, "secret_id"),
    ("invalidate int", lambda c: c.invalidate(5), TypeError, "secret_id"),
    ("listener not callable", lambda c: c.on_change(None), TypeError, "callable"),
    ("credentials of text", lambda c: credentials(c, "plain"), SecretFormatError, "not JSON"),
    ("factory without driver", lambda c: connection_factory(c, "db", print), ValueError, "pass mapping"),
    ("secret spec conflict", lambda c: secret("db", json=True, binary=True), ValueError, "binary=True"),
    ("inject nothing", lambda c: inject_secrets(c), TypeError, "at least one"),
    ("listener wait", lambda c: SqsInvalidationListener(c, "q", wait_time_seconds=-1), ValueError, "0 to 20"),
    ("retry NaN", lambda c: RetryPolicy(deadline=math.nan), ValueError, "deadline"),
    ("retry bool", lambda c: RetryPolicy(attempts=True), TypeError, "attempts"),
    ("cache NaN", lambda c: SecretCache(max_stale=math.nan), ValueError, "max_stale"),
    ("async both", lambda c: AsyncSecretCache(c.client, cache=c), TypeError, "cannot be combined with client"),
]


@pytest.mark.parametrize(("name", "call", "error", "message"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_gets_a_clear_typed_error(
    name: str, call: Callable[[SecretCache], Any], error: type[BaseException], message: str,
    client: Any, admin: Any, clock: FakeClock,
) -> None:  # fmt: skip
    """Each bad call raises the documented error with a useful message; the cache keeps working."""
    admin.create_secret(Name="db", SecretString="pw")
    admin.create_secret(Name="plain", SecretString="plain text")
    admin.create_secret(Name="list", SecretString="[1, 2]")
    admin.create_secret(Name="bin", SecretBinary=b"\x01")
    cache = make_cache(client, clock)
    with pytest.raises(error, match=message):
        call(cache)
    assert cache.get_secret_string("db") == "pw"
    assert invalidate_from_event(cache, {"detail": None}) == []


def test_secret_deleted_while_cached(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """A secret marked for deletion stops being served at its next fetch; a restore brings it back."""
    admin.create_secret(Name="db", SecretString="pw")
    cache = make_cache(client, clock)
    assert cache.get_secret_string("db") == "pw"
    admin.delete_secret(SecretId="db")
    assert cache.get_secret_string("db") == "pw"  # within its TTL: no fetch, no way to know
    clock.advance(61)
    with pytest.raises(InvalidSecretRequestError, match="deleted"):
        cache.get_secret_string("db")
    admin.restore_secret(SecretId="db")
    assert cache.refresh("db").secret_string == "pw"


def test_access_revoked_while_cached(client: Any, admin: Any, calls: Calls, clock: FakeClock) -> None:
    """Access denied on refresh stops serving the cached value at once (no stale fallback)."""
    admin.create_secret(Name="db", SecretString=json.dumps({"password": "pw"}))
    cache = make_cache(client, clock)
    cache.get_secret_json("db")
    calls.fail_with("AccessDeniedException")
    with pytest.raises(SecretAccessDeniedError):
        cache.refresh("db")
    with pytest.raises(SecretAccessDeniedError):
        cache.get_secret_json("db")


def test_memory_stays_bounded_by_max_size(client: Any, admin: Any, clock: FakeClock) -> None:
    """Reading 10 x max_size distinct secrets keeps at most max_size values alive."""
    max_size = 20
    for index in range(10 * max_size):
        admin.create_secret(Name=f"many/{index:03d}", SecretString=f"value-{index}")
    cache = make_cache(client, clock, max_size=max_size)
    for index in range(10 * max_size):
        cache.get_secret_string(f"many/{index:03d}")
    gc.collect()
    alive = [obj for obj in gc.get_objects() if isinstance(obj, SecretValue) and obj.name.startswith("many/")]
    assert cache.stats().size <= max_size
    assert len(alive) <= max_size
    assert cache.stats().evictions == 9 * max_size
