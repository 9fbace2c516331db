"""Settings: the retry policy and the one helper that turns durations into seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Duration", "RetryPolicy", "check_fraction", "check_size", "to_seconds"]

Duration = float | int | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""


def to_seconds(value: object, name: str, *, allow_inf: bool = True) -> float:
    """Convert a duration argument to non-negative seconds.

    Raises:
        TypeError: ``value`` is not a number or a ``timedelta`` (``bool`` is refused too).
        ValueError: ``value`` is negative or NaN, or infinite where that is not allowed.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be seconds (int or float) or a timedelta, not {type(value).__name__}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a duration >= 0 seconds, got {value!r}")
    if math.isinf(seconds) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value!r}")
    return seconds


def check_fraction(value: object, name: str, *, upper: float) -> float:
    """Check that ``value`` is a number in ``[0, upper)`` and return it as a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not 0.0 <= value < upper:
        raise ValueError(f"{name} must be >= 0 and < {upper}, got {value!r}")
    return float(value)


def check_size(value: object, name: str, *, minimum: int) -> int:
    """Check that ``value`` is an ``int`` of at least ``minimum`` and return it."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the cache retries failed ``GetSecretValue`` calls and backs off after failures.

    Only transient failures are retried: throttling, HTTP 5xx, timeouts and connection errors.
    Within one fetch, attempt *n* waits a random time between 0 and
    ``min(max_delay, initial_delay * 2 ** (n - 1))`` seconds (exponential backoff with full
    jitter); the fetch gives up after ``attempts`` attempts or when the next wait would end past
    ``deadline`` seconds from its start. Botocore's own retries are off in clients the cache
    builds, so this is the one retry policy.

    After a fetch fails (for good or after its retries), the cache does not call the API again
    for that secret for ``failure_backoff`` seconds, doubling with each further consecutive
    failure up to ``max_failure_backoff``; meanwhile reads get the last good value (while young
    enough) or the remembered error.

    Instances are immutable and safe to share between caches and threads.

    Attributes:
        attempts: Attempts per fetch, at least 1 (1 disables retries).
        initial_delay: Upper bound of the first random wait, in seconds.
        max_delay: Cap on the upper bound of any one wait, in seconds.
        deadline: Seconds after the first attempt past which no new attempt starts.
        failure_backoff: Seconds without API calls for a secret after its first failed fetch.
        max_failure_backoff: Cap on that pause as consecutive failures double it.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is out of range (negative, NaN, ``max_delay < initial_delay``, ...).
    """

    attempts: int = 3
    initial_delay: float = 0.1
    max_delay: float = 2.0
    deadline: float = 10.0
    failure_backoff: float = 1.0
    max_failure_backoff: float = 60.0

    def __post_init__(self) -> None:
        check_size(self.attempts, "RetryPolicy.attempts", minimum=1)
        for name in ("initial_delay", "max_delay", "deadline", "failure_backoff", "max_failure_backoff"):
            object.__setattr__(self, name, to_seconds(getattr(self, name), f"RetryPolicy.{name}", allow_inf=False))
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"RetryPolicy.max_delay ({self.max_delay}) must be >= initial_delay ({self.initial_delay})"
            )
        if self.max_failure_backoff < self.failure_backoff:
            raise ValueError(
                f"RetryPolicy.max_failure_backoff ({self.max_failure_backoff}) must be >= "
                f"failure_backoff ({self.failure_backoff})"
            )

    def backoff_after(self, failures: int) -> float:
        """Seconds to wait before the next fetch after ``failures`` consecutive failed fetches."""
        if failures <= 0:
            return 0.0
        return min(self.max_failure_backoff, self.failure_backoff * 2.0 ** min(failures - 1, 62))
