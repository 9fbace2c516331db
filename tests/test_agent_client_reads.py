"""secretcache.agent.AgentClient: what it asks the server and what it answers, as a boto3 client would.

Reads through a SecretCache (string, binary, forced, prefetched, async), the request it sends (ids,
labels, refreshNow, the token and where it comes from) and the answer it gives back (boto3's shape,
CreatedDate). The server and the fixtures are tests/agent_client.py's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from secretcache import SecretCache
from secretcache.agent import AgentClient
from tests import agent_standin
from tests.agent_client import BINARY, RETRY, VALUE, cache_of
from tests.agent_client import client as client  # a fixture
from tests.agent_client import standin as standin  # a fixture
from tests.agent_standin import TOKEN, AgentStandIn
from tests.conftest import REGION


def test_cache_reads_string_and_binary_secrets(client: AgentClient, standin: AgentStandIn) -> None:
    """A SecretCache over an AgentClient reads string and binary secrets, their ids and dates, then hits."""
    with cache_of(client) as cache:
        assert cache.get_secret_string("app/db") == VALUE
        assert cache.get_secret_binary("app/key") == BINARY
        value = cache.get_secret("app/db")
        assert cache.get_secret_string("app/db") == VALUE
    assert value.arn == agent_standin.ARN.format(name="app/db")
    assert value.version_id == agent_standin.VERSION
    assert value.version_stages == ("AWSCURRENT",)
    assert value.created_date == datetime(2019, 9, 26, 21, 53, 9, 46000, tzinfo=timezone.utc)
    assert len(standin.gets()) == 2  # one per secret; the rest were hits
    assert standin.gets()[0].query == {"secretId": "app/db", "versionStage": "AWSCURRENT"}


def test_response_has_boto3s_shape(client: AgentClient, aws: None) -> None:
    """get_secret_value answers with the keys and value types a boto3 client's answer has."""
    boto: Any = boto3.client("secretsmanager", region_name=REGION)
    boto.create_secret(Name="app/db", SecretString=VALUE)
    boto.create_secret(Name="app/key", SecretBinary=BINARY)
    for secret_id in ("app/db", "app/key"):
        ours = client.get_secret_value(SecretId=secret_id)
        theirs = boto.get_secret_value(SecretId=secret_id)
        assert ours.keys() == theirs.keys()
        assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}
        assert ours["CreatedDate"].utcoffset() is not None
        assert ours["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert client.get_secret_value(SecretId="app/key")["SecretBinary"] == BINARY


def test_ids_and_labels_are_percent_encoded(client: AgentClient, standin: AgentStandIn) -> None:
    """Ids with slashes, spaces, ampersands and ARNs reach the server intact, with the version asked for."""
    odd = "team a/db&x=1+%/é"
    arn = agent_standin.ARN.format(name="app/db")
    standin.add(odd, "odd")
    standin.add(arn, "by-arn")
    assert client.get_secret_value(SecretId=odd)["SecretString"] == "odd"
    assert (
        client.get_secret_value(SecretId=arn, VersionId="v 1", VersionStage="AWSPREVIOUS")["SecretString"] == "by-arn"
    )
    assert [seen.query for seen in standin.gets()] == [
        {"secretId": odd},
        {"secretId": arn, "versionId": "v 1", "versionStage": "AWSPREVIOUS"},
    ]


def test_forced_reads_send_refresh_now(client: AgentClient, standin: AgentStandIn) -> None:
    """force_refresh=True and refresh() reach the server as refreshNow=true; plain reads and prefetch never do."""
    with cache_of(client) as cache:
        cache.get_secret_string("app/db")
        cache.get_secret_string("app/db", force_refresh=True)
        cache.refresh("app/db")
        cache.get_secret_string("app/db")  # a hit
        cache.prefetch(["app/key"])
    assert [seen.query.get("refreshNow") for seen in standin.gets()] == [None, "true", "true", None]


def test_forced_reads_send_no_refresh_now_to_boto3(aws: None) -> None:
    """A boto3 client declares no RefreshNow support, so a forced read calls it with its own parameters only."""
    boto: Any = boto3.client("secretsmanager", region_name=REGION)
    boto.create_secret(Name="app/db", SecretString=VALUE)
    with SecretCache(client=boto, retry=RETRY) as cache:
        assert cache.refresh("app/db").secret_string == VALUE
        assert cache.get_secret_string("app/db", force_refresh=True) == VALUE


def test_prefetch_falls_back_to_single_reads(client: AgentClient, standin: AgentStandIn) -> None:
    """prefetch reads each secret with one GET (the protocol has no batch call), then reads are hits."""
    standin.add("app/other", "other")
    with cache_of(client) as cache:
        assert cache.prefetch(["app/db", "app/key", "app/other"]) == {}
        assert cache.get_secret_string("app/other") == "other"
        assert cache.get_secret_binary("app/key") == BINARY
    assert sorted(seen.query["secretId"] for seen in standin.gets()) == ["app/db", "app/key", "app/other"]


def test_token_header_is_sent(client: AgentClient, standin: AgentStandIn) -> None:
    """Every request carries the token in X-Aws-Parameters-Secrets-Token."""
    client.get_secret_value(SecretId="app/db")
    assert standin.gets()[0].headers["x-aws-parameters-secrets-token"] == TOKEN


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"AWS_SESSION_TOKEN": "lambda-token"}, "lambda-token"),  # the Lambda extension's token
        ({"AWS_TOKEN": "first", "AWS_SESSION_TOKEN": "second"}, "first"),
        ({"AWS_CONTAINER_AUTHORIZATION_TOKEN": "snapstart"}, "snapstart"),
        ({"AWS_TOKEN": "file://{file}"}, "from-file"),
    ],
)
def test_token_defaults_to_the_servers_variables(
    standin: AgentStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variables: dict[str, str],
    expected: str,
) -> None:
    """With no token given, the client sends the one the server reads: first set variable, file:// read and trimmed."""
    token_file = tmp_path / "token"
    token_file.write_text("  from-file\n")
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(file=token_file))
    monkeypatch.setenv("SECRETCACHE_AGENT_ENDPOINT", standin.url)
    standin.token = expected
    with AgentClient() as agent:
        assert agent.get_secret_value(SecretId="app/db")["SecretString"] == VALUE
    assert standin.gets()[0].headers["x-aws-parameters-secrets-token"] == expected


