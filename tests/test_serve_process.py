"""``secretcache serve`` as a real process with moto behind it, read by real clients: curl, urllib, AgentClient.

One server process serves the whole module (started with a prefetch list, the SQS listener, the
metrics endpoint and DEBUG logging); its start is scripted so that the prefetch call is held at a
fault proxy while the test checks that the port does not accept yet. Secrets Manager calls are
counted with moto's recorder (the other process's calls, seen at moto), never timed.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from secretcache import SecretCache
from secretcache.agent import AgentClient
from tests.conftest import REGION, WATCHDOG
from tests.faultproxy import FaultProxy
from tests.listener import send
from tests.serveproc import (
    TOKEN,
    ServeProcess,
    accepts,
    base_env,
    free_port,
    moto_api,
    recorded_calls,
    start_serve,
    wait_ready,
)
from tests.test_events import change_event

ORDERS = "svc/orders-db-7f3a"  # prefetched; an id with slashes
BILLING = "svc/billing/api-key-2c9d"  # prefetched
ROTATED = "svc/rotated-5e1b"  # read, changed, invalidated through SQS
VALUES = {ORDERS: "orders-VALUE-91d2", BILLING: "billing-VALUE-4b7e", ROTATED: "rotated-VALUE-1-0c3a"}
NEW_ROTATED = "rotated-VALUE-2-77f1"
MISSING = "svc/missing-8a8a"
IDS = (ORDERS, BILLING, ROTATED, MISSING)


@dataclass
class Served:
    """The module's server and what its start showed."""

    server: ServeProcess
    moto: str
    admin: Any
    sqs: Any
    queue_url: str
    token_file: Path
    metrics_port: int
    refused_while_prefetching: bool
    calls_at_ready: Counter[str]

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{target}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Start moto, the secrets, a queue, then the server behind a proxy that holds its first call (the prefetch)."""
    workdir = tmp_path_factory.mktemp("serve")
    port = free_port()
    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto_server.start()
    endpoint = f"http://127.0.0.1:{port}"
    proxy = FaultProxy(endpoint)
    server: ServeProcess | None = None
    try:
        # Module scope runs before the autouse fixture that sets fake credentials: pass them.
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        # moto's state is one per process: a module set up again in this worker (tests of other
        # modules ran in between) finds the secrets it made before.
        moto_api(endpoint, "POST", "/moto-api/reset")
        admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint, **keys)
        for name, value in VALUES.items():
            admin.create_secret(Name=name, SecretString=value)
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint, **keys)
        queue_url = sqs.create_queue(QueueName="serve-changes")["QueueUrl"]
        token_file = workdir / "awssmatoken"
        token_file.write_text(TOKEN + "\n")  # as the Agent's installer writes it; the server trims it
        metrics_port = free_port()
        moto_api(endpoint, "POST", "/moto-api/recorder/reset-recording")
        moto_api(endpoint, "POST", "/moto-api/recorder/start-recording")
        gate = threading.Event()
        proxy.then(("hold", gate))
        env = base_env(AWS_TOKEN=f"file://{token_file}", AWS_ENDPOINT_URL_SQS=endpoint)
        args = ["--endpoint-url", proxy.url, "--prefetch", ORDERS, "--prefetch", BILLING, "--log-level", "debug"]
        args += ["--sqs-queue-url", queue_url, "--metrics-port", str(metrics_port)]
        server = start_serve(args, env, workdir, ready=False)
        deadline = time.monotonic() + WATCHDOG
        while not proxy.holding.is_set():
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, "the prefetch call never reached Secrets Manager"
            time.sleep(0.01)
        refused = not accepts(server.port)
        gate.set()
        wait_ready(server)
        calls = recorded_calls(endpoint)
        yield Served(server, endpoint, admin, sqs, queue_url, token_file, metrics_port, refused, calls)
    finally:
        if server is not None:
            server.stop()
        proxy.close()
        moto_api(endpoint, "POST", "/moto-api/recorder/stop-recording")  # the recorder is one per process
        moto_server.stop()


def get(served: Served, target: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    """One request on a new connection: status and body."""
    connection = served.server.connection()
    try:
        connection.request(method, target, headers=headers if headers is not None else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


AUTH = {"X-Aws-Parameters-Secrets-Token": TOKEN}


def test_prefetch_is_loaded_before_the_port_accepts(served: Served) -> None:
    """The prefetch list costs one BatchGetSecretValue call, made while the port still refuses connections."""
    assert served.refused_while_prefetching
    assert served.calls_at_ready == Counter({"BatchGetSecretValue": 1})
    before = recorded_calls(served.moto)  # the module's other tests may have run first (xdist's worksteal)
    status, body = get(served, f"/secretsmanager/get?secretId={ORDERS}", AUTH)
    assert (status, json.loads(body)["SecretString"]) == (200, VALUES[ORDERS])
    assert recorded_calls(served.moto) == before  # a hit: no call


def _curl(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],  # noqa: S607 - bash from PATH, as a user's shell
        capture_output=True,
        text=True,
        timeout=WATCHDOG,
        check=False,
    )


def test_curl_with_the_agent_documentation_command_lines(served: Served) -> None:
    """The Agent README's curl lines (token file and port adapted) read a secret, by query and by path."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed") if not _ci() else pytest.fail("curl is needed under CI")
    port, token_file = served.server.port, served.token_file
    readme = (
        f'curl -v -H \\\n    "X-Aws-Parameters-Secrets-Token: $(<{token_file})" \\\n'
        f"    'http://localhost:{port}/secretsmanager/get?secretId={BILLING}'; \\\n    echo\n"
    )
    result = _curl(readme)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["SecretString"] == VALUES[BILLING]
    assert "< HTTP/1.1 200 OK" in result.stderr
    # The refreshNow example (its README copy lacks the "; " before echo, which would make "echo" a second URL).
    refresh = (
        f'curl -v -H \\\n"X-Aws-Parameters-Secrets-Token: $(<{token_file})" \\\n'
        f"'http://localhost:{port}/secretsmanager/get?secretId={BILLING}&refreshNow=true'; \\\necho\n"
    )
    result = _curl(refresh)
    assert json.loads(result.stdout)["Name"] == BILLING
    by_path = f"curl -s -H \"X-Aws-Parameters-Secrets-Token: $(<{token_file})\" 'http://localhost:{port}/v1/{ORDERS}'"
    assert json.loads(_curl(by_path).stdout)["SecretString"] == VALUES[ORDERS]


