"""The Powertools provider's reads: get and get_multiple return what Powertools returns.

With secretcache's single flight: repeated reads make one call.

Where it makes sense, each test runs Powertools' own ``SecretsProvider`` on the same secrets (with
its own client, counted separately) and compares. The shared set-up is in ``tests/compat_powertools.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters import BaseProvider, SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import (
    GetParameterError,
    GetSecretError,
    TransformParameterError,
)

from secretcache import SecretUnavailableError
from secretcache.compat.powertools import SecretCacheProvider
from tests.compat_powertools import DB
from tests.compat_powertools import cache as cache  # a fixture
from tests.compat_powertools import fresh_globals as fresh_globals  # autouse
from tests.compat_powertools import ours as ours  # a fixture
from tests.compat_powertools import secrets as secrets  # a fixture
from tests.compat_powertools import theirs as theirs  # a fixture
from tests.compat_powertools import theirs_client as theirs_client  # a fixture
from tests.conftest import Calls, FakeClock


def test_get_returns_what_powertools_returns(ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None) -> None:
    """Strings come back as str and binary secrets as the SecretBinary bytes, as with SecretsProvider."""
    for name in ("db", "plain", "blob", "not-utf8"):
        assert ours.get(name) == theirs.get(name)
        assert type(ours.get(name)) is type(theirs.get(name))
    assert ours.get("blob") == b"\x00\x01raw"
    assert isinstance(ours, BaseProvider)


def test_repeated_gets_make_one_call_and_leave_powertools_store_empty(
    ours: SecretCacheProvider, calls: Calls, secrets: None
) -> None:
    """Gets within the TTL are hits of the cache; Powertools' per-provider store is never filled."""
    for _ in range(5):
        assert ours.get("plain") == "text-9d2a"
    assert calls["GetSecretValue"] == 1
    assert ours.store == {}


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("db", "json"),
        ("cfg.json", "json"),
        ("b64", "binary"),
        ("blob64.binary", "binary"),
        ("cfg.json", "auto"),
        ("blob64.binary", "auto"),
        ("plain", "auto"),
        ("blob64.binary", None),
    ],
)
def test_transforms_match_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None, name: str, transform: Any
) -> None:
    """json, binary and auto give what Powertools gives, of the same type."""
    expected = theirs.get(name, transform=transform)
    got = ours.get(name, transform=transform)
    assert got == expected
    assert type(got) is type(expected)


def test_binary_secrets_are_decoded_as_utf8_before_a_transform_like_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, admin: Any
) -> None:
    """Powertools decodes binary values as UTF-8 before any transform, "auto" without a suffix included."""
    admin.create_secret(Name="utf8-blob", SecretBinary=b"caf\xc3\xa9")
    admin.create_secret(Name="json-blob", SecretBinary=b'{"a": [1, 2]}')
    assert ours.get("utf8-blob", transform="auto") == theirs.get("utf8-blob", transform="auto") == "café"
    assert ours.get("json-blob", transform="json") == theirs.get("json-blob", transform="json") == {"a": [1, 2]}


def test_forced_json_read_of_a_binary_secret_makes_one_call_like_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, calls: Calls, theirs_client: Any, admin: Any
) -> None:
    """force_fetch with transform="json" on a binary secret fetches once, as Powertools does."""
    admin.create_secret(Name="json-blob", SecretBinary=b'{"a": [1, 2]}')
    theirs_calls = Calls(theirs_client)
    for _ in range(2):
        expected = theirs.get("json-blob", transform="json", force_fetch=True)
        assert ours.get("json-blob", transform="json", force_fetch=True) == expected == {"a": [1, 2]}
    assert calls["GetSecretValue"] == theirs_calls["GetSecretValue"] == 2


def test_json_is_a_private_copy_and_one_fetch_serves_every_transform(
    ours: SecretCacheProvider, theirs: SecretsProvider, calls: Calls, theirs_client: Any, secrets: None
) -> None:
    """Raw and JSON reads share one fetch, and changing a returned dict changes no later read."""
    theirs_calls = Calls(theirs_client)
    providers: list[Any] = [ours, theirs]  # Powertools types get() as a union
    for provider in providers:
        provider.get("db")
        provider.get("db", transform="json")["password"] = "changed"
    assert ours.get("db", transform="json") == DB
    assert calls["GetSecretValue"] == 1
    assert providers[1].get("db", transform="json")["password"] == "changed"  # Powertools hands out its cached dict
    assert theirs_calls["GetSecretValue"] == 2  # one per transform


