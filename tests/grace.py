"""Set-up shared by the rotation grace tests (``test_grace_*.py``): its numbers, a scripted server, a cache.

The factory tests (``test_grace_concurrency.py``, ``test_grace_opening.py``, ``test_grace_failures.py``)
import the fixture they use (``from tests.grace import cache as cache``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from secretcache import SecretCache
from secretcache.db import Failure, classify
from tests.conftest import FakeClock

GRACE = 5.0
POLLS = 20  # polls in one grace: one per 250 ms
THREADS = 8


def document(password: str) -> str:
    return json.dumps({"username": "app", "password": password, "host": "db.invalid", "port": 3306})


class Server:
    """A connect function for PyMySQL's keywords that raises PyMySQL's own errors, as a server would."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.down = False
        self.tried: list[str] = []

    def connect(self, **kwargs: Any) -> str:
        self.tried.append(kwargs["password"])
        if self.down:
            raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db.invalid'")
        if kwargs["password"] != self.password:
            raise pymysql.err.OperationalError(1045, "Access denied for user 'app'")
        return f"connection as {kwargs['password']}"


@pytest.fixture
def cache(client: Any, clock: FakeClock) -> SecretCache:
    return SecretCache(client, ttl=3600, clock=clock)


def refused(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(pymysql.err.OperationalError) as info:
        call()
    assert classify(info.value) is Failure.AUTH
    return info.value
