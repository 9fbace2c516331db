"""Helpers shared by the replica Region tests (``test_regions_*.py``).

The fixtures ``replica`` and ``replica_calls`` live in ``conftest.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from secretcache import SecretCache
from tests.conftest import REGION, REPLICA_REGION, Calls, FakeClock
from tests.test_cache import make_cache

PRIMARY = REGION
REPLICA = REPLICA_REGION
THROTTLING = "ThrottlingException"


def create(admin: Any, name: str, value: str, *, replicated: bool = True) -> str:
    """Create a secret in the primary Region, replicated to ``REPLICA`` unless told; return its ARN."""
    arn: str = admin.create_secret(Name=name, SecretString=value)["ARN"]
    if replicated:
        admin.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": REPLICA}])
    return arn


def regional(client: Any, replica: Any, clock: FakeClock, **options: Any) -> SecretCache:
    """A cache over ``client`` failing over to ``replica``, on ``clock``, with the tests' defaults."""
    return make_cache(client, clock, replica_regions=[replica], **options)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """The records captured so far whose message holds ``text``."""
    return [record for record in caplog.records if text in record.getMessage()]


def sent_ids(client: Any) -> list[Any]:
    """The ``SecretId`` (or ``SecretIdList``) of every call ``client`` makes from now on."""
    seen: list[Any] = []
    Calls(client).add_fault(lambda _op, params: seen.append(params.get("SecretId", params.get("SecretIdList"))))
    return seen
