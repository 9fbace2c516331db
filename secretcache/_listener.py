"""A daemon thread that applies Secrets Manager change events from an SQS queue to caches."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from secretcache._cache import dropped_keys
from secretcache._events import secret_ids_from_event
from secretcache._fork import track

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from secretcache._cache import SecretCache

__all__ = ["SqsInvalidationListener"]

logger = logging.getLogger("secretcache.events")

MAX_BODY = 256 * 1024
"""Largest message body parsed (SQS's own limit); larger ones are skipped."""


class SqsInvalidationListener:
    """Long-polls an SQS queue of Secrets Manager change events and invalidates the caches.

    Each received message is parsed with :func:`invalidate_from_event` (raw EventBridge events,
    SNS notifications with raw or non-raw delivery), the secrets it names are invalidated in
    every added cache (and, with ``refresh=True``, their AWSCURRENT is prefetched at once so the
    next read is a hit), and the batch is deleted. Messages that are not JSON, not an event we
    know, or larger than 256 KiB are logged at DEBUG and **deleted** too: a change event is only
    a hint to refetch, so retrying a bad one through a redrive policy would help nobody.
    SQS errors are logged and retried with exponential backoff (1 s doubling to 30 s); the
    thread never dies of them.

    An SQS message goes to one consumer, so give each process its own queue (EventBridge ->
    SNS -> one queue per process or host); several caches in one process share one listener via
    :meth:`add`. Thread-safe. Fork-aware: in a forked child the listener is stopped (its thread
    does not exist there) and may be started again. Use :meth:`start`/:meth:`stop` or a
    ``with`` block.

    Args:
        cache: The first cache to invalidate.
        queue_url: The SQS queue URL.
        client: A boto3 ``sqs`` client; built lazily from the default chain when omitted.
        wait_time_seconds: Long-poll wait per receive (0 to 20).
        max_messages: Messages per receive (1 to 10).
        refresh: Prefetch the new AWSCURRENT right after invalidating.
    """

    backoff_initial = 1.0
    """Seconds to wait after the first failed receive; doubles per failure."""
    backoff_max = 30.0
    """Longest wait between failed receives."""

    def __init__(
        self,
        cache: SecretCache,
        queue_url: str,
        *,
        client: Any = None,
        wait_time_seconds: int = 20,
        max_messages: int = 10,
        refresh: bool = False,
    ) -> None:
        if not isinstance(queue_url, str) or not queue_url:
            raise ValueError("queue_url must be an SQS queue URL")
        if not isinstance(wait_time_seconds, int) or not 0 <= wait_time_seconds <= 20:
            raise ValueError(f"wait_time_seconds must be an int from 0 to 20, got {wait_time_seconds!r}")
        if not isinstance(max_messages, int) or not 1 <= max_messages <= 10:
            raise ValueError(f"max_messages must be an int from 1 to 10, got {max_messages!r}")
        self._caches: tuple[SecretCache, ...] = (cache,)
        self._queue_url = queue_url
        self._client = client
        self._wait = wait_time_seconds
        self._max = max_messages
        self._refresh = refresh
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.iterations = 0
        """Receive calls made so far (for tests and monitoring)."""
        track(self)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"SqsInvalidationListener({self._queue_url!r}, caches={len(self._caches)}, {state})"

    def add(self, cache: SecretCache) -> None:
        """Also invalidate ``cache`` for every event from now on."""
        with self._lock:
            self._caches = (*self._caches, cache)

    @property
    def running(self) -> bool:
        """Whether the polling thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the daemon polling thread (no-op when already running)."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="secretcache-sqs-listener", daemon=True)
            self._thread.start()

    def stop(self) -> bool:
        """Stop polling; returns within ``wait_time_seconds + 1`` s whether the thread ended."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(self._wait + 1)
        return not thread.is_alive()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def client(self) -> Any:
        """The SQS client (built on first use when none was given)."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client("sqs")
        return self._client

    def poll_once(self) -> int:
        """Receive one batch, apply it and delete it; return how many messages were handled.

        Raises:
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: SQS failed.
        """
        self.iterations += 1
        response = self.client.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=self._max, WaitTimeSeconds=self._wait
        )
        messages = response.get("Messages", [])
        handled: list[dict[str, str]] = []
        for message in messages:
            self._apply(message.get("Body", ""))
            handled.append({"Id": str(len(handled)), "ReceiptHandle": message["ReceiptHandle"]})
        if handled:
            result = self.client.delete_message_batch(QueueUrl=self._queue_url, Entries=handled)
            for failed in result.get("Failed", []):
                logger.warning("could not delete an SQS message: %s", failed.get("Code"))
        return len(handled)

    def _apply(self, body: str) -> None:
        if len(body) > MAX_BODY:
            logger.debug("skipping an SQS message of %d bytes", len(body))
            return
        ids = secret_ids_from_event(body)
        if not ids:
            return
        for cache in self._caches:
            dropped = [key for secret_id in ids for key in dropped_keys(cache, secret_id)]
            if self._refresh:
                # Warm AWSCURRENT again under the ids the application reads it by.
                cache.prefetch([key for key in dropped if isinstance(key, str)])
        logger.info("invalidated %s after a change event", ", ".join(ids))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                self._failures = 0
            except Exception as error:
                self._failures += 1
                delay = min(self.backoff_max, self.backoff_initial * 2.0 ** (self._failures - 1))
                logger.warning("polling SQS failed (%s); retrying in %.1f s", type(error).__name__, delay)
                self._stop.wait(delay)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self._client is not None:
            session = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
            close = getattr(session, "close", None)
            if callable(close):
                close()
