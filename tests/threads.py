"""Thread helpers shared by the tests that run many threads against moto in-process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def serialize_backend(lock: threading.Lock, *clients: Any) -> None:
    """Make each moto call atomic: in-process moto mutates plain dicts without locking.

    A put inserting a version while another thread's GetSecretValue iterates the versions
    would fail inside moto, which is no bug of the cache. The real service is atomic per call.
    """

    def acquire(**_: Any) -> None:  # must return None: a before-call result replaces the response
        lock.acquire()

    for client in clients:
        events = client.meta.events
        events.register_last("before-call.secretsmanager.*", acquire)
        events.register_last("after-call.secretsmanager.*", lambda **_: lock.release())
        events.register_last("after-call-error.secretsmanager.*", lambda **_: lock.release())


def start(function: Callable[[], T], name: str) -> Future[T]:
    """Run ``function`` on a daemon thread: a hung worker can fail the test but never hang pytest."""
    future: Future[T] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(function())
            except BaseException as err:
                future.set_exception(err)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
