"""The command line: ``get`` for shell use and the ``demo`` story."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest

from secretcache.__main__ import main
from tests.conftest import REGION


@pytest.fixture
def secrets(aws: None) -> Any:
    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name="app/db", SecretString=json.dumps({"username": "app", "port": 5432}))
    client.create_secret(Name="plain", SecretString="pw-1")
    client.create_secret(Name="blob", SecretBinary=b"\x00\x01binary")
    return client


def test_get_prints_the_value(secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`secretcache get ID` prints the SecretString and exits 0."""
    assert main(["get", "plain"]) == 0
    assert capsys.readouterr().out == "pw-1\n"


def test_get_key_prints_one_json_field(secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--key` prints one field; non-string fields are printed as JSON."""
    assert main(["get", "app/db", "--key", "username"]) == 0
    assert main(["get", "app/db", "--key", "port"]) == 0
    assert capsys.readouterr().out == "app\n5432\n"


def test_get_stage_and_version(secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--version-stage` and `--version-id` select what is printed."""
    version = secrets.put_secret_value(SecretId="plain", SecretString="pw-2", VersionStages=["AWSPENDING"])["VersionId"]
    assert main(["get", "plain", "--version-stage", "AWSPENDING"]) == 0
    assert main(["get", "plain", "--version-id", version]) == 0
    assert capsys.readouterr().out == "pw-2\npw-2\n"


def test_get_binary_writes_raw_bytes(secrets: Any, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """Binary secrets are written to stdout as raw bytes."""
    assert main(["get", "blob"]) == 0
    assert capsysbinary.readouterr().out == b"\x00\x01binary"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["get", "missing"], "can't find"),
        (["get", "plain", "--key", "password"], "not valid JSON"),
        (["get", "app/db", "--key", "password"], "no JSON key 'password'"),
        (["get", ""], "non-empty"),
    ],
)
def test_get_failure_is_one_line_exit_1(
    secrets: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """A failed read prints one line on stderr, no traceback, and exits 1."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("secretcache: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert "pw-1" not in captured.err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Missing arguments are usage errors (argparse's exit status 2)."""
    with pytest.raises(SystemExit) as info:
        main(["get"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "secretcache", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_get_over_http_in_a_subprocess(moto_server: str) -> None:
    """`python -m secretcache get` works as a real process talking HTTP to a local endpoint."""
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    admin.create_secret(Name="cli/http", SecretString="over-the-wire")
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server}
    result = run_cli("get", "cli/http", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "over-the-wire\n", "")
    missing = run_cli("get", "cli/none", env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("secretcache: error: ")
    assert "Traceback" not in missing.stderr


def test_demo_tells_the_story(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo runs offline and shows one call for the stampede, the rotation, the outage and stats."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "32 reads returned ['correct-horse-1']; GetSecretValue calls so far: 1" in out
    assert "a read returns 'correct-horse-1' at once and starts ONE background refresh" in out
    assert "the next read serves 'correct-horse-2'" in out
    assert "on_change fired: AWSCURRENT" in out
    assert "'correct-horse-2', while the background refresh fails" in out
    assert "1,000 more reads during the outage made 0 calls" in out
    assert "SecretUnavailableError" in out
    assert "hits=" in out
    assert "Traceback" not in out


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the installed version."""
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("secretcache ")
