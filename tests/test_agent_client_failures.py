"""secretcache.agent.AgentClient: the server's failures as the cache's errors, and nothing secret shown.

Definite answers raise typed errors at once, transient ones are retried or served stale, broken
bodies are parser errors; settings are refused before any request; neither the token nor a value
reaches a repr, a log line or an error's chain. The server and the fixtures are tests/agent_client.py's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from secretcache import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache.agent import AgentClient
from tests import agent_standin
from tests.agent_client import RETRY, VALUE, cache_of
from tests.agent_client import client as client  # a fixture
from tests.agent_client import standin as standin  # a fixture
from tests.agent_standin import TOKEN, AgentStandIn
from tests.conftest import FakeClock, quiescent
from tests.leaks import assert_value_absent, record_leaks


def chain(err: BaseException) -> list[BaseException]:
    """``err`` and every exception reachable through ``__cause__``, ``__context__`` and args."""
    seen: list[BaseException] = []
    todo = [err]
    while todo:
        current = todo.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += [arg for arg in current.args if isinstance(arg, BaseException)]
    return seen


def text_of(err: BaseException) -> str:
    """Everything an error shows: messages, reprs, args and attributes along its whole chain."""
    parts = []
    for each in chain(err):
        parts += [str(each), repr(each), repr(each.args), repr(getattr(each, "__dict__", {}))]
        parts += [repr(getattr(each, "response", ""))]
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("answer", "expected", "code"),
    [
        (agent_standin.NOT_FOUND, SecretNotFoundError, "ResourceNotFoundException"),
        (agent_standin.KMS_DENIED, SecretAccessDeniedError, "AccessDeniedException"),
        (agent_standin.BAD_TOKEN, SecretAccessDeniedError, "403"),
        (agent_standin.UNKNOWN_PARAMETER, SecretUnavailableError, "400"),
        (agent_standin.FORWARDED, SecretUnavailableError, "400"),
        (agent_standin.NO_PATH, SecretUnavailableError, "404"),
        (agent_standin.NOT_ALLOWED, SecretUnavailableError, "405"),
        (
            (400, b'{"__type":"InvalidRequestException", "message":"marked for "deletion""}'),
            InvalidSecretRequestError,
            "InvalidRequestException",
        ),
    ],
)
def test_definite_answers_raise_at_once_as_typed_errors(
    client: AgentClient,
    standin: AgentStandIn,
    answer: tuple[int, bytes],
    expected: type[SecretCacheError],
    code: str,
) -> None:
    """The Agent's 4xx answers raise the typed error of their code (or status) after one request, never retried.

    The last row is the Agent's unescaped error body (a quote in the message): not JSON, still read.
    """
    standin.fail_next(answer)
    with cache_of(client) as cache, pytest.raises(expected) as caught:
        cache.get_secret_string("app/db")
    assert type(caught.value) is expected
    assert len(standin.gets()) == 1
    cause = caught.value.__cause__
    assert isinstance(cause, ClientError)
    assert cause.response["Error"]["Code"] == code
    assert cause.response["ResponseMetadata"]["HTTPStatusCode"] == answer[0]
    assert cause.operation_name == "GetSecretValue"


def test_unknown_secret_is_not_found(client: AgentClient) -> None:
    """An AWS error passed on by the server (ResourceNotFoundException, 400) is SecretNotFoundError."""
    with cache_of(client) as cache, pytest.raises(SecretNotFoundError, match="ResourceNotFoundException"):
        cache.get_secret_string("app/missing")


@pytest.mark.parametrize(
    "answer",
    [agent_standin.INTERNAL, agent_standin.BAD_GATEWAY, agent_standin.GATEWAY_TIMEOUT, agent_standin.TOO_MANY],
    ids=["500", "502", "504", "429"],
)
def test_transient_answers_are_retried(client: AgentClient, standin: AgentStandIn, answer: tuple[int, bytes]) -> None:
    """429 and 5xx are retried by the cache's policy: two failures, then the value, in three requests."""
    standin.fail_next(answer, answer)
    with cache_of(client) as cache:
        assert cache.get_secret_string("app/db") == VALUE
    assert len(standin.gets()) == 3


