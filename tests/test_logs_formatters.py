"""Structured logs through real formatters: the ``extra`` fields arrive as JSON keys.

Powertools' Logger (set up for the library's loggers as its docs say) and a minimal stdlib JSON
formatter; the loggers they rewire are put back as they were.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from secretcache.events import invalidate_from_event
from tests.conftest import Calls, FakeClock, quiescent, wait_until
from tests.leaks import ExtraAsJson
from tests.logs import MARKER, RETRY
from tests.test_cache import make_cache
from tests.test_events import change_event


def provoke(client: Any, admin: Any, calls: Calls, clock: FakeClock, logged: Callable[[], bool]) -> None:
    """An invalidation, a change event and an outage served stale, on ``app/key``.

    The outage's lines are logged by the fetch's own thread once its retries end, just after
    the fetch leaves the table (what ``quiescent`` waits for): ``logged`` says they are out.
    """
    admin.create_secret(Name="app/key", SecretString=f"{MARKER}-1")
    cache = make_cache(client, clock, retry=RETRY)
    cache.get_secret_string("app/key")
    invalidate_from_event(cache, change_event("app/key"))
    cache.get_secret_string("app/key")
    outage = calls.fail_with("ThrottlingException")
    clock.advance(61)
    assert cache.get_secret_string("app/key") == f"{MARKER}-1"
    quiescent(cache)  # the reader got the value at the first failed attempt; the retries end behind it
    wait_until(logged)
    outage()
    cache.close()


@pytest.fixture
def loggers() -> Iterator[Callable[[str], logging.Logger]]:
    """Hands out loggers by name and puts each back as it was: handlers, level, propagation, attributes.

    Powertools marks the logger of its service as configured once per process and rewires the
    ``secretcache`` logger in ``copy_config_to_registered_loggers``; it adds filters to the root
    handlers too. All of that is undone, so other tests find the loggers as they were.
    """
    saved: list[tuple[logging.Logger, dict[str, Any]]] = []
    root_filters = [(handler, list(handler.filters)) for handler in logging.root.handlers]

    def get(name: str) -> logging.Logger:
        logger = logging.getLogger(name)
        saved.append((logger, {**vars(logger), "handlers": list(logger.handlers)}))
        return logger

    try:
        yield get
    finally:
        for logger, attributes in reversed(saved):
            for name in set(vars(logger)) - set(attributes):
                delattr(logger, name)
            vars(logger).update(attributes)
            logger.setLevel(logger.level)  # drops the level cache of every logger, built under the test's levels
        for handler, filters in root_filters:
            handler.filters[:] = filters


@pytest.mark.parametrize("formatter", ["powertools", "stdlib"])
def test_fields_reach_a_json_formatter_as_keys(
    formatter: str, client: Any, admin: Any, calls: Calls, clock: FakeClock, loggers: Callable[[str], logging.Logger]
) -> None:
    """Powertools Logger (set up for the library's loggers as its docs say) or a stdlib formatter: JSON keys."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    library = loggers("secretcache")
    if formatter == "powertools":
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

        service = "secretcache-test-logs"
        loggers(service)
        source = Logger(service=service, level="DEBUG", logger_handler=handler)
        copy_config_to_registered_loggers(source_logger=source, include={"secretcache"})
    else:
        handler.setFormatter(ExtraAsJson())
        library.addHandler(handler)
        library.setLevel(logging.DEBUG)
    provoke(client, admin, calls, clock, logged=lambda: "serving the cached" in stream.getvalue())
    documents = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert documents
    assert all(document["operation"] for document in documents)
    by_message = {document["message"]: document for document in documents}
    stale = next(document for message, document in by_message.items() if message.startswith("serving the cached"))
    assert stale["secret_name"] == "app/key"
    assert stale["error_type"] == "ThrottlingException"
    assert stale["attempt"] == 3
    assert stale["operation"] == "GetSecretValue"
    assert isinstance(stale["version_id"], str)
    event = by_message["invalidated 'app/key' after a change event"]
    assert (event["operation"], event["secret_name"]) == ("event", "app/key")
    assert MARKER not in stream.getvalue()
