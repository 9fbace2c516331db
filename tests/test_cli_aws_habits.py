"""AWS CLI habits: --secret-id, --output, --query, per-command usage; messages that say what happened."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config

from secretcache import RetryPolicy, SecretCache, SecretNotFoundError, SecretUnavailableError
from secretcache.__main__ import main
from tests.conftest import FAST_RETRY, REGION


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert isinstance(info.value.code, int)
    return info.value.code


def test_secret_id_option_as_aws_secretsmanager_spells_it(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--secret-id ID` works beside the positional id: get, describe, and check (repeatable)."""
    assert main(["get", "--secret-id", "plain"]) == 0
    assert main(["describe", "--secret-id", "plain", "--query", "name", "--output", "text"]) == 0
    assert capsys.readouterr().out == "pw-1\nplain\n"
    ids = ["blob", "--secret-id", "plain", "--secret-id", "app/db"]
    assert main(["check", *ids, "--query", "secrets[].secret_id"]) == 0
    assert json.loads(capsys.readouterr().out) == ["blob", "plain", "app/db"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["get", "plain", "--secret-id", "plain"], "give the secret id once"),
        (["describe"], "required: SECRET_ID (or --secret-id)"),
        (["check", "--json"], "required: SECRET_ID (or --secret-id)"),
        (["get", "plain", "--json", "--output", "text"], "--json and --output text"),
        (["get", "app/db", "--key", "port", "--output", "json"], "not allowed with argument"),
        (["get", "plain", "--query", "[?"], "not a JMESPath expression"),
        (["get", "plain", "--output", "yaml"], "invalid choice: 'yaml'"),
    ],
)
def test_usage_errors_name_the_problem(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Conflicting or missing ids and outputs, and a bad JMESPath, are usage errors (exit 2) of the command."""
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: secretcache {argv[0]} ")
    assert message in err


@pytest.mark.parametrize("command", ["get", "describe", "check"])
def test_unknown_option_prints_the_commands_usage(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option after the command shows that command's usage, not the top-level one."""
    assert _exit_code([command, "plain", "--verison-stage", "AWSPENDING"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: secretcache {command} ")
    assert err.rstrip("\n").endswith("error: unrecognized arguments: --verison-stage AWSPENDING")


def test_output_json_is_the_json_document(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--output json` prints what `--json` prints, for get, describe and check; `--output text` the lines."""
    for command in (["get", "plain"], ["describe", "plain"], ["check", "plain"]):
        assert main([*command, "--json"]) == 0
        assert main([*command, "--output", "json"]) == 0
        first, second = capsys.readouterr().out.split("\n}\n", 1)
        assert json.loads(first + "}") == json.loads(second)
    assert main(["check", "plain", "--output", "text"]) == 0
    assert capsys.readouterr().out.startswith("plain: ok\n")


def test_query_selects_from_the_json_document(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`--query` is JMESPath over the --json document: JSON by default, the AWS CLI's text with --output text."""
    assert main(["get", "plain", "--query", "version_stages"]) == 0
    assert json.loads(capsys.readouterr().out) == ["AWSCURRENT"]
    assert main(["get", "plain", "--query", "[name, value_type, secret_string]", "--output", "text"]) == 0
    assert capsys.readouterr().out == "plain\tstring\tpw-1\n"
    assert main(["describe", "plain", "--query", "secret_string", "--output", "text"]) == 0
    assert capsys.readouterr().out == "None\n"  # describe shows no value without --show-value
    query = "secrets[?status!='ok'].[secret_id, exit_code]"
    assert main(["check", "plain", "gone", "--query", query, "--output", "text"]) == 5
    assert capsys.readouterr().out == "gone\t5\n"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["get", "plain", "--query", "abs(secret_string)"], "JMESPathTypeError: function abs() expects number"),
        (["get", "plain", "--query", "foo(name)"], "UnknownFunctionError: Unknown function: foo()"),
        (["get", "plain", "--query", "[secret_string, `1`][?@ > `0`]"], "TypeError"),
        (["get", "plain", "--query", "[secret_string][::0]"], "ValueError"),
        (["describe", "plain", "--show-value", "--query", "keys(secret_string)"], "JMESPathTypeError: function keys()"),
        (["check", "plain", "--query", "length(@.exit_code)"], "JMESPathTypeError: function length()"),
    ],
)
def test_query_failing_on_the_document_is_one_line_without_the_value(
    cli_secrets: Any, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    """A --query that fails on the document (type, unknown function): one line, exit 2, no traceback, no value."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("secretcache: error: argument --query: cannot be applied to the document: ")
    assert reason in captured.err
    assert captured.err.count("\n") == 1
    assert "pw-1" not in captured.err


def test_missing_label_names_it(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A staging label no version carries: the error says which (CLI and library)."""
    assert main(["get", "plain", "--version-stage", "AWSPREVIOUS"]) == 1
    assert "has no version labelled AWSPREVIOUS" in capsys.readouterr().err
    with SecretCache(cli_secrets, retry=FAST_RETRY) as cache, pytest.raises(SecretNotFoundError) as info:
        cache.get_secret("plain", version_stage="AWSPREVIOUS")
    assert "the secret does not exist, or has no version labelled AWSPREVIOUS" in str(info.value)
    with SecretCache(cli_secrets, retry=FAST_RETRY) as cache, pytest.raises(SecretNotFoundError) as missing:
        cache.get_secret("nothing")  # AWSCURRENT: no hint about labels
    assert "labelled" not in str(missing.value)


def test_retries_exhausted_only_when_retries_happened(closed_endpoint: str) -> None:
    """One attempt: no "(retries exhausted)"; three attempts: it is said."""
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=closed_endpoint,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )
    messages = []
    for attempts in (1, 3):
        retry = RetryPolicy(attempts=attempts, initial_delay=0.0, max_delay=0.0, deadline=30.0)
        with SecretCache(client, retry=retry) as cache, pytest.raises(SecretUnavailableError) as info:
            cache.get_secret_string("down")
        messages.append(str(info.value))
    assert "retries exhausted" not in messages[0]
    assert messages[1].endswith("(retries exhausted)")
