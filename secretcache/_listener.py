"""A daemon thread that applies Secrets Manager change events from an SQS queue to caches.

Lifecycle: every :meth:`SqsInvalidationListener.start` makes a new ``_Poller``, a thread with
its own stop event; :meth:`~SqsInvalidationListener.stop` sets that event, forgets the poller and
waits about a second for its thread. A thread asked to stop may still be blocked in a long poll;
it exits when the receive returns, and releases (applies and deletes none of) what it received,
while a poller started since polls on its own. ``_lock`` guards only the swap of ``_poller``,
``_caches`` and the counters: no I/O, logging or thread start happens under it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from secretcache._cache import dropped_keys
from secretcache._errors import SecretUnavailableError
from secretcache._events import MAX_IDS, secret_ids_from_event, shown
from secretcache._fork import track
from secretcache._logs import facts
from secretcache._regions import env_region

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from typing_extensions import Self

    from secretcache._cache import SecretCache
    from secretcache._keys import CacheKey

__all__ = ["SqsInvalidationListener"]

logger = logging.getLogger("secretcache.events")

MAX_BODY = 256 * 1024
"""Largest message body parsed (SQS's own limit); larger ones are skipped."""

Message = dict[str, Any]


class _Poller:
    """One started polling thread and the event that asks it, and only it, to stop."""

    __slots__ = ("stop", "thread")

    def __init__(self, target: Callable[[_Poller], None], generation: int) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=target, args=(self,), name=f"secretcache-sqs-listener-{generation}", daemon=True
        )

    def alive_or_starting(self) -> bool:
        return self.thread.ident is None or self.thread.is_alive()


