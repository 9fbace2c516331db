"""``Answerer``: the Agent's bodies from a real cache over moto, AWS errors passed through, refreshNow rate-limited.

Secrets Manager calls are counted (``Calls``), never timed. Expected bodies and statuses are the
Agent's (cache_manager.rs, utils.rs, get_secret_value_output.rs in aws/aws-secretsmanager-agent).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings

from secretcache import AsyncSecretCache, RetryPolicy, SecretCache
from secretcache.serve import _protocol
from secretcache.serve._protocol import Answerer, Request, Response
from tests.conftest import REGION, WATCHDOG, Calls, FakeClock
from tests.faultproxy import FaultProxy
from tests.leaks import record_leaks
from tests.test_serve_protocol import TOKEN, requests

ONE_TRY = RetryPolicy(attempts=1, initial_delay=0.0, max_delay=0.0, deadline=5.0)
VALUE = "pa55-w0rd-VALUE-7c1e"
BINARY = b"\x00\x01bin-VALUE-\xff"


def request(target: str, token: str | None = TOKEN) -> Request:
    path, _, query = target.partition("?")
    headers = {} if token is None else {"x-aws-parameters-secrets-token": token}
    return Request("GET", path, query, headers)


async def fetch(answerer: Answerer, target: str) -> Response:
    return await asyncio.wait_for(answerer.handle(request(target)), WATCHDOG)


def body_of(response: Response) -> dict[str, Any]:
    assert response.content_type == "application/json"
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def answerer(client: Any, clock: FakeClock) -> Iterator[Answerer]:
    cache = AsyncSecretCache(client, retry=ONE_TRY)
    yield Answerer(cache, token=TOKEN, clock=clock)
    cache.close()


@pytest.fixture
def secrets(admin: Any) -> Any:
    admin.create_secret(Name="app/db/primary", SecretString=VALUE)
    admin.create_secret(Name="blob", SecretBinary=BINARY)
    return admin


def assert_same_as_boto3(body: dict[str, Any], boto: dict[str, Any]) -> None:
    """The Agent's body field by field against boto3's answer for the same read."""
    for name in ("ARN", "Name", "VersionId", "VersionStages"):
        assert body[name] == boto[name], name
    if "SecretString" in boto:
        assert body["SecretString"] == boto["SecretString"]
        assert "SecretBinary" not in body
    else:
        assert base64.b64decode(body["SecretBinary"], validate=True) == boto["SecretBinary"]
        assert "SecretString" not in body
    assert isinstance(body["CreatedDate"], str)  # TimestampSecondsWithFrac<String>
    assert float(body["CreatedDate"]) == boto["CreatedDate"].timestamp()


async def test_string_secret_body_matches_boto3(answerer: Answerer, secrets: Any, calls: Calls) -> None:
    """The success body carries what boto3's get_secret_value returns, in the Agent's field order and compact form."""
    response = await fetch(answerer, "/secretsmanager/get?secretId=app/db/primary")
    assert response.status == 200
    body = body_of(response)
    assert_same_as_boto3(body, secrets.get_secret_value(SecretId="app/db/primary"))
    assert list(body) == ["ARN", "Name", "VersionId", "SecretString", "VersionStages", "CreatedDate"]
    assert response.body.startswith(b'{"ARN":"arn:aws:secretsmanager:')
    assert b'": ' not in response.body
    assert b", " not in response.body
    assert calls["GetSecretValue"] == 1


async def test_binary_secret_body_matches_boto3(answerer: Answerer, secrets: Any) -> None:
    """A binary secret comes back as base64 SecretBinary."""
    body = body_of(await fetch(answerer, "/secretsmanager/get?secretId=blob"))
    assert_same_as_boto3(body, secrets.get_secret_value(SecretId="blob"))
    assert list(body) == ["ARN", "Name", "VersionId", "SecretBinary", "VersionStages", "CreatedDate"]


async def test_path_style_with_slashes(answerer: Answerer, secrets: Any) -> None:
    """/v1/<id> with slashes in the id answers the same body as the query style."""
    by_path = await fetch(answerer, "/v1/app/db/primary")
    by_query = await fetch(answerer, "/secretsmanager/get?secretId=app%2Fdb%2Fprimary")
    assert by_path.status == 200
    assert by_path.body == by_query.body


async def test_versions_by_stage_and_id(answerer: Answerer, secrets: Any) -> None:
    """versionStage and versionId read the version boto3 reads for them."""
    old = secrets.get_secret_value(SecretId="app/db/primary")
    secrets.put_secret_value(SecretId="app/db/primary", SecretString="next-" + VALUE)
    previous = body_of(await fetch(answerer, "/v1/app/db/primary?versionStage=AWSPREVIOUS"))
    assert_same_as_boto3(previous, secrets.get_secret_value(SecretId="app/db/primary", VersionStage="AWSPREVIOUS"))
    by_id = body_of(await fetch(answerer, f"/v1/app/db/primary?versionId={old['VersionId']}"))
    assert by_id["SecretString"] == VALUE
    assert by_id["VersionId"] == old["VersionId"]


async def test_hit_makes_no_call(answerer: Answerer, secrets: Any, calls: Calls) -> None:
    """After the first read, reads are hits: no call, and the same pre-serialised answer."""
    first = await fetch(answerer, "/v1/app/db/primary")
    again = [await fetch(answerer, "/v1/app/db/primary") for _ in range(20)]
    assert calls["GetSecretValue"] == 1
    assert all(response is first for response in again)


async def test_burst_of_refresh_now_is_one_call(answerer: Answerer, secrets: Any, calls: Calls) -> None:
    """50 concurrent refreshNow=true requests make one forced call, and all of them see the rotated value."""
    await fetch(answerer, "/v1/app/db/primary")
    secrets.put_secret_value(SecretId="app/db/primary", SecretString="rotated-" + VALUE)
    before = calls["GetSecretValue"]
    burst = await asyncio.gather(*(fetch(answerer, "/v1/app/db/primary?refreshNow=true") for _ in range(50)))
    assert calls["GetSecretValue"] - before <= 2
    assert {body_of(response)["SecretString"] for response in burst} == {"rotated-" + VALUE}


async def test_cold_burst_of_refresh_now(answerer: Answerer, secrets: Any, calls: Calls) -> None:
    """50 concurrent refreshNow=true requests for a secret never read make at most two calls."""
    burst = await asyncio.gather(
        *(fetch(answerer, "/secretsmanager/get?secretId=blob&refreshNow=1") for _ in range(50))
    )
    assert {response.status for response in burst} == {200}
    assert calls["GetSecretValue"] <= 2


async def test_refresh_now_once_per_interval(answerer: Answerer, secrets: Any, calls: Calls, clock: FakeClock) -> None:
    """Within refresh_interval a refreshNow is a plain read; after it, a forced call that sees a new version."""
    await fetch(answerer, "/v1/app/db/primary?refreshNow=true")
    for _ in range(10):
        await fetch(answerer, "/v1/app/db/primary?refreshNow=true")
    assert calls["GetSecretValue"] == 1
    secrets.put_secret_value(SecretId="app/db/primary", SecretString="later-" + VALUE)
    clock.advance(1.0)
    response = await fetch(answerer, "/v1/app/db/primary?refreshNow=true")
    assert calls["GetSecretValue"] == 2
    assert body_of(response)["SecretString"] == "later-" + VALUE


async def test_refresh_interval_zero_forces_every_time(client: Any, secrets: Any, calls: Calls) -> None:
    """refresh_interval=0 forces a call for every refreshNow, as the Agent does."""
    with SecretCache(client, retry=ONE_TRY) as cache:
        answerer = Answerer(cache, token=TOKEN, refresh_interval=0)
        for _ in range(3):
            assert (await fetch(answerer, "/v1/blob?refreshNow=true")).status == 200
    assert calls["GetSecretValue"] == 3


@pytest.mark.unmeasured  # a stress test: thousands of requests on four threads
def test_refresh_now_from_loops_on_several_threads_never_fails(
    client: Any, secrets: Any, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Answerer shared by event loops on four threads: refreshNow's bookkeeping holds up.

    Each thread forces reads of ids of its own that are refused before any call (so that
    thousands cost no call), while the remembered forced reads are cleaned up every 64; then
    each forces a read of one real secret. Every answer is the one the protocol defines, never a
    500, and nothing is logged as a bug (a table changed by another thread mid clean-up was one).
    """
    monkeypatch.setattr(_protocol, "_MAX_FORCED", 64)
    cache = AsyncSecretCache(client, retry=ONE_TRY)
    answerer = Answerer(cache, token=TOKEN, refresh_interval=0.0)
    barrier = threading.Barrier(4)
    statuses: list[Counter[int]] = []
    bodies: list[dict[str, Any]] = []
    bugs: list[logging.LogRecord] = []
    recorder = logging.Handler(logging.ERROR)
    recorder.emit = bugs.append  # type: ignore[method-assign]

    def loop_on_a_thread(thread: int) -> None:
        async def requests() -> None:
            seen: Counter[int] = Counter()
            for number in range(5000):
                response = await fetch(
                    answerer, f"/secretsmanager/get?secretId=bad%01{thread}-{number}&refreshNow=true"
                )
                seen[response.status] += 1
            statuses.append(seen)
            bodies.append(body_of(await fetch(answerer, "/v1/app/db/primary?refreshNow=true")))

        barrier.wait(WATCHDOG)
        asyncio.run(requests())

    switching = sys.getswitchinterval()
    logging.getLogger("secretcache").addHandler(recorder)
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can
    try:
        threads = [threading.Thread(target=loop_on_a_thread, args=(thread,)) for thread in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(4 * WATCHDOG)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        sys.setswitchinterval(switching)
        logging.getLogger("secretcache").removeHandler(recorder)
        cache.close()
    assert [record.getMessage() for record in bugs] == []
    assert statuses == [Counter({400: 5000})] * 4
    assert [body["SecretString"] for body in bodies] == [VALUE] * 4
    assert 1 <= calls["GetSecretValue"] <= 4


async def test_refresh_now_false_is_a_plain_read(answerer: Answerer, secrets: Any, calls: Calls) -> None:
    """refreshNow=false reads the cache."""
    for _ in range(3):
        await fetch(answerer, "/v1/blob?refreshNow=false")
    assert calls["GetSecretValue"] == 1


# -- errors ------------------------------------------------------------------------------------


def error_of(response: Response) -> tuple[int, str, str]:
    body = body_of(response)
    assert list(body) == ["__type", "message"]
    assert response.body.startswith(b'{"__type":"')
    assert b'", "message":"' in response.body
    return response.status, body["__type"], body["message"]


def boto3_error(admin: Any, **kwargs: Any) -> tuple[int, str, str]:
    """The status, code and message boto3 reports for the same GetSecretValue call."""
    with pytest.raises(ClientError) as caught:
        admin.get_secret_value(**kwargs)
    answer = caught.value.response
    return answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"], answer["Error"]["Message"]


async def test_not_found_passes_through(answerer: Answerer, secrets: Any) -> None:
    """A missing secret is the service's ResourceNotFoundException, with its status and message.

    (moto answers it with HTTP 404 where Secrets Manager uses 400: the status passes through as received.)
    """
    response = error_of(await fetch(answerer, "/v1/no/such/secret"))
    assert response == boto3_error(secrets, SecretId="no/such/secret")
    assert response[1] == "ResourceNotFoundException"


async def test_unknown_version_passes_through(answerer: Answerer, secrets: Any) -> None:
    """An unknown version id is AWS's ResourceNotFoundException."""
    version = "0" * 32
    response = error_of(await fetch(answerer, f"/v1/app/db/primary?versionId={version}"))
    assert response == boto3_error(secrets, SecretId="app/db/primary", VersionId=version)
    assert response[1] == "ResourceNotFoundException"


async def test_marked_for_deletion_passes_through(answerer: Answerer, secrets: Any) -> None:
    """A secret scheduled for deletion is AWS's 400 InvalidRequestException."""
    secrets.delete_secret(SecretId="blob", RecoveryWindowInDays=7)
    response = error_of(await fetch(answerer, "/v1/blob"))
    assert response == boto3_error(secrets, SecretId="blob", VersionStage="AWSCURRENT")
    assert response[:2] == (400, "InvalidRequestException")


@pytest.mark.parametrize("query", ["versionId=short", "versionStage=", "versionId=" + "9" * 65])
async def test_refused_before_any_call(answerer: Answerer, secrets: Any, calls: Calls, query: str) -> None:
    """A version id or label Secrets Manager would refuse is a 400 ValidationException without a call."""
    status, code, message = error_of(await fetch(answerer, f"/v1/app/db/primary?{query}"))
    assert (status, code) == (400, "ValidationException")
    assert "app/db/primary" in message
    assert calls.total == 0


@pytest.mark.parametrize("secret_id", ["x" * 2049, "bad%01id", "%20"])
async def test_impossible_ids_are_client_errors(answerer: Answerer, calls: Calls, secret_id: str) -> None:
    """Overlong, control-character or blank ids are a 400, never a 500, and cost no call."""
    status, code, _ = error_of(await fetch(answerer, f"/secretsmanager/get?secretId={secret_id}"))
    assert (status, code) == (400, "ValidationException")
    assert calls.total == 0


@pytest.fixture(params=[WATCHDOG], ids=["timeout-watchdog"])
def proxied(
    proxy: FaultProxy, moto_server: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Answerer, FaultProxy]]:
    """An Answerer whose cache talks to moto's HTTP server through the fault proxy (one try).

    The client's read timeout is the watchdog, so an answer is never mistaken for a timeout on a
    busy machine; the timeout test asks for a short one with ``indirect`` parametrisation.
    """
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=request.param)
    boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server).create_secret(
        Name="app/db", SecretString=VALUE
    )
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=proxy.url, config=config)
    cache = AsyncSecretCache(client, retry=ONE_TRY)
    yield Answerer(cache, token=TOKEN), proxy
    cache.close()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "AccessDeniedException"),
        (400, "DecryptionFailure"),
        (400, "ThrottlingException"),
        (400, "InvalidParameterException"),
        (500, "InternalServiceError"),
        (503, "ServiceUnavailable"),
    ],
)
async def test_aws_errors_pass_through(proxied: tuple[Answerer, FaultProxy], status: int, code: str) -> None:
    """An AWS error on the wire reaches the client with its HTTP status, __type and message."""
    answerer, proxy = proxied
    proxy.always(("status", (status, code, f"says {code}")))
    assert error_of(await fetch(answerer, "/v1/app/db")) == (status, code, f"says {code}")


