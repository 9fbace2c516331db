"""Set-up shared by the AgentClient tests (``test_agent_client_*.py``): the stand-in server, a client of it, a cache.

The server is tests/agent_standin.py, which replays the AWS Secrets Manager Agent's answers byte
for byte; requests are counted there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from secretcache import RetryPolicy, SecretCache
from secretcache.agent import AgentClient
from tests.agent_standin import TOKEN, AgentStandIn, running

VALUE = "pw-7c1d-never-shown"
BINARY = b"\x00\xffbinary-7c1d\x80"
RETRY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, deadline=30.0)


@pytest.fixture
def standin() -> Iterator[AgentStandIn]:
    """A running stand-in knowing "app/db" (the string VALUE) and "app/key" (the bytes BINARY)."""
    with running() as server:
        server.add("app/db", VALUE)
        server.add("app/key", binary=BINARY)
        yield server


@pytest.fixture
def client(standin: AgentStandIn) -> Iterator[AgentClient]:
    """An AgentClient of ``standin`` with its token, closed after the test."""
    with AgentClient(standin.url, TOKEN, connect_timeout=1, read_timeout=2) as agent:
        yield agent


def cache_of(client: AgentClient, **kwargs: Any) -> SecretCache:
    """A SecretCache reading through ``client`` with the fast RETRY policy."""
    return SecretCache(client=client, retry=RETRY, **kwargs)
