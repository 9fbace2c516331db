"""Thread helpers shared by the tests that run many threads against moto in-process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from tests.conftest import WATCHDOG, wait_until

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


def waiting_readers(
    pool: Executor, cache: Any, secret_id: str, count: int, *, misses_before: int = 0
) -> list[Future[str]]:
    """Submit ``count`` reads of ``secret_id`` to ``pool``; return them once each is counted a miss (in or on a fetch).

    ``misses_before`` is the cache's miss count before these reads.
    """
    futures = [pool.submit(cache.get_secret_string, secret_id) for _ in range(count)]
    wait_until(lambda: cache.stats().misses == misses_before + count)
    return futures


class Held:
    """Holds the GetSecretValue calls made on threads named ``name`` until released.

    Registered on botocore's ``event``: ``after-call`` (the default) holds the answer once moto
    has answered, so it arrives late; ``before-call`` holds the request before it reaches moto.
    """

    def __init__(self, client: Any, name: str, event: str = "after-call") -> None:
        self.name = name
        self.arrived = threading.Event()
        self.released = threading.Event()
        client.meta.events.register(f"{event}.secretsmanager.GetSecretValue", self._hold)

    def _hold(self, **_: Any) -> None:  # returns None: a before-call result would replace the response
        if threading.current_thread().name == self.name and not self.released.is_set():
            self.arrived.set()
            assert self.released.wait(WATCHDOG), "a held call was never released"


def refuse_thread_starts(
    monkeypatch: Any, prefix: str, error: BaseException | type[BaseException] | None = None
) -> None:
    """Make ``Thread.start`` raise ``error`` for threads whose name starts with ``prefix`` (others start).

    ``error`` defaults to ``RuntimeError("can't start new thread")``, what CPython raises at the
    thread limit; an interrupt or ``MemoryError`` stands for a start cut short. Undone by
    ``monkeypatch.undo()``.
    """
    start = threading.Thread.start
    refusal = RuntimeError("can't start new thread") if error is None else error

    def refuse(thread: threading.Thread) -> None:
        if thread.name.startswith(prefix):
            raise refusal
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
