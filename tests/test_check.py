"""``secretcache check``: can this identity read each secret, and may it batch? One exit code per outcome."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import enable_iam_authentication

from secretcache.__main__ import main
from tests.conftest import REGION, Calls


@pytest.fixture
def hook_clients(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[Any], object]], None]:
    """Run a function on every client the CLI builds (to register botocore event hooks on it)."""

    from secretcache import _cli  # imported here so that the other tests run without it

    def install(hook: Callable[[Any], object]) -> None:
        build = _cli.make_client

        def hooked(**kwargs: Any) -> Any:
            client = build(**kwargs)
            hook(client)
            return client

        monkeypatch.setattr(_cli, "make_client", hooked)

    return install


def _aws_shaped_denial(response_dict: dict[str, Any], **_: Any) -> None:
    """moto's IAM check answers this JSON API with an XML error; rewrite it as the JSON error AWS sends."""
    body = response_dict["body"]
    if response_dict["status_code"] == 403 and b"<Code>AccessDenied</Code>" in body:
        found = re.search(rb"<Message>(.*?)</Message>", body)
        message = found.group(1).decode() if found else "access denied"
        response_dict["body"] = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()


def test_check_all_readable(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Readable secrets and an allowed batch: one line each, exit 0, no value printed."""
    assert main(["check", "plain", "app/db", "plain"]) == 0
    assert capsys.readouterr().out == (
        "plain: ok\napp/db: ok\nBatchGetSecretValue: allowed: 2 of 2 secret(s) returned\n"
    )


def test_check_exit_code_per_outcome(
    cli_secrets: Any, hook_clients: Callable[[Callable[[Any], object]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Not found exits 5, cannot decrypt 7, invalid id 8; with several outcomes the highest code wins."""

    def locked(operation: str, params: dict[str, Any]) -> None:
        if operation == "GetSecretValue" and params["SecretId"] == "app/db":
            error = {"Error": {"Code": "DecryptionFailure", "Message": "KMS said no"}}
            raise ClientError(error, operation)  # type: ignore[arg-type]

    hook_clients(lambda client: Calls(client).add_fault(locked))
    assert main(["check", "plain", "missing"]) == 5
    assert main(["check", "app/db"]) == 7
    assert main(["check", ""]) == 8
    assert main(["check", "missing", "app/db", "plain"]) == 7
    out = capsys.readouterr().out
    assert "missing: not found: GetSecretValue for secret 'missing' failed: ResourceNotFoundException" in out
    assert "app/db: cannot decrypt: GetSecretValue for secret 'app/db' failed: DecryptionFailure: KMS said no" in out
    assert ": invalid: secret_id must be a non-empty secret name or ARN\n" in out
    assert "BatchGetSecretValue: skipped: no valid secret id to try it with\n" in out
    assert "pw-1" not in out
    assert '"username"' not in out


def test_check_access_denied_and_refused_batch_under_iam(
    cli_secrets: Any,
    aws_files: Callable[[str, str], None],
    hook_clients: Callable[[Callable[[Any], object]], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under IAM: GetSecretValue alone is ok, batch refused (exit 0; 3 with --require-batch); no access is 6."""
    iam = boto3.client("iam", region_name=REGION)
    allow_get = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    credentials = ""
    for user, statements in (("reader", [allow_get]), ("nobody", [])):
        iam.create_user(UserName=user)
        if statements:
            document = json.dumps({"Version": "2012-10-17", "Statement": statements})
            iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=document)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        credentials += f"[{user}]\naws_access_key_id = {key['AccessKeyId']}\n"
        credentials += f"aws_secret_access_key = {key['SecretAccessKey']}\n"
    aws_files("", credentials)
    hook_clients(lambda client: client.meta.events.register("before-parse.secrets-manager.*", _aws_shaped_denial))
    with enable_iam_authentication():
        assert main(["check", "plain", "app/db", "--profile", "reader"]) == 0
        assert main(["check", "plain", "--profile", "reader", "--require-batch"]) == 3
        assert main(["check", "plain", "--profile", "nobody"]) == 6
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["plain: ok", "app/db: ok"]
    assert lines[2].startswith("BatchGetSecretValue: refused: BatchGetSecretValue for secret 'plain, app/db' failed: ")
    assert "not authorized to perform: secretsmanager:BatchGetSecretValue" in lines[2]
    assert lines[2].endswith("; prefetch() reads one secret at a time instead")
    assert lines[5].startswith("plain: access denied: GetSecretValue for secret 'plain' failed: AccessDeniedException")
    assert len(lines) == 7


def test_check_unavailable_exits_4(
    closed_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreachable service is "unavailable" (exit 4, even with --require-batch); the batch "failed"."""
    monkeypatch.setenv("SECRETCACHE_RETRY_ATTEMPTS", "1")
    assert main(["check", "down", "--endpoint-url", closed_endpoint, "--require-batch"]) == 4
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("down: unavailable: GetSecretValue for secret 'down' failed: Could not connect")
    assert lines[1].startswith("BatchGetSecretValue: failed: ")
    assert len(lines) == 2


def test_check_json_document(cli_secrets: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`check --json` prints one JSON document with each id's status and exit code, never a value."""
    assert main(["check", "plain", "missing", "--json"]) == 5
    out = capsys.readouterr().out
    assert "pw-1" not in out
    document = json.loads(out)
    assert document["exit_code"] == 5
    ok, missing = document["secrets"]
    assert (ok["secret_id"], ok["status"], ok["exit_code"]) == ("plain", "ok", 0)
    assert ok["arn"] == cli_secrets.describe_secret(SecretId="plain")["ARN"]
    assert (missing["secret_id"], missing["status"], missing["exit_code"]) == ("missing", "not_found", 5)
    assert "ResourceNotFoundException" in missing["error"]
    assert document["batch"] == {
        "operation": "BatchGetSecretValue",
        "status": "allowed",
        "secret_ids": ["plain", "missing"],
        "detail": "1 of 2 secret(s) returned",
    }


def test_check_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --help` lists the exit status table."""
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    for line in (
        "  0  every secret can be read",
        "  3  BatchGetSecretValue refused",
        "  4  unavailable",
        "  5  not found",
        "  6  access denied",
        "  7  cannot decrypt",
        "  8  invalid id",
    ):
        assert line in out
