"""Retries within one fetch: tenacity behind a :class:`RetryPolicy`, on the cache's clock and sleep.

The stop rule (as many attempts as the policy allows, none starting at or past the deadline)
reads the injected ``clock`` and every wait goes through the injected ``sleep``, so a cache given
a fake clock retries on it, and no test patches ``time`` in tenacity or here. Waits are
exponential with full jitter, capped at the policy's ``max_delay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import tenacity

from secretcache._error_map import is_transient
from secretcache._policy import RetryPolicy

__all__ = ["StopBeforeDeadline", "retrying"]

_T = TypeVar("_T")


class StopBeforeDeadline(tenacity.stop.stop_base):
    """tenacity's ``stop_before_delay`` on a given clock (tenacity's reads ``time.monotonic``).

    Stops when the next attempt would start at or past ``deadline`` seconds from now, later by
    the time :meth:`forgive` was told the process spent stopped.
    """

    def __init__(self, clock: Callable[[], float], deadline: float) -> None:
        self._clock = clock
        self._ends = clock() + deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self._clock() + retry_state.upcoming_sleep >= self._ends

    def forgive(self, seconds: float) -> None:
        """Move the deadline ``seconds`` later: time that was not spent on the fetch."""
        self._ends += seconds


def retrying(
    attempt: Callable[[], _T],
    policy: RetryPolicy,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    falter: Callable[[], None] | None = None,
    attempts: int | None = None,
    deadline: float | None = None,
    attempt_limit: float = math.inf,
    stopped: Callable[[float], None] | None = None,
) -> _T:
    """Run ``attempt`` under ``policy``, or its fewer ``attempts`` and shorter ``deadline``.

    Only transient failures (:func:`secretcache._error_map.is_transient`) are retried; each is
    reported to ``falter`` before any wait. The last error is re-raised as is.

    ``attempt_limit`` is the longest one attempt can wait on the network (its client's connect
    and read timeouts). An attempt that took longer was stopped for some of that time (Lambda
    freezes the process between invocations; a machine sleeps), so its time says nothing of
    Secrets Manager and does not count against the deadline: a fetch thawed long past its
    deadline still retries. ``stopped`` is told the seconds of each such attempt, for a caller
    whose own budget runs on from the same start (the replica Regions' share of the deadline).
    """
    attempts = policy.attempts if attempts is None else attempts
    deadline = policy.deadline if deadline is None else deadline
    before_deadline = StopBeforeDeadline(clock, deadline)

    def timed() -> _T:
        began = clock()
        try:
            return attempt()
        finally:
            took = clock() - began
            if took > attempt_limit:
                before_deadline.forgive(took)
                if stopped is not None:
                    stopped(took)

    def transient(err: BaseException) -> bool:
        if not is_transient(err):
            return False
        if falter is not None:
            falter()
        return True

    runner = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts) | before_deadline,
        wait=tenacity.wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay),
        retry=tenacity.retry_if_exception(transient),
        sleep=sleep,
        reraise=True,
    )
    return runner(timed)
