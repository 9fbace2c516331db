"""What botocore does inside one call, read from outside: its HTTP attempts, and where its raw errors come from.

botocore gives no hook around its parser nor its credential providers, and retries HTTP attempts
inside one call. The fetcher (:mod:`secretcache._fetcher`) needs to know:

- when an attempt failed transiently, so a reader holding a value it may serve stops waiting
  (:func:`watch_attempts` registers a ``needs-retry`` handler that tells the fetch in progress,
  :data:`ATTEMPT`);
- whether a raw exception (``ValueError``, ``OSError``...) was raised by botocore's parser or by a
  credential provider rather than by a hook or our own code: told by the modules its traceback
  runs through (:func:`raised_parsing`, :func:`raised_reading_credentials`).
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, TypeVar

from secretcache._error_map import is_transient, transient_answer

__all__ = [
    "ATTEMPT",
    "PARSE_ERRORS",
    "provider_of",
    "raised_parsing",
    "raised_reading_credentials",
    "watch_attempts",
]

_WATCH_ID = "secretcache-attempt-failed"

ATTEMPT = threading.local()
"""The :class:`Fetch` whose call the current thread is making (``fetch``), for :func:`_attempt_failed`."""


def _attempt_failed(response: Any = None, caught_exception: BaseException | None = None, **_: Any) -> None:
    """Handle botocore's ``needs-retry`` event: tell the fetch in progress that an HTTP attempt failed transiently.

    A client with botocore's own retries on makes several HTTP attempts per call of ours; the
    first one failing is when a reader holding a value it may serve stops waiting. Only
    observes: it returns ``None``, so botocore's retry decision is its own.
    """
    fetch = getattr(ATTEMPT, "fetch", None)
    if fetch is None or fetch.falter is None:
        return
    if caught_exception is not None:
        failed = is_transient(caught_exception)
    else:
        http, parsed = response if isinstance(response, tuple) and len(response) == 2 else (None, None)
        status = getattr(http, "status_code", 0)
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        failed = isinstance(status, int) and status >= 400 and transient_answer(error.get("Code", ""), status)
    if failed:
        fetch.falter()


_C = TypeVar("_C")


def watch_attempts(client: _C) -> _C:
    """Register :func:`_attempt_failed` on ``client``'s botocore events, once per client; return ``client``.

    Called as a client comes into a cache, before any thread of the cache uses it: at
    construction for a client given (primary or replica), as it is built for one the cache
    builds. Not on a client already in use: botocore's emitter takes no lock, and a thread
    emitting ``needs-retry`` of an operation for the first time (looking up its handlers) while
    another registers caches the handlers it found, without the new one, until the next
    registration; botocore ignores a ``unique_id`` it has, so none ever comes. A client without
    botocore events (a test double, the Agent's client) is left as is.
    """
    events = getattr(getattr(client, "meta", None), "events", None)
    register = getattr(events, "register", None)
    if callable(register):
        register("needs-retry.secrets-manager", _attempt_failed, unique_id=_WATCH_ID)
    return client


# What botocore's parsing of a 200 answer raises besides ResponseParserError: bad base64 in a
# SecretBinary (binascii.Error, or ValueError for non-ASCII), an unreadable CreatedDate
# (ValueError, or RuntimeError out of range), a body that is JSON but not an object
# (AttributeError).
PARSE_ERRORS = (ValueError, TypeError, AttributeError, RuntimeError, OverflowError)


def raised_parsing(err: BaseException) -> bool:
    """Whether botocore raised ``err`` parsing an answer, rather than a hook, a credential provider or our code.

    True when its traceback runs through ``botocore.parsers``, or ends in the endpoint's
    ``_do_get_response`` (which calls ``update`` on what the parser returned: ``None`` for a
    ``null`` body).
    """
    frames = [frame for frame, _ in traceback.walk_tb(err.__traceback__)]
    if any(frame.f_globals.get("__name__") == "botocore.parsers" for frame in frames):
        return True
    last = frames[-1] if frames else None
    return (
        last is not None
        and last.f_globals.get("__name__") == "botocore.endpoint"
        and last.f_code.co_name == "_do_get_response"
    )


def credential_frames(err: BaseException) -> list[Any]:
    """The frames of ``err``'s traceback in ``botocore.credentials`` (a credential provider at work)."""
    return [
        frame
        for frame, _ in traceback.walk_tb(err.__traceback__)
        if frame.f_globals.get("__name__") == "botocore.credentials"
    ]


def raised_reading_credentials(err: BaseException) -> bool:
    """Whether botocore raised ``err`` while a credential provider loaded or refreshed credentials."""
    return bool(credential_frames(err))


def provider_of(err: BaseException) -> str:
    """The name of the credential provider ``err`` came through (its ``METHOD``), or ``credentials``."""
    for frame in reversed(credential_frames(err)):
        method = getattr(frame.f_locals.get("self"), "METHOD", None)
        if isinstance(method, str):
            return method
    return "credentials"
