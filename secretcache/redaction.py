"""Keep secret values out of botocore's DEBUG logs.

At DEBUG level botocore logs whole request and response bodies (``botocore.endpoint``,
``botocore.parsers``), so an application that turns on debug logging writes every
``SecretString`` it reads, or writes, into its logs. Creating a :class:`~secretcache.SecretCache`
installs :class:`RedactingFilter` on those loggers, which masks the values of ``SecretString``
and ``SecretBinary`` in every record before any handler sees it. It costs nothing unless DEBUG
logging is on for botocore.

Opt out by setting ``SECRETCACHE_BOTOCORE_LOG_REDACTION=off`` before the first cache is created,
or by calling :func:`uninstall`.
"""

from __future__ import annotations

import logging
import os
import re
import threading

__all__ = ["LOGGERS", "RedactingFilter", "install", "installed", "uninstall"]

LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.awsrequest", "botocore.retryhandler")
"""The botocore loggers the filter is installed on (filters do not apply to child loggers)."""

REDACTED = "<redacted by secretcache>"

# A JSON string value ends at the first quote not escaped by a backslash. Inside a ``repr()`` of
# bytes the escapes are doubled; stopping at any unescaped quote still never stops early. A body
# cut inside the value (a proxy's, a dropped connection's) has no closing quote: the value runs
# to the end of the text, never to one of its own escaped quotes.
_JSON_VALUE = re.compile(r'("Secret(?:String|Binary)"\s*:\s*)"(?:[^"]|(?<=\\)")*(?:(?<!\\)"|\Z)')
_REPR_VALUE = re.compile(r"('Secret(?:String|Binary)'\s*:\s*)(?:b?'(?:[^']|(?<=\\)')*'|b?\"(?:[^\"]|(?<=\\)\")*\")")
_ENV = "SECRETCACHE_BOTOCORE_LOG_REDACTION"


def redact(text: str) -> str:
    """``text`` with the values of ``SecretString``/``SecretBinary`` replaced."""
    if "Secret" not in text:
        return text
    text = _JSON_VALUE.sub(rf'\1"{REDACTED}"', text)
    return _REPR_VALUE.sub(rf"\1'{REDACTED}'", text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secret values in a record's message (and lets it through)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secret values masked; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        cleaned = redact(message)
        if cleaned is not message and cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_filter = RedactingFilter()
_lock = threading.Lock()
_state = {"installed": False, "decided": False}


def install(*, force: bool = False) -> bool:
    """Install the filter on :data:`LOGGERS` unless opted out; idempotent. Returns whether active.

    Args:
        force: Install even when ``SECRETCACHE_BOTOCORE_LOG_REDACTION`` is ``off``.
    """
    with _lock:
        if _state["installed"]:
            return True
        if not force and _state["decided"]:
            return False
        _state["decided"] = True
        if not force and os.environ.get(_ENV, "").strip().lower() in ("off", "0", "false", "no"):
            return False
        for name in LOGGERS:
            logging.getLogger(name).addFilter(_filter)
        _state["installed"] = True
        return True


def uninstall() -> None:
    """Remove the filter; caches created later do not install it again (use ``install(force=True)``)."""
    with _lock:
        for name in LOGGERS:
            logging.getLogger(name).removeFilter(_filter)
        _state["installed"] = False
        _state["decided"] = True


def installed() -> bool:
    """Whether the filter is currently installed."""
    return _state["installed"]
