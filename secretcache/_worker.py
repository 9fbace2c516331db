"""A small bounded pool of daemon threads for background refreshes."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from secretcache._logs import facts

__all__ = ["BackgroundPool"]

logger = logging.getLogger("secretcache")

_STOP = None


class BackgroundPool:
    """Runs submitted jobs on at most ``threads`` daemon threads, fed by a bounded queue.

    Threads start when jobs arrive and end after ``idle`` seconds without work, so a cache
    that never refreshes ahead, or was dropped without :meth:`close`, keeps no thread. A full
    queue refuses the job instead of growing; the caller retries on a later read. A job that
    raises an ``Exception`` is logged, never kills its thread; one that raises a
    ``BaseException`` (``SystemExit``) ends its thread, and a new thread takes over the queued
    jobs. Thread-safe. After a fork, call
    :meth:`reset_after_fork` in the child: the parent's threads do not exist there.
    """

    def __init__(
        self, *, threads: int = 2, capacity: int = 1024, idle: float = 10.0, name: str = "secretcache-refresh"
    ) -> None:
        self._size = threads
        self._idle = idle
        self._capacity = capacity
        self._name = name
        self._lock = threading.Lock()
        # Room for one stop marker per thread beyond the jobs, so close() never blocks.
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=capacity + threads)
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; return ``False`` (and do nothing) when full, closed, or no thread can run it.

        A thread that cannot be started (``RuntimeError: can't start new thread``) refuses the
        job only when no thread of the pool is left to run it; a later submission tries again.
        """
        with self._lock:
            if self._closed or self._queue.qsize() >= self._capacity:
                return False
            if len(self._threads) < self._size and not self._start_thread() and not self._threads:
                return False
            self._queue.put_nowait(job)  # a thread started above waits for it: its idle exit takes this lock
        return True

    def _start_thread(self) -> bool:
        """Start one more worker thread; whether it started. Called with ``_lock`` held (the pool's own lock).

        A thread that could not start is not kept: it never counts against ``threads`` (nor
        would :meth:`close` wait for it).
        """
        thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
        self._threads.append(thread)  # before it runs: its idle exit removes it
        try:
            thread.start()
        except RuntimeError:  # can't start new thread: the caller decides (a later submission retries)
            self._threads.remove(thread)
            return False
        return True

    def _run(self) -> None:
        jobs = self._queue
        while True:
            try:
                job = jobs.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:  # submit() queues under this lock: no job is left behind
                    if jobs.empty():
                        self._threads.remove(threading.current_thread())
                        return
                continue
            if job is _STOP:
                return
            try:
                job()
            except Exception as err:
                logger.exception("a background refresh failed unexpectedly", extra=facts("refresh", error=err))
            except BaseException as err:  # SystemExit and the like: this thread ends, a new one takes over
                logger.exception("a background refresh thread was interrupted", extra=facts("refresh", error=err))
                with self._lock:
                    self._threads.remove(threading.current_thread())
                    if not self._closed and not jobs.empty():
                        self._start_thread()
                return

    def close(self, timeout: float | None = None) -> None:
        """Stop the threads once the jobs already queued have run. Idempotent.

        Waits up to ``timeout`` seconds for the threads (``None``: do not wait; they are
        daemons and never keep the process alive).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        if timeout is not None:
            for thread in threads:
                thread.join(timeout)

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's threads and queued jobs, keep working."""
        self._lock = threading.Lock()
        self._queue = queue.Queue(maxsize=self._capacity + self._size)
        self._threads = []

    @property
    def threads(self) -> list[threading.Thread]:
        """The pool's current threads."""
        with self._lock:
            return list(self._threads)