def test_force_fetch_refreshes_now(ours: SecretCacheProvider, admin: Any, calls: Calls, secrets: None) -> None:
    """force_fetch=True fetches a fresh value even within the TTL; other reads keep the cached one."""
    assert ours.get("plain") == "text-9d2a"
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    assert ours.get("plain") == "text-9d2a"
    assert ours.get("plain", force_fetch=True) == "rotated"
    assert ours.get("plain") == "rotated"
    assert calls["GetSecretValue"] == 2


def test_max_age_is_the_ttl_of_what_a_read_fetches(
    ours: SecretCacheProvider, admin: Any, calls: Calls, clock: FakeClock, secrets: None
) -> None:
    """max_age=10 fetched value lives 10 s (the cache's own TTL is 60 s), and its refreshes keep it."""
    assert ours.get("plain", max_age=10) == "text-9d2a"
    clock.advance(9)
    assert ours.get("plain", max_age=10) == "text-9d2a"
    assert calls["GetSecretValue"] == 1
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    clock.advance(2)
    assert ours.get("plain", max_age=10) == "rotated"
    assert calls["GetSecretValue"] == 2
    clock.advance(11)
    assert ours.get("plain") == "rotated"  # max_age=None resolves to 300 s, but only for a fetch
    assert calls["GetSecretValue"] == 3


