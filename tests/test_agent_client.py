"""secretcache.agent.AgentClient: a SecretCache reading through an Agent-protocol server as it reads through boto3.

The server is tests/agent_standin.py, which replays the AWS Secrets Manager Agent's answers byte
for byte; requests are counted there.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from secretcache import (
    InvalidSecretRequestError,
    RetryPolicy,
    SecretAccessDeniedError,
    SecretCache,
    SecretCacheError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache.agent import AgentClient
from tests import agent_standin
from tests.agent_standin import TOKEN, AgentStandIn, running
from tests.conftest import REGION, FakeClock, quiescent
from tests.leaks import assert_value_absent

VALUE = "pw-7c1d-never-shown"
BINARY = b"\x00\xffbinary-7c1d\x80"
RETRY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, deadline=30.0)


@pytest.fixture
def standin() -> Iterator[AgentStandIn]:
    with running() as server:
        server.add("app/db", VALUE)
        server.add("app/key", binary=BINARY)
        yield server


@pytest.fixture
def client(standin: AgentStandIn) -> Iterator[AgentClient]:
    with AgentClient(standin.url, TOKEN, connect_timeout=1, read_timeout=2) as agent:
        yield agent


def cache_of(client: AgentClient, **kwargs: Any) -> SecretCache:
    return SecretCache(client=client, retry=RETRY, **kwargs)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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
    with SecretCache.from_env(client=AgentClient()) as cache:
        assert cache.get_secret_string("app/db") == VALUE


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


def test_connection_refused_is_unavailable_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listening: every attempt fails at once, the cache retries, then SecretUnavailableError (no hang)."""
    with AgentClient(f"http://127.0.0.1:{free_port()}", TOKEN, connect_timeout=0.5, read_timeout=0.5) as agent:
        cache = cache_of(agent)
        with cache, pytest.raises(SecretUnavailableError, match="retries exhausted") as caught:
            cache.get_secret_string("app/db")
        assert cache.stats().api_calls == {"GetSecretValue": RETRY.attempts}
    assert isinstance(caught.value.__cause__, EndpointConnectionError)


def test_hung_server_times_out_and_is_retried(client: AgentClient, standin: AgentStandIn) -> None:
    """A server that does not answer within read_timeout is a transient ReadTimeoutError, retried, then unavailable."""
    standin.hold = True
    with AgentClient(standin.url, TOKEN, read_timeout=0.2) as agent:
        cache = SecretCache(client=agent, retry=RetryPolicy(attempts=2, initial_delay=0, max_delay=0))
        with cache, pytest.raises(SecretUnavailableError) as caught:
            cache.get_secret_string("app/db")
    assert len(standin.gets()) == 2
    assert isinstance(caught.value.__cause__, ReadTimeoutError)


def test_broken_connection_is_transient(client: AgentClient, standin: AgentStandIn) -> None:
    """A connection closed before the answer becomes botocore's ConnectionClosedError, which the cache retries."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with AgentClient(f"http://127.0.0.1:{port}", TOKEN, read_timeout=5) as agent:

            def close_each() -> None:
                for _ in range(2):
                    conn, _addr = listener.accept()
                    conn.recv(4096)
                    conn.close()

            closer = threading.Thread(target=close_each, daemon=True)
            closer.start()
            cache = SecretCache(client=agent, retry=RetryPolicy(attempts=2, initial_delay=0, max_delay=0))
            with cache, pytest.raises(SecretUnavailableError) as caught:
                cache.get_secret_string("app/db")
            closer.join(5)
    assert isinstance(caught.value.__cause__, ConnectionClosedError)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_connection_broken_mid_body_holds_no_body_byte(
    client: AgentClient, standin: AgentStandIn, framing: str
) -> None:
    """A connection that breaks after the value was sent is a transient ConnectionClosedError holding none of the body.

    http.client's IncompleteRead holds the bytes read (the value); neither the client's error nor
    the cache's (raised, then remembered) may reach it by any chain, argument or attribute.
    """
    standin.cut_next(framing)
    with pytest.raises(ConnectionClosedError) as direct:
        client.get_secret_value(SecretId="app/db")
    errors: list[BaseException] = [direct.value]
    with cache_of(client) as cache:
        standin.cut_next(*[framing] * RETRY.attempts)
        for _ in range(2):  # the failure, then the same failure remembered
            with pytest.raises(SecretUnavailableError, match="Connection was closed") as caught:
                cache.get_secret_string("app/db")
            errors.append(caught.value)
        standin.cut_next(framing)
        assert cache.get_secret_string("app/db", force_refresh=True) == VALUE  # retried past the cut
    for error in errors:
        for body_part in (VALUE, '{"ARN":"'):
            assert_value_absent(error, body_part)
    assert direct.value.__context__ is None
    assert len(standin.gets()) == 1 + RETRY.attempts + 2


def test_close_on_another_thread_fails_no_request(client: AgentClient, standin: AgentStandIn) -> None:
    """close() while other threads read: every request is answered once, none fails on the pool close() closed."""
    failures: list[BaseException] = []

    def read() -> None:
        for _ in range(50):
            try:
                client.get_secret_value(SecretId="app/db")
            except Exception as err:
                failures.append(err)

    readers = [threading.Thread(target=read, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    closes = 0
    while any(reader.is_alive() for reader in readers) and closes < 1_000_000:
        client.close()
        closes += 1
    for reader in readers:
        reader.join(30)
    assert [f"{type(err).__name__}: {err}" for err in failures] == []
    assert closes > 0
    assert len(standin.gets()) == 4 * 50  # none sent twice


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
    assert (
        repr(client) == f"AgentClient(endpoint={standin.url!r}, connect_timeout=1, read_timeout=2, max_connections=10)"
    )


def test_import_secretcache_does_not_load_the_client() -> None:
    """import secretcache leaves secretcache.agent unloaded; it is importable as a public module."""
    code = "import sys, secretcache; print('secretcache.agent' in sys.modules); import secretcache.agent"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from secretcache.agent import AgentClient

    client = AgentClient(sys.argv[1], sys.argv[2])
    client.get_secret_value(SecretId="app/db")
    pid = os.fork()
    if pid == 0:
        client.get_secret_value(SecretId="app/db")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    client.get_secret_value(SecretId="app/db")
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_opens_its_own_connection(standin: AgentStandIn, tmp_path: Path) -> None:
    """After a fork the child reads over a new connection, and the parent keeps reusing its own."""
    script = tmp_path / "fork_client.py"
    script.write_text(FORK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    result = subprocess.run(
        [sys.executable, str(script), standin.url, TOKEN], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    parent, child, parent_again = (seen.port for seen in standin.gets())
    assert child != parent
    assert parent_again == parent


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


async def test_async_cache_reads_through_the_client(client: AgentClient, standin: AgentStandIn) -> None:
    """AsyncSecretCache reads through an AgentClient too (its fetches run off the event loop), refresh included."""
    from secretcache import AsyncSecretCache

    async with AsyncSecretCache(client=client, retry=RETRY) as cache:
        assert await cache.get_secret_string("app/db") == VALUE
        await cache.refresh("app/db")
    assert [seen.query.get("refreshNow") for seen in standin.gets()] == [None, "true"]
