"""One cache per host, as users run it: ``uvicorn --workers 8`` reading through ``secretcache serve``.

Counted at Secrets Manager (moto's request recorder: the honest count of calls made by other
processes), never timed: with the server the host makes one call per secret per TTL, without it
one per worker. A rotation published through EventBridge -> SQS reaches the server's listener,
and every worker reads the new value once its own short TTL is over. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REGION, _free_port
from tests.serveproc import base_env, moto_api, recorded_calls, start_serve

pytestmark = pytest.mark.timeout(240)

WORKERS = 8
SECRET = "prod/fleet/db"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def moto(moto_server: str) -> str:
    """The session's moto server (its recorder, like moto's state, is one per process: reset by ``infrastructure``)."""
    return moto_server


def secrets_manager_calls(moto: str) -> int:
    """GetSecretValue and BatchGetSecretValue requests moto received since the recording started."""
    calls = recorded_calls(moto)
    return calls["GetSecretValue"] + calls["BatchGetSecretValue"]


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds`` (a watchdog, not a speed claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def digests(folder: Path) -> dict[str, str]:
    """What each worker last read (a digest per pid)."""
    return {path.name: path.read_text() for path in folder.iterdir() if path.suffix != ".tmp"}


def started(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, its output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )


def stopped(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group; SIGKILL it if it has not exited in 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def aws_env(moto: str) -> dict[str, str]:
    """The environment of every process: moto's endpoint, test credentials, the Region, no token."""
    return base_env(AWS_ENDPOINT_URL=moto, PYTHONPATH=str(ROOT))


@pytest.fixture
def infrastructure(moto: str) -> Iterator[dict[str, str]]:
    """A fresh secret and an EventBridge rule sending Secrets Manager events to an SQS queue."""
    moto_api(moto, "POST", "/moto-api/reset")
    kwargs: dict[str, Any] = {"endpoint_url": moto, "region_name": REGION}
    kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
    sm, sqs, events = (boto3.client(name, **kwargs) for name in ("secretsmanager", "sqs", "events"))
    arn = sm.create_secret(Name=SECRET, SecretString="password-1")["ARN"]
    queue = sqs.create_queue(QueueName="host-secret-changes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="secret-changes", EventPattern=json.dumps({"source": ["aws.secretsmanager"]}))
    events.put_targets(Rule="secret-changes", Targets=[{"Id": "queue", "Arn": queue_arn}])
    moto_api(moto, "POST", "/moto-api/recorder/reset-recording")
    moto_api(moto, "POST", "/moto-api/recorder/start-recording")
    try:
        yield {"arn": arn, "queue": queue}
    finally:
        moto_api(moto, "POST", "/moto-api/recorder/stop-recording")  # the recorder is one per process


def fleet(env: dict[str, str], folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """``uvicorn --workers 8`` serving tests/serve_fleet_app.py, each worker reporting to ``folder``."""
    folder.mkdir()
    env = {**env, "FLEET_DIR": str(folder)}
    command = [sys.executable, "-m", "uvicorn", "tests.serve_fleet_app:app", "--workers", str(WORKERS)]
    command += ["--host", "127.0.0.1", "--port", str(_free_port()), "--log-level", "warning"]
    return started(command, env, log)


def test_without_the_server_each_worker_calls_secrets_manager(
    moto: str, aws_env: dict[str, str], infrastructure: dict[str, str], tmp_path: Path
) -> None:
    """The baseline: 8 workers, each with its own cache, make 8 calls for one secret."""
    app = fleet({**aws_env, "FLEET_MODE": "direct"}, tmp_path / "workers", tmp_path / "fleet.log")
    try:
        wait_until(lambda: len(digests(tmp_path / "workers")) == WORKERS, "8 workers to read the secret")
        assert secrets_manager_calls(moto) == WORKERS
    finally:
        stopped(app)


def test_through_the_server_the_host_makes_one_call_and_a_rotation_reaches_every_worker(
    moto: str, aws_env: dict[str, str], infrastructure: dict[str, str], tmp_path: Path
) -> None:
    """8 workers reading through one ``secretcache serve``: 1 call for the host; an event reaches them all."""
    token = secrets.token_hex(32)
    args = ["--bind", "127.0.0.1", "--ttl", "3600", "--sqs-queue-url", infrastructure["queue"]]
    server = start_serve(args, {**aws_env, "AWS_TOKEN": token}, tmp_path)
    port = server.port
    app = None
    try:
        worker_env = {**aws_env, "AWS_TOKEN": token, "SECRETCACHE_AGENT_ENDPOINT": f"http://127.0.0.1:{port}"}
        worker_env.update(FLEET_MODE="server", FLEET_L1_TTL="1")
        app = fleet(worker_env, tmp_path / "workers", tmp_path / "fleet.log")
        wait_until(lambda: len(digests(tmp_path / "workers")) == WORKERS, "8 workers to read the secret")
        first = set(digests(tmp_path / "workers").values())
        assert len(first) == 1
        assert secrets_manager_calls(moto) == 1  # 8 workers, reading every 0.1 s, TTL 1 s: the server's one fetch

        kwargs: dict[str, Any] = {"endpoint_url": moto, "region_name": REGION}
        kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
        sm, events = boto3.client("secretsmanager", **kwargs), boto3.client("events", **kwargs)
        version = sm.put_secret_value(SecretId=SECRET, SecretString="password-2")["VersionId"]
        detail = {"name": SECRET, "labelUpdated": "AWSCURRENT", "versionId": version}
        events.put_events(
            Entries=[{"Source": "aws.secretsmanager", "DetailType": "Secret Label Updated",
                      "Detail": json.dumps(detail), "Resources": [infrastructure["arn"]]}]
        )  # fmt: skip
        # The server's TTL is an hour: only the event can bring the new version, then each
        # worker's own TTL (1 s) decides when it asks the server again.
        wait_until(
            lambda: (
                len(set(digests(tmp_path / "workers").values()) - first) == 1
                and not first & set(digests(tmp_path / "workers").values())
            ),
            "the rotation to reach every worker",
        )
        assert (
            secrets_manager_calls(moto) <= 3
        )  # the first fetch, and the listener's refetch (+1 if a read joined late)
    finally:
        if app is not None:
            stopped(app)
        assert server.stop() == 0
    assert token not in server.output()
    assert "password-" not in server.output() + (tmp_path / "fleet.log").read_text()