def test_max_age_none_reads_the_powertools_variable(
    ours: SecretCacheProvider, calls: Calls, clock: FakeClock, secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without max_age, POWERTOOLS_PARAMETERS_MAX_AGE sets the TTL, as in Powertools."""
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "5")
    ours.get("plain")
    clock.advance(4)
    ours.get("plain")
    assert calls["GetSecretValue"] == 1
    clock.advance(2)
    ours.get("plain")
    assert calls["GetSecretValue"] == 2


def test_max_age_zero_fetches_every_time(ours: SecretCacheProvider, calls: Calls, secrets: None) -> None:
    """max_age <= 0 caches nothing in Powertools: every read fetches."""
    for max_age in (0, 0, -1):
        ours.get("plain", max_age=max_age)
    assert calls["GetSecretValue"] == 3


def test_version_options_are_cached_per_version(
    ours: SecretCacheProvider, theirs: SecretsProvider, admin: Any, secrets: None
) -> None:
    """VersionStage reads that version; Powertools' store ignores SDK options and returns AWSCURRENT."""
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    for provider in (ours, theirs):
        assert provider.get("plain") == "rotated"
    assert ours.get("plain", VersionStage="AWSPREVIOUS") == "text-9d2a"
    assert theirs.get("plain", VersionStage="AWSPREVIOUS") == "rotated"  # Powertools' cache key is (name, transform)
    version_id = admin.describe_secret(SecretId="plain")["VersionIdsToStages"]
    previous = next(vid for vid, stages in version_id.items() if "AWSPREVIOUS" in stages)
    assert ours.get("plain", VersionId=previous) == "text-9d2a"


def test_get_multiple_reads_exactly_the_names_in_one_batch(
    ours: SecretCacheProvider, theirs: SecretsProvider, calls: Calls, secrets: None
) -> None:
    """One BatchGetSecretValue for cold names; missing names are left out; no prefix matches added."""
    got = ours.get_multiple(["db", "plain", "missing"])
    assert got == {"db": json.dumps(DB), "plain": "text-9d2a"}
    assert calls["BatchGetSecretValue"] == 1
    assert calls["GetSecretValue"] == 0
    assert ours.get("db") == json.dumps(DB)  # the batch warmed the same entries get() reads
    assert calls.total == 1
    expected = theirs.get_multiple(["db", "plain", "missing"])
    assert expected == {**got, "db-old": "prefix-of-db"}  # Powertools' name filter matches prefixes


def test_get_multiple_transforms_like_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """Transforms apply per value; a failed one is None unless raise_on_transform_error is set."""
    names = ["cfg.json", "blob64.binary", "plain", "bad-json"]
    got = ours.get_multiple(names, transform="auto")
    assert got == theirs.get_multiple(names, transform="auto")
    assert got == {
        "cfg.json": {"level": "debug"},
        "blob64.binary": b"bytes-inside",
        "plain": "text-9d2a",
        "bad-json": "{not json: 4e1b",
    }
    assert ours.get_multiple(["db", "bad-json"], transform="json") == {"db": DB, "bad-json": None}
    with pytest.raises(TransformParameterError):
        ours.get_multiple(["db", "bad-json"], transform="json", raise_on_transform_error=True)
    with pytest.raises(TransformParameterError):
        theirs.get_multiple(["db", "bad-json"], transform="json", raise_on_transform_error=True)


def test_get_multiple_batch_values_live_for_the_cache_ttl(
    ours: SecretCacheProvider, admin: Any, calls: Calls, clock: FakeClock, secrets: None
) -> None:
    """A batch cannot carry max_age: its values live the cache's TTL (60 s here); force_fetch reads one by one."""
    assert ours.get_multiple(["plain"], max_age=10) == {"plain": "text-9d2a"}
    admin.put_secret_value(SecretId="plain", SecretString="rotated")
    clock.advance(11)
    assert ours.get_multiple(["plain"], max_age=10) == {"plain": "text-9d2a"}  # Powertools would refetch here
    assert ours.get_multiple(["plain"], force_fetch=True) == {"plain": "rotated"}
    assert calls.counts == {"BatchGetSecretValue": 1, "GetSecretValue": 1}


def test_get_multiple_refuses_sdk_options_powertools_passes_to_the_batch(
    ours: SecretCacheProvider, theirs: SecretsProvider, admin: Any, calls: Calls
) -> None:
    """Filters= narrows Powertools' batch call; ours reads named secrets only and refuses it before any call."""
    admin.create_secret(Name="tagged", SecretString="v-31c8", Description="team-a")
    filters = [{"Key": "description", "Values": ["team-a"]}]
    assert theirs.get_multiple(["tagged"], Filters=filters) == {"tagged": "v-31c8"}
    with pytest.raises(GetSecretError, match="Filters"):
        ours.get_multiple(["tagged"], Filters=filters)
    assert calls.total == 0


def test_set_then_get_reads_the_written_value_where_powertools_serves_its_cached_one(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """Powertools' store keeps the value read before set() until max_age; ours drops it, so the next read fetches."""
    for provider in (theirs, ours):
        assert provider.get("plain") == "text-9d2a"
    theirs.set("plain", "written-by-theirs")
    assert theirs.get("plain") == "text-9d2a"
    ours.set("plain", "written-by-ours")
    assert ours.get("plain") == "written-by-ours"


def test_version_options_given_as_none_read_the_current_version(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None
) -> None:
    """VersionStage=None / VersionId=None: botocore refuses them in Powertools' fetch; ours reads them as not given."""
    for option in ("VersionStage", "VersionId"):
        with pytest.raises(GetParameterError, match=option):
            theirs.get("plain", force_fetch=True, **{option: None})
        assert ours.get("plain", **{option: None}) == "text-9d2a"


@pytest.mark.parametrize(
    "names", [[], ["missing"], ["missing", "also-missing"], "db"], ids=["empty", "one", "two", "a-str"]
)
def test_get_multiple_errors_match_powertools(
    ours: SecretCacheProvider, theirs: SecretsProvider, secrets: None, names: list[str]
) -> None:
    """No names, or nothing found: GetSecretError from both."""
    with pytest.raises(GetSecretError):
        theirs.get_multiple(names)
    with pytest.raises(GetSecretError):
        ours.get_multiple(names)


def test_get_multiple_raises_on_an_outage_with_nothing_cached(
    ours: SecretCacheProvider, calls: Calls, secrets: None
) -> None:
    """Throttling that outlives the retries is an error, not a silently missing secret."""
    calls.fail_with("ThrottlingException")
    with pytest.raises(GetSecretError, match="Failed to retrieve secrets") as raised:
        ours.get_multiple(["db", "plain"])
    assert isinstance(raised.value.__cause__, SecretUnavailableError)


def test_get_multiple_force_fetch_and_max_age_zero_read_one_by_one(
    ours: SecretCacheProvider, calls: Calls, secrets: None
) -> None:
    """A batch can neither force nor apply max_age: those reads use GetSecretValue per name."""
    for _ in range(2):
        assert ours.get_multiple(["db", "plain"], max_age=0) == {"db": json.dumps(DB), "plain": "text-9d2a"}
    ours.get_multiple(["db", "plain"], force_fetch=True)
    assert calls["BatchGetSecretValue"] == 0
    assert calls["GetSecretValue"] == 6