async def test_no_record_holds_the_value_or_the_token(
    proxied: tuple[Answerer, FaultProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG (every logger: botocore's, asyncio's), a read, a refreshNow, a wrong token, an error
    answer whose body holds a value and an internal failure leave no record holding the value or token."""
    answerer, proxy = proxied
    caplog.set_level(logging.DEBUG)
    assert body_of(await fetch(answerer, "/v1/app/db"))["SecretString"] == VALUE
    assert body_of(await fetch(answerer, "/v1/app/db?refreshNow=true"))["SecretString"] == VALUE
    assert (await asyncio.wait_for(answerer.handle(request("/v1/app/db", TOKEN + "-wrong")), WATCHDOG)).status == 403
    leaky = json.dumps({"ARN": "arn", "Name": "app/cold", "VersionId": "v" * 32, "SecretString": VALUE})
    proxy.then(("raw", (502, leaky)))  # a proxy's 502 carrying a success body
    assert error_of(await fetch(answerer, "/v1/app/cold"))[0] == 502
    answerer.cache.close()
    assert (await fetch(answerer, "/v1/app/db")).status == 500
    assert any(record.name.startswith("botocore") for record in caplog.records)  # DEBUG lines were captured
    assert record_leaks(caplog.records, VALUE) == []
    assert record_leaks(caplog.records, TOKEN) == []


@pytest.mark.parametrize("proxied", [0.3], ids=["timeout-0.3s"], indirect=True)
async def test_timeout_is_504(proxied: tuple[Answerer, FaultProxy]) -> None:
    """A Secrets Manager call that times out is 504 TimeoutError (cache_manager.rs, svc_err)."""
    answerer, proxy = proxied
    proxy.always(("stall", 1.0))  # longer than the read timeout: a slow machine only times out sooner
    assert error_of(await fetch(answerer, "/v1/app/db")) == (504, "TimeoutError", "Timeout")


async def test_connection_failure_is_502(closed_endpoint: str) -> None:
    """A refused connection is 502 ConnectionError (cache_manager.rs, svc_err)."""
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=closed_endpoint)
    with SecretCache(client, retry=ONE_TRY) as cache:
        response = await fetch(Answerer(cache, token=TOKEN), "/v1/app/db")
    assert error_of(response) == (502, "ConnectionError", "Read Error")


async def test_bug_is_500_internal_failure(answerer: Answerer, secrets: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A failure outside the protocol (here a closed cache) is 500 InternalFailure, logged by type only."""
    await fetch(answerer, "/v1/app/db/primary")
    answerer.cache.close()
    with caplog.at_level(logging.ERROR, logger="secretcache.serve"):
        response = await fetch(answerer, "/v1/blob")
    assert (response.status, response.body) == (500, b'{"__type":"InternalFailure"}')
    assert "RuntimeError" in caplog.text
    assert "closed" not in caplog.text  # the exception's message is not logged
    assert record_leaks(caplog.records, VALUE) == []


async def test_values_never_in_error_bodies(answerer: Answerer, secrets: Any) -> None:
    """No error answer about a cached secret holds its value, in any encoding."""
    await fetch(answerer, "/v1/app/db/primary")
    await fetch(answerer, "/v1/blob")
    current = secrets.get_secret_value(SecretId="app/db/primary")["VersionId"]
    targets = [
        f"/v1/app/db/primary?versionId={current}&versionStage=AWSPREVIOUS",
        "/v1/app/db/primary?versionStage=AWSPENDING",
        "/v1/app/db/primary?versionId=short",
        "/v1/app/db/primary?refreshNow=maybe",
        "/v1/app/db/primary?x=1",
        "/v1/blob?versionId=" + "1" * 32,
        "/v1/blob?versionStage=" + "s" * 300,
    ]
    secrets_as_bytes = [VALUE.encode(), BINARY, base64.b64encode(BINARY), base64.b64encode(VALUE.encode())]
    for target in targets:
        response = await fetch(answerer, target)
        assert response.status >= 400, target
        assert not any(secret in response.body for secret in secrets_as_bytes), target
    for target in ("/v1/app/db/primary", "/v1/blob"):
        response = await answerer.handle(request(target, token="wrong"))
        assert response.status == 403
        assert not any(secret in response.body for secret in secrets_as_bytes)


@pytest.mark.unmeasured  # randomized: run unmeasured (CONTRIBUTING.md, "Coverage")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests)
def test_fuzz_never_500(answerer: Answerer, secrets: Any, req: Request) -> None:
    """Any request through the whole answer path yields a non-5xx answer without raising, and no value in an error."""
    response = asyncio.run(asyncio.wait_for(answerer.handle(req), WATCHDOG))
    assert 200 <= response.status < 500, response
    if response.status != 200:
        assert VALUE.encode() not in response.body
        assert base64.b64encode(BINARY) not in response.body