def test_endpoint_variable_is_not_a_cache_setting_typo(standin: AgentStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """SECRETCACHE_AGENT_ENDPOINT picks the server, and SecretCache.from_env() does not refuse it as unknown."""
    monkeypatch.setenv("SECRETCACHE_AGENT_ENDPOINT", standin.url)
    monkeypatch.setenv("AWS_TOKEN", TOKEN)
    with AgentClient() as agent, SecretCache.from_env(client=agent) as cache:  # the client's connection too
        assert cache.get_secret_string("app/db") == VALUE


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ('"1569534789.046"', datetime(2019, 9, 26, 21, 53, 9, 46000, tzinfo=timezone.utc)),  # the Agent's
        ("1569534789.046", datetime(2019, 9, 26, 21, 53, 9, 46000, tzinfo=timezone.utc)),  # a JSON number
        ('"2019-09-26T21:53:09.046Z"', datetime(2019, 9, 26, 21, 53, 9, 46000, tzinfo=timezone.utc)),
        ('"2019-09-26T23:53:09.046+02:00"', datetime(2019, 9, 26, 21, 53, 9, 46000, tzinfo=timezone.utc)),
        ('"yesterday"', None),
        ("null", None),
        ('"1e999999999"', None),  # past what decimal's context holds (decimal.Overflow)
        ('"-1E+1000000"', None),
        ('"0001-01-01T00:00:00+01:00"', None),  # before year 1 in UTC (OverflowError)
        ('"9999-12-31T23:59:59-01:00"', None),
    ],
)
def test_created_date_is_read_exactly_or_left_out(
    client: AgentClient, standin: AgentStandIn, created: str, expected: datetime | None
) -> None:
    """CreatedDate in the Agent's string form, a number or ISO 8601 is read to the microsecond in UTC; else left out."""
    body = '{"ARN":"arn","Name":"app/db","VersionId":"v1","SecretString":"x","VersionStages":["AWSCURRENT"],'
    standin.fail_next((200, f'{body}"CreatedDate":{created}}}'.encode()))
    answer = client.get_secret_value(SecretId="app/db")
    assert answer.get("CreatedDate") == expected


async def test_async_cache_reads_through_the_client(client: AgentClient, standin: AgentStandIn) -> None:
    """AsyncSecretCache reads through an AgentClient too (its fetches run off the event loop), refresh included."""
    from secretcache import AsyncSecretCache

    async with AsyncSecretCache(client=client, retry=RETRY) as cache:
        assert await cache.get_secret_string("app/db") == VALUE
        await cache.refresh("app/db")
    assert [seen.query.get("refreshNow") for seen in standin.gets()] == [None, "true"]
