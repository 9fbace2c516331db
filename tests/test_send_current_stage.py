"""``send_current_stage``: whether a read of AWSCURRENT sends ``VersionStage`` or only ``SecretId``.

The default sends ``VersionStage="AWSCURRENT"`` (moto answers a plain ``GetSecretValue`` with a
stale version after ``UpdateSecretVersionStage``); ``False`` sends what plain boto3 code and
Powertools send, so a botocore ``Stubber`` expecting exactly ``{"SecretId": ...}`` matches.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.stub import Stubber

from secretcache import AsyncSecretCache, SecretCache, SecretNotFoundError
from tests.conftest import FakeClock
from tests.test_cache import make_cache

VERSION = "7a9155b8-2dc9-466e-b4f6-5bc46516c84d"


def test_default_sends_the_current_stage(stubbed: tuple[Any, Stubber], clock: FakeClock) -> None:
    """By default a read of the current version names AWSCURRENT in the request."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretString": "x"}, {"SecretId": "s", "VersionStage": "AWSCURRENT"})
    with make_cache(client, clock) as cache:
        assert cache.get_secret_string("s") == "x"
    stubber.assert_no_pending_responses()


def test_false_sends_only_the_secret_id(stubbed: tuple[Any, Stubber], clock: FakeClock) -> None:
    """With send_current_stage=False a read of the current version sends exactly {"SecretId": ...}."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretString": "x"}, {"SecretId": "s"})
    stubber.add_response("get_secret_value", {"SecretString": "y"}, {"SecretId": "s"})
    with make_cache(client, clock, send_current_stage=False) as cache:
        assert cache.get_secret_string("s") == "x"
        assert cache.get_secret_string("s", version_stage="AWSCURRENT") == "x"  # the same entry: no call
        assert cache.refresh("s").secret_string == "y"
    stubber.assert_no_pending_responses()


def test_false_still_sends_what_a_read_asks_for(stubbed: tuple[Any, Stubber], clock: FakeClock) -> None:
    """Another label, or a version id, is sent as asked whatever send_current_stage says."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretString": "p"}, {"SecretId": "s", "VersionStage": "AWSPENDING"})
    stubber.add_response("get_secret_value", {"SecretString": "v"}, {"SecretId": "s", "VersionId": VERSION})
    with make_cache(client, clock, send_current_stage=False) as cache:
        assert cache.get_secret_string("s", version_stage="AWSPENDING") == "p"
        assert cache.get_secret_string("s", version_id=VERSION) == "v"
    stubber.assert_no_pending_responses()


def test_async_cache_takes_the_option(stubbed: tuple[Any, Stubber]) -> None:
    """AsyncSecretCache passes send_current_stage to the cache it builds."""
    client, stubber = stubbed
    stubber.add_response("get_secret_value", {"SecretString": "x"}, {"SecretId": "s"})

    async def read() -> str:
        async with AsyncSecretCache(client, send_current_stage=False) as cache:
            return await cache.get_secret_string("s")

    assert asyncio.run(read()) == "x"
    stubber.assert_no_pending_responses()


def test_option_must_be_a_bool() -> None:
    """A non-bool is refused before any call, naming the option."""
    with pytest.raises(TypeError, match="send_current_stage must be a bool"):
        SecretCache(send_current_stage="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("send_current_stage", [True, False])
def test_a_missing_secret_is_not_found_either_way(
    stubbed: tuple[Any, Stubber], clock: FakeClock, send_current_stage: bool
) -> None:
    """A missing secret is SecretNotFoundError, whether or not the request named the label."""
    client, stubber = stubbed
    stubber.add_client_error("get_secret_value", "ResourceNotFoundException", "not found")
    cache = SecretCache(client, clock=clock, send_current_stage=send_current_stage)
    with cache, pytest.raises(SecretNotFoundError, match="'s'"):
        cache.get_secret_string("s")
    stubber.assert_no_pending_responses()