class SqsInvalidationListener:
    """Long-polls an SQS queue of Secrets Manager change events and invalidates the caches.

    Each received message is handled on its own: parsed with :func:`invalidate_from_event`'s
    rules (raw EventBridge events, SNS notifications with raw or non-raw delivery), the secrets
    it names are invalidated in every served cache (and, with ``refresh=True``, their AWSCURRENT
    is prefetched at once so the next read is a hit), and the message is deleted. What happens to
    a message:

    - applied: deleted. With ``refresh=True``, a definite refresh error (the secret was deleted,
      access is denied, ...) still counts as applied: the invalidation happened and the cache
      remembers the error like any read's, so the message is deleted and the error logged.
    - the refresh failed transiently (:class:`SecretUnavailableError`): **left for redelivery**
      (not deleted); SQS offers it again after the queue's visibility timeout, until its
      retention period (or a redrive policy) ends it. The invalidation already happened.
    - unusable (not JSON, not a change event we know, no usable secret id, larger than 256 KiB,
      or applying it raised): logged by message id only (never its body) and **deleted**: a
      change event is only a hint to refetch, so retrying a bad one would help nobody.

    One bad message never holds back the others of its batch. A cache that has been closed is
    dropped from the listener (logged once at INFO) instead of failing every message; :meth:`add`
    and :meth:`remove` change the caches served. SQS errors are logged and retried with
    exponential backoff (1 s doubling to 30 s); the thread never dies of them, nor of a
    ``BaseException`` (``SystemExit``) raised while it applies a batch, by an ``on_change``
    listener say: it is logged the same way, and the batch's messages not yet deleted return after
    the visibility timeout.

    :meth:`stop` returns within about a second (:attr:`stop_timeout`), even while the thread is
    blocked in a long poll of up to ``wait_time_seconds``; that thread then exits when its receive
    returns, and messages it received after :meth:`stop` are neither applied nor deleted but
    released at once (visibility timeout 0) for the next consumer. :meth:`start` after any
    :meth:`stop` starts a fresh thread at once.

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

    Raises:
        ValueError: ``queue_url``, ``wait_time_seconds`` or ``max_messages`` is invalid.
    """

    backoff_initial = 1.0
    """Seconds to wait after the first failed receive; doubles per failure."""
    backoff_max = 30.0
    """Longest wait between failed receives."""
    stop_timeout = 1.0
    """Seconds :meth:`stop` waits for the polling thread to end."""

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
        self._poller: _Poller | None = None
        self._generation = 0
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

    def remove(self, cache: SecretCache) -> None:
        """Stop invalidating ``cache`` (every time it was added).

        A no-op when ``cache`` is not served: never added, already removed, or already dropped
        by the listener because it was closed (so ``cache.close(); listener.remove(cache)`` is
        safe whatever the polling thread saw first). A message being applied while this is
        called may still reach ``cache``.
        """
        self._discard(cache)

    @property
    def running(self) -> bool:
        """Whether a polling thread started by :meth:`start`, and not stopped since, is alive."""
        poller = self._poller
        return poller is not None and poller.thread.is_alive()

    def start(self) -> None:
        """Start a daemon polling thread (no-op when one is running and was not stopped).

        After :meth:`stop`, a new thread is started even if the stopped one is still finishing
        its last receive.
        """
        with self._lock:
            if self._poller is not None and self._poller.alive_or_starting():
                return
            self._generation += 1
            poller = self._poller = _Poller(self._run, self._generation)
        poller.thread.start()

    def stop(self) -> bool:
        """Ask the polling thread to stop; wait at most :attr:`stop_timeout` (1 s) for it to end.

        Does not wait for a long poll in progress: a thread blocked in one exits when the receive
        returns, releasing whatever it received (neither applied nor deleted; made visible again
        at once, best-effort). A message already being applied is finished and deleted.

        Returns:
            ``True`` when no polling thread is left (it ended within the wait, or none was
            running); ``False`` when it is still finishing a receive or a message. Either way
            :attr:`running` is ``False`` and :meth:`start` may be called at once.
        """
        with self._lock:
            poller, self._poller = self._poller, None
        if poller is None:
            return True
        poller.stop.set()
        thread = poller.thread
        if thread.ident is None:  # a concurrent start() has not started it: it will exit at once
            return True
        if thread is threading.current_thread():  # called from a listener on the polling thread
            return False
        thread.join(self.stop_timeout)
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
        client = self._client
        if client is None:
            import boto3

            built = boto3.session.Session().client("sqs", region_name=env_region())
            with self._lock:
                if self._client is None:
                    self._client = built
                client = self._client
        return client

    def poll_once(self) -> int:
        """Receive one batch and handle each message on its own; return how many were deleted.

        Applied and unusable messages are deleted (and counted); messages whose refresh failed
        transiently are left for redelivery (see the class docstring).

        Raises:
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: Receiving or
                deleting failed. Messages applied before a failed delete come back and are applied
                again, which is harmless.
        """
        return self._poll(None)

    def _poll(self, stop: threading.Event | None) -> int:
        with self._lock:
            self.iterations += 1
        client = self.client
        response = client.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=self._max, WaitTimeSeconds=self._wait
        )
        done: list[Message] = []
        released: list[Message] = []
        for message in response.get("Messages", []):
            if stop is not None and stop.is_set():
                released.append(message)
            elif self._handle(message):
                done.append(message)
        if released:
            self._release(released)
        if done:
            result = client.delete_message_batch(QueueUrl=self._queue_url, Entries=_entries(done))
            for failed in result.get("Failed", []):
                extra = _entry_facts("sqs.delete", "DeleteMessageBatch", failed)
                logger.warning("could not delete an SQS message: %s", failed.get("Code"), extra=extra)
        return len(done)

    def _handle(self, message: Message) -> bool:
        """Apply one message; whether it is done with (to delete) rather than left for redelivery."""
        message_id = str(message.get("MessageId", "(no id)"))
        try:
            return self._apply(message_id, message.get("Body", ""))
        except Exception as error:  # one poison message must not hold back its batch
            logger.warning(
                "deleting SQS message %s: applying it raised %s", message_id, type(error).__name__,
                extra=facts("sqs.message", error=error),
            )  # fmt: skip
            return True

    def _apply(self, message_id: str, body: object) -> bool:
        if not isinstance(body, str) or len(body) > MAX_BODY:
            logger.debug(
                "deleting SQS message %s: its body is not text of at most 256 KiB", message_id,
                extra=facts("sqs.message"),
            )  # fmt: skip
            return True
        ids = secret_ids_from_event(body)
        if not ids:
            logger.debug(
                "deleting SQS message %s: no Secrets Manager change event in it", message_id,
                extra=facts("sqs.message"),
            )  # fmt: skip
            return True
        if len(ids) > MAX_IDS:  # one message is one event: a poison one packing many must not flood the log
            logger.debug(
                "SQS message %s: ignoring %d secret ids beyond the first %d", message_id, len(ids) - MAX_IDS, MAX_IDS,
                extra=facts("sqs.message"),
            )  # fmt: skip
            del ids[MAX_IDS:]
        applied = True
        invalidated: list[tuple[SecretCache, list[CacheKey]]] = []
        for cache in self._caches:  # every cache first: none waits for another's refresh
            if cache.closed:
                self._drop_closed(cache)
                continue
            invalidated.append((cache, [key for secret_id in ids for key in dropped_keys(cache, secret_id)]))
        for cache, dropped in invalidated if self._refresh else ():
            # Warm AWSCURRENT again under the ids the application reads it by.
            try:
                warmed = self._warm(cache, [key.secret_id for key in dropped if key.current], message_id)
            except Exception as error:  # this cache's refresh only: the others' still run, the invalidation stands
                logger.warning(
                    "refreshing after SQS message %s raised %s; the invalidation stands", message_id,
                    type(error).__name__, extra=facts("sqs.refresh", error=error),
                )  # fmt: skip
                continue
            applied = warmed and applied
        for secret_id in ids:  # one record per secret, so each carries its own ``secret_name``
            logger.info(
                "invalidated %s after SQS message %s", shown(secret_id), message_id,
                extra=facts("sqs.message", secret_name=secret_id),
            )  # fmt: skip
        return applied

    def _warm(self, cache: SecretCache, secret_ids: list[str], message_id: str) -> bool:
        """Prefetch after an invalidation; ``False`` if a refresh failed transiently."""
        try:
            errors = cache.prefetch(secret_ids)
        except RuntimeError:
            if not cache.closed:
                raise
            self._drop_closed(cache)
            return True
        transient = False
        for secret_id, error in errors.items():
            if isinstance(error, SecretUnavailableError):
                transient = True
                level, outcome = logging.WARNING, "leaving the message for redelivery"
            else:  # definite (deleted, access denied, ...): remembered by the cache like a read's
                level, outcome = logging.INFO, "the invalidation stands"
            logger.log(
                level, "refreshing %s after SQS message %s failed (%s); %s",
                shown(secret_id), message_id, type(error).__name__, outcome,
                extra=facts("sqs.refresh", secret_name=secret_id, error=error),
            )  # fmt: skip
        return not transient

    def _discard(self, cache: SecretCache) -> bool:
        with self._lock:
            kept = tuple(item for item in self._caches if item is not cache)
            found = len(kept) != len(self._caches)
            self._caches = kept
        return found

    def _drop_closed(self, cache: SecretCache) -> None:
        if self._discard(cache):  # only the thread that removed it logs: once per cache
            logger.info(
                "a closed SecretCache was dropped from the SQS listener of %s", self._queue_url,
                extra=facts("sqs.message"),
            )  # fmt: skip

    def _release(self, messages: list[Message]) -> None:
        """Make messages received after stop() visible again at once (best-effort)."""
        entries = [{**entry, "VisibilityTimeout": 0} for entry in _entries(messages)]
        try:
            result = self.client.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
        except Exception as error:
            logger.warning(
                "could not release %d SQS messages received while stopping (%s); they return after the "
                "visibility timeout", len(messages), type(error).__name__,
                extra=facts("sqs.release", error=error),
            )  # fmt: skip
            return
        for failed in result.get("Failed", []):
            extra = _entry_facts("sqs.release", "ChangeMessageVisibilityBatch", failed)
            logger.warning(
                "could not release an SQS message received while stopping: %s", failed.get("Code"), extra=extra
            )
        logger.debug("released %d SQS messages received while stopping", len(messages), extra=facts("sqs.release"))

    def _run(self, poller: _Poller) -> None:
        failures = 0
        while not poller.stop.is_set():
            try:
                self._poll(poller.stop)
                failures = 0
            except BaseException as error:  # SystemExit from a listener too: it would end this thread silently
                failures += 1
                # The exponent stops growing: 2.0 ** 1024 overflows (after some 8.5 h of failures).
                delay = min(self.backoff_max, self.backoff_initial * 2.0 ** min(failures - 1, 62))
                logger.warning(
                    "polling SQS failed (%s); retrying in %.1f s", type(error).__name__, delay,
                    extra=facts("sqs.poll", attempt=failures, error=error),
                )  # fmt: skip
                poller.stop.wait(delay)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._poller = None
        if self._client is not None:
            session = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
            close = getattr(session, "close", None)
            if callable(close):
                close()


def _entry_facts(operation: str, call: str, failed: Any) -> dict[str, object]:
    """The log fields of a batch entry SQS reported failed: its ``Code`` is the ``error_type``.

    The code goes through :func:`~secretcache._logs.error_type` as the error of a ``call``, so
    one that does not look like an error code is reported as ``Unknown``, as for a raised error.
    """
    code = failed.get("Code") if isinstance(failed, dict) else None
    error = ClientError({"Error": {"Code": code if isinstance(code, str) else ""}}, call)
    return facts(operation, error=error)


def _entries(messages: list[Message]) -> list[dict[str, Any]]:
    return [{"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]} for index, message in enumerate(messages)]
