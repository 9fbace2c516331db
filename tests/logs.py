"""Record checks shared by the structured-log tests (``test_logs_*.py``)."""

from __future__ import annotations

import logging

from secretcache import RetryPolicy
from secretcache._logs import FIELDS
from tests.leaks import record_leaks

MARKER = "sk_live_structured-logs-marker"  # part of every secret value: must reach no record
RETRY = RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, failure_backoff=1.0, max_failure_backoff=8.0)


class Records(logging.Handler):
    """Keeps every record that reaches it, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, fragment: str) -> list[logging.LogRecord]:
        """The records whose message contains ``fragment``."""
        return [record for record in list(self.records) if fragment in record.getMessage()]


def fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


def expect(records: Records, fragment: str, **wanted: object) -> None:
    """At least one record's message contains ``fragment``, and every such record has the ``wanted`` fields."""
    found = records.about(fragment)
    assert found, f"no record says {fragment!r}"
    for record in found:
        assert fields(record).items() >= wanted.items(), (record.getMessage(), fields(record))


def assert_well_formed(records: list[logging.LogRecord], secret_ids: list[str]) -> None:
    """Facts on every record, the right ``secret_name`` on every record about one secret, no value anywhere.

    "Anywhere" is what :func:`tests.leaks.record_leaks` searches: message, every attribute with
    exception chains, the traceback text and the output of a JSON formatter and the library's own.
    """
    for record in records:
        assert record.name == "secretcache" or record.name.startswith("secretcache.")
        facts, message = fields(record), record.getMessage()
        assert isinstance(facts.get("operation"), str), message
        assert facts["operation"], message
        assert all(isinstance(facts.get(name, ""), str) for name in ("secret_name", "version_id", "error_type"))
        attempt = facts.get("attempt", 1)
        assert isinstance(attempt, int), message
        assert attempt >= 1, message
        if record.levelno >= logging.WARNING or record.exc_info:
            assert "error_type" in facts, message
        named = [secret_id for secret_id in secret_ids if repr(secret_id) in message]
        if named:
            assert facts.get("secret_name") in named, (message, facts)
    assert record_leaks(records, MARKER) == []