def test_transient_answers_exhaust_into_unavailable(client: AgentClient, standin: AgentStandIn) -> None:
    """A server answering 502 throughout: SecretUnavailableError after the policy's attempts, ClientError chained."""
    standin.outage = agent_standin.BAD_GATEWAY
    with cache_of(client) as cache, pytest.raises(SecretUnavailableError) as caught:
        cache.get_secret_string("app/db")
    assert len(standin.gets()) == RETRY.attempts
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.__cause__.response["Error"]["Code"] == "ConnectionError"


@pytest.mark.parametrize(
    "outage",
    [agent_standin.INTERNAL, (500, b"[" * 200_000)],
    ids=["InternalFailure", "nested-past-the-recursion-limit"],
)
def test_value_past_ttl_is_served_during_an_outage(
    client: AgentClient, standin: AgentStandIn, clock: FakeClock, outage: tuple[int, bytes]
) -> None:
    """Past its TTL, while the server answers 5xx (any body), the last good value is served and counted stale."""
    with cache_of(client, ttl=60, clock=clock, sleep=clock.sleep) as cache:
        assert cache.get_secret_string("app/db") == VALUE
        clock.advance(61)
        standin.outage = outage
        assert cache.get_secret_string("app/db") == VALUE
        quiescent(cache)  # the retries behind the stale read end
        assert cache.stats().stale_served == 1
        assert len(standin.gets()) == 1 + RETRY.attempts
        standin.outage = None
        clock.advance(120)  # past the failure backoff
        standin.secrets["app/db"].string = "rotated"
        assert cache.get_secret_string("app/db") == "rotated"


@pytest.mark.parametrize(
    "body",
    [b"", b"[1, 2]", b'{"Name":"app/db","SecretBinary":"not base64!"}', b"[" * 200_000],
    ids=["empty", "not-an-object", "bad-base64", "nested-past-the-recursion-limit"],
)
def test_broken_success_bodies_are_parser_errors(client: AgentClient, standin: AgentStandIn, body: bytes) -> None:
    """A 200 answer that is not a GetSecretValue object raises botocore's ResponseParserError (transient), no body."""
    from botocore.parsers import ResponseParserError

    standin.fail_next((200, body))
    with pytest.raises(ResponseParserError) as caught:
        client.get_secret_value(SecretId="app/db")
    assert caught.value.__context__ is None
    assert "base64!" not in str(caught.value)


def test_namespaced_error_type_and_wrong_argument_types(client: AgentClient, standin: AgentStandIn) -> None:
    """A JSON-protocol "__type" with a namespace gives the bare code; a non-str SecretId is refused as boto3 does."""
    from botocore.exceptions import ParamValidationError

    standin.fail_next((400, b'{"__type":"com.amazonaws.secretsmanager#DecryptionFailure","Message":"kms"}'))
    with pytest.raises(ClientError) as caught:
        client.get_secret_value(SecretId="app/db")
    assert caught.value.response["Error"] == {"Code": "DecryptionFailure", "Message": "kms"}
    with pytest.raises(ParamValidationError, match="SecretId"):
        client.get_secret_value(SecretId=5)  # type: ignore[arg-type]
    with pytest.raises(ParamValidationError, match="RefreshNow"):
        client.get_secret_value(SecretId="app/db", RefreshNow="yes")  # type: ignore[arg-type]
    assert standin.gets()[1:] == []


def test_refused_settings_fail_before_any_request() -> None:
    """No token anywhere, a bad endpoint, a token a header cannot carry: refused at construction, nothing echoed."""
    with pytest.raises(ValueError, match="AWS_TOKEN, AWS_SESSION_TOKEN, AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        AgentClient()
    for endpoint in ("ftp://127.0.0.1:2773", "http://user:hunter2@127.0.0.1:2773", "http://h:1/secretsmanager/get"):
        with pytest.raises(ValueError, match="endpoint refused") as caught:
            AgentClient(endpoint, TOKEN)
        assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="HTTP header") as refused:
        AgentClient(token="tok\r\nX-Injected: hunter2")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValueError, match="read_timeout"):
        AgentClient(token=TOKEN, read_timeout=0)


