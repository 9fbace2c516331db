"""The command's output edges: a standard output that cannot be written, and ids that are not plain.

A failure to write is one line on standard error and exit 74, for every command, never a
traceback; ``check`` lines show an id that is not a plain name or ARN quoted and escaped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest

from secretcache.__main__ import main
from tests.conftest import REGION

VALUE = "pw-output-edge"

COMMANDS = [
    ["get", "ID"],
    ["get", "ID", "--json"],
    ["get", "BLOB"],
    ["describe", "ID"],
    ["check", "ID"],
    ["check", "ID", "--json"],
    ["demo"],
]


@pytest.fixture
def served(moto_server: str) -> dict[str, str]:
    """A string and a binary secret on the moto server; the environment a command needs to read them."""
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    for name, kwargs in (("cli/out", {"SecretString": VALUE}), ("cli/out-blob", {"SecretBinary": VALUE.encode()})):
        with contextlib.suppress(admin.exceptions.ResourceExistsException):  # the server outlives a test
            admin.create_secret(Name=name, **kwargs)  # type: ignore[arg-type]
    return {**os.environ, "AWS_ENDPOINT_URL": moto_server, "SECRETCACHE_RETRY_ATTEMPTS": "1"}


def _argv(argv: list[str]) -> list[str]:
    names = {"ID": "cli/out", "BLOB": "cli/out-blob"}
    return [sys.executable, "-m", "secretcache", *(names.get(arg, arg) for arg in argv)]


def _assert_one_error_line(stderr: bytes, reason: str) -> None:
    text = stderr.decode()
    assert text == f"secretcache: error: cannot write to standard output: {reason}\n"
    assert VALUE not in text


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_closed_stdout_is_one_line_exit_74(served: dict[str, str], argv: list[str]) -> None:
    """`secretcache ... >&-`: exit 74, one stderr line (was an AttributeError traceback)."""
    shell = ["/bin/sh", "-c", 'exec "$0" "$@" >&-', *_argv(argv)]
    result = subprocess.run(shell, env=served, capture_output=True, timeout=60, check=False)
    assert result.returncode == 74
    assert result.stderr == b"secretcache: error: standard output is closed: there is nowhere to write to\n"


def test_closed_stdout_and_stderr_exit_74_silently(served: dict[str, str]) -> None:
    """With standard error closed too, nothing is written anywhere and the status still says it."""
    shell = ["/bin/sh", "-c", 'exec "$0" "$@" >&- 2>&-', *_argv(["check", "ID"])]
    result = subprocess.run(shell, env=served, capture_output=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (74, b"", b"")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [*COMMANDS, ["--version"], ["check", "--help"]], ids=" ".join)
def test_full_device_is_one_line_exit_74(served: dict[str, str], argv: list[str]) -> None:
    """`secretcache ... > /dev/full`: exit 74 and one line (was an OSError traceback; check exited 1)."""
    with open("/dev/full", "wb") as full:
        result = subprocess.run(_argv(argv), env=served, stdout=full, stderr=subprocess.PIPE, timeout=60, check=False)
    assert result.returncode == 74
    _assert_one_error_line(result.stderr, os.strerror(28))


@pytest.mark.parametrize(
    ("document", "env"),
    [('{"k": "pw-output-edge\\ud800"}', {}), ('{"k": "pw-output-edge\u00e9"}', {"PYTHONIOENCODING": "ascii"})],
    ids=["lone-surrogate", "ascii-stdout"],
)
def test_text_the_output_encoding_cannot_hold_is_one_line_exit_74(
    served: dict[str, str], document: str, env: dict[str, str]
) -> None:
    """cli.md: text standard output's encoding cannot hold is exit 74, one line naming UnicodeEncodeError, no value."""
    admin = boto3.client("secretsmanager", region_name=REGION, endpoint_url=served["AWS_ENDPOINT_URL"])
    name = f"cli/out-enc-{len(env)}"
    with contextlib.suppress(admin.exceptions.ResourceExistsException):  # the server outlives a test
        admin.create_secret(Name=name, SecretString=document)
    argv = [sys.executable, "-m", "secretcache", "get", name, "--key", "k"]
    result = subprocess.run(argv, env={**served, **env}, capture_output=True, timeout=60, check=False)
    assert result.returncode == 74
    text = result.stderr.decode()
    assert text.startswith("secretcache: error: cannot write to standard output: UnicodeEncodeError")
    assert text.count("\n") == 1
    assert VALUE not in text


def test_in_process_closed_stdout_returns_74(
    cli_secrets: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() with sys.stdout None returns 74 and writes its line to stderr, never to a None stdout."""
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["get", "plain"]) == 74
    assert capsys.readouterr().err.endswith("standard output is closed: there is nowhere to write to\n")


# -- ids in human-readable lines ---------------------------------------------------------------


def test_check_lines_escape_ids(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An id holding a newline cannot forge a status line, nor an ESC sequence reach the terminal."""
    forged = "x\nplain: ok"
    painted = "\x1b[2J\x1b[31mplain"
    assert main(["check", forged, painted, "plain"]) == 8
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        f"{forged!r}: invalid: secret_id has a control character at position 1; names and ARNs never do",
        f"{painted!r}: invalid: secret_id has a control character at position 0; names and ARNs never do",
        "plain: ok",
    ]
    assert not any("\x1b" in line for line in lines)


def test_check_names_an_empty_id(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`check ""` prints a line that shows the empty id, not one starting with a bare colon."""
    assert main(["check", "", "plain"]) == 8
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("'': invalid: ")


def test_error_line_escapes_control_characters(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`get` of an id with ESC: the one error line holds no raw control character."""
    assert main(["get", "a\x1b[2Jb"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "\x1b" not in err


def test_verbose_log_lines_are_one_escaped_line(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """With -v, a library log line holding a newline or ESC (say, from a service message) stays one line."""
    from secretcache._cli import _output  # the -v set-up main() runs each command under

    with _output(True):
        logging.getLogger("secretcache").warning("service said: %s", "x\nsecretcache: error: forged\x1b[2J")
    err = capsys.readouterr().err
    assert err == "secretcache: WARNING: service said: x\\nsecretcache: error: forged\\x1b[2J\n"
