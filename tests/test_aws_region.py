"""``AWS_REGION`` is honoured wherever the library builds a client, over ``AWS_DEFAULT_REGION``.

botocore reads ``AWS_REGION`` only inside Lambda; the AWS CLI v2 and the other SDKs read it
everywhere, so a shell or container with only ``AWS_REGION`` set must work.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from secretcache import SecretCache
from secretcache.__main__ import main
from secretcache._client import default_region
from tests.conftest import REGION

OTHER = "eu-west-1"


@pytest.fixture
def two_regions(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret 'where' in two Regions, its value naming the Region; no Region in the environment."""
    for region in (REGION, OTHER):
        boto3.client("secretsmanager", region_name=region).create_secret(Name="where", SecretString=region)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)


def test_cache_builds_its_client_for_aws_region_alone(two_regions: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """SecretCache() with only AWS_REGION set reads that Region (it failed with NoRegionError)."""
    monkeypatch.setenv("AWS_REGION", OTHER)
    assert default_region() == OTHER
    with SecretCache() as cache:
        assert cache.get_secret_string("where") == OTHER
        assert cache.client.meta.region_name == OTHER


def test_aws_region_wins_over_aws_default_region(two_regions: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the AWS CLI v2: AWS_REGION over AWS_DEFAULT_REGION, for the cache's own client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", OTHER)
    with SecretCache() as cache:
        assert cache.get_secret_string("where") == OTHER


def test_cli_reads_aws_region_alone(
    two_regions: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`secretcache get` with only AWS_REGION set, then with AWS_DEFAULT_REGION too; --region still wins."""
    monkeypatch.setenv("AWS_REGION", OTHER)
    assert main(["get", "where"]) == 0
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    assert main(["get", "where"]) == 0
    assert main(["get", "where", "--region", REGION]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (f"{OTHER}\n{OTHER}\n{REGION}\n", "")


def test_aws_region_wins_over_the_profile(
    two_regions: None,
    aws_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Environment over config file, as in the AWS CLI: AWS_REGION beats the profile's region."""
    aws_files("[profile team]\nregion = us-east-1\n", "[team]\naws_access_key_id = a\naws_secret_access_key = b\n")
    monkeypatch.setenv("AWS_REGION", OTHER)
    assert main(["get", "where", "--profile", "team"]) == 0
    assert capsys.readouterr().out == f"{OTHER}\n"


def test_an_empty_aws_region_is_no_region(two_regions: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_REGION="" is unset, as for the AWS CLI: botocore's chain decides."""
    monkeypatch.setenv("AWS_REGION", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", OTHER)
    assert default_region() == OTHER