def test_unreadable_token_file_is_named_not_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_TOKEN=file://PATH naming a missing or non-UTF-8 file: a ValueError naming the variable and path only."""
    missing = tmp_path / "missing"
    monkeypatch.setenv("AWS_TOKEN", f"file://{missing}")
    with pytest.raises(ValueError, match="AWS_TOKEN") as caught:
        AgentClient()
    assert str(missing) in str(caught.value)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfehunter2")
    monkeypatch.setenv("AWS_TOKEN", f"file://{binary}")
    with pytest.raises(ValueError, match="not UTF-8") as refused:
        AgentClient()
    assert "hunter2" not in text_of(refused.value)


def test_token_and_value_never_shown(
    client: AgentClient, standin: AgentStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the token nor a value reaches repr(client), a DEBUG log line or any error of any chain."""
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with cache_of(client) as cache:
        cache.get_secret_string("app/db")
        cache.get_secret_binary("app/key")
        cold = standin.add("app/cold", VALUE)
        truncated = cold.body()[:-20]  # a success body cut off inside the value
        standin.fail_next(*[(200, truncated)] * RETRY.attempts)
        with pytest.raises(SecretUnavailableError, match="ResponseParserError") as caught:
            cache.get_secret_string("app/cold")
        errors.append(caught.value)
        standin.fail_next(*[agent_standin.INTERNAL] * RETRY.attempts)
        with pytest.raises(SecretUnavailableError, match="InternalFailure") as caught:
            cache.get_secret_string("app/cold", version_stage="AWSPREVIOUS")
        errors.append(caught.value)
    with AgentClient(standin.url, "wrong-" + TOKEN) as wrong, pytest.raises(ClientError) as refused:
        wrong.get_secret_value(SecretId="app/db")
    errors.append(refused.value)
    shown = "\n".join([repr(client), caplog.text, *map(text_of, errors)])
    assert "urllib3" in caplog.text  # DEBUG lines were captured
    for secret in (TOKEN, VALUE, "binary-7c1d", "pw-7c1d"):
        assert secret not in shown
        assert record_leaks(caplog.records, secret) == []
    assert (
        repr(client) == f"AgentClient(endpoint={standin.url!r}, connect_timeout=1, read_timeout=2, max_connections=10)"
    )


@pytest.mark.parametrize("status", [400, 403, 429, 500, 502])
def test_an_error_answer_holding_a_value_is_not_quoted(
    client: AgentClient, standin: AgentStandIn, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """An error status whose body is not an Agent error (here a success body, as a broken proxy may
    send) reaches no error and no log line: the client cannot tell a value in it from a message."""
    caplog.set_level(logging.DEBUG)
    leaky = standin.add("app/leaky", VALUE).body()
    standin.fail_next(*[(status, leaky)] * RETRY.attempts)
    with cache_of(client) as cache, pytest.raises(SecretCacheError) as caught:
        cache.get_secret_string("app/leaky")
    assert_value_absent(caught.value, VALUE)
    assert caplog.records  # DEBUG lines were captured
    assert record_leaks(caplog.records, VALUE) == []
    cause = caught.value.__cause__
    assert isinstance(cause, ClientError)
    assert cause.response["Error"]["Code"] == str(status)
    assert cause.response["Error"]["Message"] == f"(a body of {len(leaky)} bytes that is not an Agent error, not shown)"


@pytest.mark.parametrize(
    "answer",
    [
        agent_standin.BAD_TOKEN,
        agent_standin.FORWARDED,
        agent_standin.NOT_ALLOWED,
        agent_standin.NO_PATH,
        agent_standin.TOO_MANY,
        agent_standin.UNKNOWN_PARAMETER,
        (400, b"missing parameter secretId"),
        (400, b"invalid refreshNow value"),
    ],
)
def test_the_agents_plain_text_answers_are_the_message(
    client: AgentClient, standin: AgentStandIn, answer: tuple[int, bytes]
) -> None:
    """The Agent's own plain-text answers (server.rs, parse.rs) are the error's message, its status the code."""
    standin.fail_next(answer)
    with pytest.raises(ClientError) as caught:
        client.get_secret_value(SecretId="app/db")
    assert caught.value.response["Error"] == {"Code": str(answer[0]), "Message": answer[1].decode()}