def _ci() -> bool:
    import os

    return os.environ.get("CI") == "true"


def test_urllib_request_reads_a_secret_and_sees_errors(served: Served) -> None:
    """Python's urllib.request gets the GetSecretValue body, and an HTTPError with the Agent's status for errors."""
    request = urllib.request.Request(served.url(f"/secretsmanager/get?secretId={ORDERS}"), headers=AUTH)  # noqa: S310
    with urllib.request.urlopen(request, timeout=WATCHDOG) as response:  # noqa: S310 - loopback URL
        body = json.load(response)
    assert (body["Name"], body["SecretString"], body["VersionStages"]) == (ORDERS, VALUES[ORDERS], ["AWSCURRENT"])
    request = urllib.request.Request(served.url(f"/secretsmanager/get?secretId={MISSING}"), headers=AUTH)  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=WATCHDOG)  # noqa: S310 - loopback URL
    assert info.value.code == 404  # moto's status for it (AWS's is 400): passed through as it came
    assert json.loads(info.value.read())["__type"] == "ResourceNotFoundException"


def test_agent_client_inside_a_secret_cache(served: Served) -> None:
    """SecretCache(client=AgentClient(...)) reads through the server; refresh() reaches it as a forced read."""
    with AgentClient(f"http://127.0.0.1:{served.server.port}", TOKEN) as client, SecretCache(client) as cache:
        assert cache.get_secret_string(BILLING) == VALUES[BILLING]
        before = recorded_calls(served.moto)["GetSecretValue"]
        assert cache.refresh(BILLING).secret_string == VALUES[BILLING]
        assert recorded_calls(served.moto)["GetSecretValue"] == before + 1


