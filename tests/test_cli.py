"""The command line: ``get`` for shell use, ``describe``, the AWS flags, output rules, and the ``demo`` story."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from secretcache.__main__ import main
from tests.conftest import REGION


def test_get_prints_the_value(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`secretcache get ID` prints the SecretString and exits 0."""
    assert main(["get", "plain"]) == 0
    assert capsys.readouterr().out == "pw-1\n"


def test_get_key_prints_one_json_field(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--key` prints one field; non-string fields are printed as JSON."""
    assert main(["get", "app/db", "--key", "username"]) == 0
    assert main(["get", "app/db", "--key", "port"]) == 0
    assert capsys.readouterr().out == "app\n5432\n"


def test_get_stage_and_version(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--version-stage` and `--version-id` select what is printed."""
    version = cli_secrets.put_secret_value(SecretId="plain", SecretString="pw-2", VersionStages=["AWSPENDING"])[
        "VersionId"
    ]
    assert main(["get", "plain", "--version-stage", "AWSPENDING"]) == 0
    assert main(["get", "plain", "--version-id", version]) == 0
    assert capsys.readouterr().out == "pw-2\npw-2\n"


def test_get_binary_writes_raw_bytes(cli_secrets: Any, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
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
    cli_secrets: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
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


def test_demo_tells_the_story(
    closed_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo runs offline whatever AWS_* says; one call for the stampede, the rotation, the outage, stats."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_endpoint)  # would send the calls past moto
    monkeypatch.setenv("AWS_PROFILE", "nowhere")  # would stop boto3 before the first call
    for name in ("AWS_DEFAULTS_MODE", "AWS_USE_FIPS_ENDPOINT", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.setenv(name, "bogus")  # each would stop botocore building the client
    assert main(["demo"]) == 0
    assert (os.environ["AWS_ENDPOINT_URL"], os.environ["AWS_PROFILE"]) == (closed_endpoint, "nowhere")
    out = capsys.readouterr().out
    assert "32 reads returned ['correct-horse-1']; GetSecretValue calls so far: 1" in out
    assert "a read returns 'correct-horse-1' at once and starts ONE background refresh" in out
    assert "the next read serves 'correct-horse-2'" in out
    assert "on_change fired: AWSCURRENT" in out
    assert "'correct-horse-2', while the background refresh fails" in out
    assert "1,000 more reads during the outage made 0 calls" in out
    assert "(failed fetches back off: a pause of 30 s, then 60 s, then 120 s after every further failure)\n" in out
    assert "its first attempt fails, and it returns the last good value at once:\n   'correct-horse-2'" in out
    assert "the retries failed too (3 attempts in all)" in out
    assert "SecretUnavailableError" in out
    assert "hits=" in out
    assert "Traceback" not in out


def test_demo_leaves_logging_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    """An in-process demo restores the secretcache logger's level and handlers when it ends."""
    logger = logging.getLogger("secretcache")
    marker = logging.NullHandler()
    level = logger.level
    logger.setLevel(logging.ERROR)  # not the demo's WARNING, nor what another test may have left
    logger.addHandler(marker)
    try:
        before = list(logger.handlers)
        assert main(["demo"]) == 0
        assert (logger.level, logger.handlers) == (logging.ERROR, before)
    finally:
        logger.removeHandler(marker)
        logger.setLevel(level)
    assert "Done:" in capsys.readouterr().out


def test_demo_without_moto_names_an_install_that_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without moto the demo exits 1 with one line naming the checkout install of the demo extra."""
    monkeypatch.setitem(sys.modules, "moto", None)  # makes `from moto import ...` raise ImportError
    assert main(["demo"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "pip install -e '.[demo]' in a secretcache checkout" in captured.err


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the installed version."""
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("secretcache ")


# -- errors and --verbose ----------------------------------------------------------------------


def test_unreachable_service_is_one_stderr_line_unless_verbose(closed_endpoint: str) -> None:
    """An outage prints exactly one error line; the library's warnings only with --verbose, the error once."""
    env = {**os.environ, "SECRETCACHE_RETRY_ATTEMPTS": "1"}
    quiet = run_cli("get", "cli/down", "--endpoint-url", closed_endpoint, env=env)
    assert quiet.returncode == 1
    assert quiet.stdout == ""
    assert quiet.stderr.count("\n") == 1
    assert quiet.stderr.startswith("secretcache: error: GetSecretValue for secret 'cli/down' failed")
    verbose = run_cli("--verbose", "get", "cli/down", "--endpoint-url", closed_endpoint, env=env)
    # The warning that the read fails would say what the error line says: it is left out.
    assert (verbose.returncode, verbose.stderr) == (1, quiet.stderr)
    env["SECRETCACHE_REPLICA_REGIONS"] = "us-west-2"
    replicas = run_cli("--verbose", "get", "cli/down", "--endpoint-url", closed_endpoint, env=env)
    assert replicas.returncode == 1
    lines = replicas.stderr.splitlines()
    assert lines[0].startswith(f"secretcache: WARNING: Secrets Manager in {REGION} is failing")
    assert lines[-1].startswith("secretcache: error: GetSecretValue for secret 'cli/down' failed")
    assert len(lines) == 2
    assert "Traceback" not in quiet.stderr + verbose.stderr + replicas.stderr


def test_secretcache_variables_configure_the_cli(
    cli_secrets: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI reads SECRETCACHE_* settings; an invalid one is a one-line error naming it, exit 1."""
    monkeypatch.setenv("SECRETCACHE_TTL", "soon")
    assert main(["get", "plain"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("secretcache: error: SECRETCACHE_TTL")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRETCACHE_TTL_OVERRIDES", "[" * 100_000),
        ("SECRETCACHE_MAX_SIZE", "²"),
        ("SECRETCACHE_MAX_SIZE", "9" * 5000),
    ],
)
@pytest.mark.parametrize("command", ["get", "describe", "check"])
def test_settings_past_the_parsers_limits_are_one_line(
    cli_secrets: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    name: str,
    value: str,
) -> None:
    """A setting past json's or int()'s limits (nesting depth, digits) is one line naming it, exit 1."""
    monkeypatch.setenv(name, value)
    assert main([command, "plain"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"secretcache: error: {name}")
    assert captured.err.count("\n") == 1


# -- --region, --profile, --endpoint-url ---------------------------------------------------------


def test_profile_and_region_flags(
    aws: None,
    aws_files: Callable[[str, str], None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--profile picks the profile's Region; --region overrides it and AWS_REGION, before or after the command."""
    for region in (REGION, "eu-west-1"):
        boto3.client("secretsmanager", region_name=region).create_secret(Name="where", SecretString=region)
    aws_files("[profile team]\nregion = eu-west-1\n", "[team]\naws_access_key_id = a\naws_secret_access_key = b\n")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert main(["get", "where", "--profile", "team"]) == 0
    assert main(["--profile", "team", "--region", REGION, "get", "where"]) == 0
    monkeypatch.setenv("AWS_REGION", REGION)
    assert main(["get", "where", "--region", "eu-west-1"]) == 0
    assert capsys.readouterr().out == f"eu-west-1\n{REGION}\neu-west-1\n"


def test_unknown_profile_is_one_line_exit_1(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown profile, from --profile or AWS_PROFILE, is a one-line configuration error (exit 1)."""
    assert main(["get", "plain", "--profile", "nope"]) == 1
    monkeypatch.setenv("AWS_PROFILE", "gone")
    assert main(["check", "plain"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "secretcache: error: the AWS profile 'nope' is not configured: check --profile or AWS_PROFILE, "
        "and AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE",
        "secretcache: error: the AWS profile 'gone' is not configured: check --profile or AWS_PROFILE, "
        "and AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE",
    ]


def credentials_from(profile: str, aws_files: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """The default profile's lines (its Region added) are the only credentials: no keys in the environment."""
    aws_files(f"[default]\nregion = {REGION}\n{profile}\n", "")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


def assert_set_up_error(capsys: pytest.CaptureFixture[str]) -> str:
    """Nothing on standard output, one line on standard error saying the client could not be set up."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("secretcache: error: cannot set up the Secrets Manager client: ")
    assert captured.err.count("\n") == 1
    return captured.err


@pytest.mark.parametrize("command", ["get", "describe", "check"])
def test_a_missing_credential_process_is_one_line(
    aws: None,
    aws_files: Callable[[str, str], None],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """A credential_process program that does not exist (run while the client is built): one line
    naming it, exit 1, no traceback."""
    missing = tmp_path / "not-there"
    credentials_from(f"credential_process = {missing}", aws_files, monkeypatch)
    assert main([command, "plain"]) == 1
    assert str(missing) in assert_set_up_error(capsys)


def test_a_credential_process_printing_no_json_is_one_line_without_its_output(
    aws: None,
    aws_files: Callable[[str, str], None],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A credential_process printing something that is not JSON (keys, say): a set-up error, exit 1,
    one line that quotes nothing it printed."""
    program = tmp_path / "prints-keys"
    program.write_text("#!/bin/sh\necho AKIA-printed-7f3e not json\n")
    program.chmod(0o755)
    credentials_from(f"credential_process = {program}", aws_files, monkeypatch)
    assert main(["get", "plain"]) == 1
    assert "AKIA-printed-7f3e" not in assert_set_up_error(capsys)


def test_a_missing_web_identity_token_file_is_access_denied(
    aws: None,
    aws_files: Callable[[str, str], None],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A web identity token file that does not exist (read at the first call): `get` prints one line
    naming it and exits 1, `check` reports access denied (6); no traceback."""
    missing = tmp_path / "no-token"
    role = "arn:aws:iam::123456789012:role/r"
    credentials_from(f"role_arn = {role}\nweb_identity_token_file = {missing}", aws_files, monkeypatch)
    assert main(["get", "plain"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        "secretcache: error: GetSecretValue for secret 'plain' failed: no usable AWS credentials"
    )
    assert str(missing) in captured.err
    assert captured.err.count("\n") == 1
    assert main(["check", "plain"]) == 6
    assert capsys.readouterr().out.startswith("plain: access denied: ")


def test_missing_region_names_the_flag(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without any Region the message tells a shell user what to pass or set, not to "pass a client"."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert main(["get", "plain"]) == 1
    assert capsys.readouterr().err == (
        "secretcache: error: no AWS Region: pass --region or set AWS_REGION (or configure a profile)\n"
    )


def test_endpoint_url_flag_overrides_the_environment(moto_server: str, closed_endpoint: str) -> None:
    """--endpoint-url wins over AWS_ENDPOINT_URL, as in the AWS CLI."""
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    admin.create_secret(Name="cli/flag", SecretString="by-flag")
    env = {**os.environ, "AWS_ENDPOINT_URL": closed_endpoint, "SECRETCACHE_RETRY_ATTEMPTS": "1"}
    result = run_cli("get", "cli/flag", "--endpoint-url", moto_server, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "by-flag\n", "")


@pytest.mark.parametrize("command", ["get", "describe", "check"])
def test_endpoint_port_out_of_range_is_a_client_setup_error(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An endpoint URL whose port is out of range, from --endpoint-url or AWS_ENDPOINT_URL: one line, exit 1."""
    assert main([command, "plain", "--endpoint-url", "http://127.0.0.1:99999"]) == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:70000")
    assert main([command, "plain"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    message = "secretcache: error: cannot set up the Secrets Manager client: Port out of range 0-65535\n"
    assert captured.err == message * 2


def test_empty_flag_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty --region, --profile or --endpoint-url is refused before any call (exit 2)."""
    for flag in ("--region", "--profile", "--endpoint-url"):
        with pytest.raises(SystemExit) as info:
            main(["get", "plain", flag, " "])
        assert info.value.code == 2
    assert "must not be empty" in capsys.readouterr().err


def test_demo_refuses_aws_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo runs locally, so AWS flags given with it are a usage error rather than ignored."""
    with pytest.raises(SystemExit) as info:
        main(["--region", REGION, "demo"])
    assert info.value.code == 2
    assert "do not apply" in capsys.readouterr().err


# -- --json, describe ----------------------------------------------------------------------------


def test_get_json_prints_metadata_and_value(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`get --json` prints name, ARN, version id, stages, ISO 8601 date and the value; binary as base64."""
    described = cli_secrets.describe_secret(SecretId="plain")
    assert main(["get", "plain", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "name": "plain",
        "arn": described["ARN"],
        "version_id": next(iter(described["VersionIdsToStages"])),
        "version_stages": ["AWSCURRENT"],
        "created_date": document["created_date"],
        "value_type": "string",
        "secret_string": "pw-1",
    }
    assert datetime.fromisoformat(document["created_date"]).utcoffset() == timedelta(0)
    assert main(["get", "blob", "--json"]) == 0
    binary = json.loads(capsys.readouterr().out)
    assert binary["value_type"] == "binary"
    assert base64.b64decode(binary["secret_binary_base64"]) == b"\x00\x01binary"
    assert "secret_string" not in binary


def test_get_json_and_key_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` and `--key` cannot be combined (usage error, exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(["get", "app/db", "--key", "username", "--json"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_describe_shows_the_value_only_when_asked(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`describe` prints metadata (lines or --json) and the value only with --show-value."""
    assert main(["describe", "plain"]) == 0
    assert main(["describe", "plain", "--json"]) == 0
    out = capsys.readouterr().out
    assert "name: plain\n" in out
    assert "version_stages: AWSCURRENT\n" in out
    assert "pw-1" not in out
    assert json.loads(out[out.index("{") :])["value_type"] == "string"
    assert main(["describe", "plain", "--json", "--show-value"]) == 0
    assert json.loads(capsys.readouterr().out)["secret_string"] == "pw-1"
    assert main(["describe", "blob", "--show-value"]) == 0
    encoded = base64.b64encode(b"\x00\x01binary").decode()
    assert f"secret_binary_base64: {encoded}\n" in capsys.readouterr().out


# -- a closed standard output --------------------------------------------------------------------


def _cli_process(argv: list[str], *, stdout: int, endpoint: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    command = [sys.executable, "-m", "secretcache", *argv]
    return subprocess.Popen(command, env=env, stdout=stdout, stderr=subprocess.PIPE)


@pytest.mark.parametrize(
    "argv",
    [["get", "ID"], ["get", "ID", "--json"], ["describe", "ID"], ["check", "ID", "--json"], ["demo"]],
    ids=" ".join,
)
def test_stdout_closed_before_the_first_write_exits_141_quietly(moto_server: str, argv: list[str]) -> None:
    """A command whose stdout pipe has no reader any more exits 141 with nothing on stderr: no traceback."""
    name = f"cli/pipe-{argv[0]}-{len(argv)}"
    boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server).create_secret(
        Name=name, SecretString="pw-pipe"
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command starts: its first write fails
    try:
        process = _cli_process([name if arg == "ID" else arg for arg in argv], stdout=write_end, endpoint=moto_server)
    finally:
        os.close(write_end)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (141, b"")


def test_reader_closing_mid_document_exits_141_quietly(moto_server: str) -> None:
    """A reader that takes one byte of a long --json document and closes the pipe: exit 141, stderr empty."""
    blob = bytes(range(256)) * 256  # 64 KiB, the most Secrets Manager holds: 87 KiB of base64
    boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server).create_secret(
        Name="cli/pipe-large", SecretBinary=blob
    )
    read_end, write_end = os.pipe()
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: a one-page pipe, whatever the system's default size
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    try:
        process = _cli_process(["get", "cli/pipe-large", "--json"], stdout=write_end, endpoint=moto_server)
    finally:
        os.close(write_end)
    with open(read_end, "rb", buffering=0) as reader:
        assert reader.read(1) == b"{"
    # The document is larger than the pipe can hold, so the command is still writing when it closes.
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (141, b"")


def test_broken_pipe_in_process_returns_141(cli_secrets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, a broken stdout makes main() return 141 and points that descriptor at devnull."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = io.TextIOWrapper(io.FileIO(write_end, "w"))
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["get", "plain"]) == 141
        stdout.write("after")
        stdout.flush()  # the descriptor now writes to devnull: no second BrokenPipeError
    finally:
        stdout.close()
    monkeypatch.setattr(sys, "stdout", _BrokenStdout())  # no fileno(): nothing to redirect
    assert main(["get", "plain"]) == 141


class _BrokenStdout(io.StringIO):
    """A replaced sys.stdout without a descriptor whose reader has gone away."""

    def write(self, _text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")