@pytest.mark.parametrize(
    ("method", "target", "headers", "status", "body"),
    [
        ("GET", f"/secretsmanager/get?secretId={ORDERS}", {}, 403, b"Bad Token"),
        (
            "GET",
            f"/secretsmanager/get?secretId={ORDERS}",
            {"X-Aws-Parameters-Secrets-Token": "wrong"},
            403,
            b"Bad Token",
        ),
        ("GET", f"/secretsmanager/get?secretId={ORDERS}", {**AUTH, "X-Forwarded-For": "10.0.0.1"}, 400, b"Forwarded"),
        ("POST", f"/secretsmanager/get?secretId={ORDERS}", AUTH, 405, b"Not allowed"),
        ("GET", "/secretsmanager/list", AUTH, 404, b"Not found"),
        ("GET", f"/secretsmanager/get?secretId={ORDERS}&foo=1", AUTH, 400, b"unknown parameter: foo"),
        ("GET", "/secretsmanager/get?versionStage=AWSCURRENT", AUTH, 400, b"missing parameter secretId"),
        ("GET", f"/secretsmanager/get?secretId={ORDERS}&refreshNow=maybe", AUTH, 400, b"invalid refreshNow value"),
        ("GET", "/ping", {}, 200, b"healthy"),
    ],
)
def test_error_rows_through_the_server(
    served: Served, method: str, target: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    """Each row of the protocol's table: the Agent's status and body, over a real connection."""
    assert get(served, target, headers, method) == (status, body)


def test_path_style_with_slashes_and_the_vault_header(served: Served) -> None:
    """/v1/<id with slashes> reads the secret; X-Vault-Token carries the token too."""
    status, body = get(served, f"/v1/{BILLING}", {"X-Vault-Token": TOKEN})
    assert (status, json.loads(body)["SecretString"]) == (200, VALUES[BILLING])


def test_metrics_endpoint_serves_secretcache_metrics(served: Served) -> None:
    """After reads, the metrics port serves secretcache_* series, and no secret value or token."""
    assert get(served, f"/secretsmanager/get?secretId={ORDERS}", AUTH)[0] == 200
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=WATCHDOG) as response:
        scrape = response.read().decode()
    reads = [line for line in scrape.splitlines() if line.startswith("secretcache_reads")]
    assert reads, scrape[:2000]
    assert not any(value in scrape for value in VALUES.values())
    assert TOKEN not in scrape


def test_a_change_event_on_the_queue_invalidates(served: Served) -> None:
    """A Secrets Manager change event sent to the queue makes the server serve the new value before its TTL."""
    target = f"/secretsmanager/get?secretId={ROTATED}"
    assert json.loads(get(served, target, AUTH)[1])["SecretString"] == VALUES[ROTATED]
    served.admin.put_secret_value(SecretId=ROTATED, SecretString=NEW_ROTATED)
    assert json.loads(get(served, target, AUTH)[1])["SecretString"] == VALUES[ROTATED]  # cached, TTL 300 s
    send(served.sqs, served.queue_url, change_event(ROTATED))
    deadline = time.monotonic() + WATCHDOG
    while json.loads(get(served, target, AUTH)[1])["SecretString"] != NEW_ROTATED:
        assert time.monotonic() < deadline, "the change event never invalidated the secret"
        time.sleep(0.05)


def test_binary_secret_is_base64(served: Served) -> None:
    """A binary secret comes back as base64 SecretBinary, as GetSecretValue returns it."""
    served.admin.create_secret(Name="svc/blob-3d3d", SecretBinary=b"\x00\x01blob")
    status, body = get(served, "/secretsmanager/get?secretId=svc/blob-3d3d", AUTH)
    assert (status, base64.b64decode(json.loads(body)["SecretBinary"])) == (200, b"\x00\x01blob")


def test_start_line_and_no_token_value_or_id_in_the_output(served: Served) -> None:
    """At DEBUG, the output has one INFO start line (port, Region, TTL) and never the token, a value or an id."""
    for target in (f"/secretsmanager/get?secretId={MISSING}", f"/v1/{ORDERS}?refreshNow=true"):
        get(served, target, AUTH)
    get(served, "/ping", {"X-Aws-Parameters-Secrets-Token": TOKEN + "-wrong"})
    output = served.server.output()
    starts = [line for line in output.splitlines() if "secretcache serve listening on" in line]
    assert len(starts) == 1, output
    assert f"127.0.0.1:{served.server.port}" in starts[0]
    assert " INFO " in starts[0]
    assert "Region us-east-1" in starts[0]
    assert "TTL 300 s" in starts[0]
    assert " DEBUG " in output  # DEBUG really is on
    assert TOKEN not in output
    assert not [value for value in (*VALUES.values(), NEW_ROTATED) if value in output]
    assert not [secret_id for secret_id in IDS if secret_id in output], output
