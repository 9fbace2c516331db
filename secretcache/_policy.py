"""Settings: the retry policy and the one helper that turns durations into seconds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

__all__ = [
    "DEFAULT_MAX_STALE",
    "ENV_VARIABLES",
    "Duration",
    "RetryPolicy",
    "Timing",
    "check_client",
    "check_fraction",
    "check_overrides",
    "check_refresh_ahead",
    "check_size",
    "settings_from_env",
    "shown",
    "to_seconds",
    "whole_number",
]

Duration = float | int | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""

DEFAULT_MAX_STALE = 3600.0
"""``max_stale`` of a cache built without one (``from_env`` checks ``STALE_WHILE_REVALIDATE`` against it)."""


def shown(value: object) -> str:
    """``repr(value)`` for an error message, or a description of an int too long to print.

    ``repr()`` of an int of more digits than ``sys.get_int_max_str_digits()`` raises a
    ``ValueError`` of its own, which would name no setting.
    """
    try:
        return repr(value)
    except ValueError:
        return f"an int of {value.bit_length() if isinstance(value, int) else '?'} bits"


def to_seconds(value: object, name: str, *, allow_inf: bool = True) -> float:
    """Convert a duration argument to non-negative seconds.

    An ``int`` too large for a float (``10**400``) is longer than any finite duration: infinite.

    Raises:
        TypeError: ``value`` is not a number or a ``timedelta`` (``bool`` is refused too).
        ValueError: ``value`` is negative or NaN, or infinite where that is not allowed.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range (an OverflowError naming no setting)
            seconds = math.inf if value > 0 else -math.inf
    else:
        raise TypeError(f"{name} must be seconds (int or float) or a timedelta, not {type(value).__name__}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a duration >= 0 seconds, got {shown(value)}")
    if math.isinf(seconds) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {shown(value)}")
    return seconds


def check_client(client: object, owner: str) -> None:
    """Refuse a ``client`` argument that cannot be a Secrets Manager client.

    Anything with a callable ``get_secret_value`` passes (botocore builds its client classes at
    run time, and wrapped or instrumented clients are welcome), and so does ``None``. Only a
    number is echoed in the message: another value given by mistake may be sensitive.

    Raises:
        TypeError: ``client`` is something else, such as a TTL given positionally; the message
            names ``client`` and says that settings are keyword-only.
    """
    if client is None or callable(getattr(client, "get_secret_value", None)):
        return
    given = repr(client) if isinstance(client, (int, float)) and not isinstance(client, bool) else "..."
    example = repr(client) if given != "..." else "300"
    raise TypeError(
        f"{owner}({given}): client must be a Secrets Manager client such as boto3.client('secretsmanager') "
        f"or None, not {type(client).__name__}; settings such as ttl are keyword-only: "
        f"{owner}(ttl={example})"
    )


def check_fraction(value: object, name: str, *, upper: float) -> float:
    """Check that ``value`` is a number in ``[0, upper)`` and return it as a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not 0.0 <= value < upper:
        raise ValueError(f"{name} must be >= 0 and < {upper}, got {shown(value)}")
    return float(value)


def check_size(value: object, name: str, *, minimum: int) -> int:
    """Check that ``value`` is an ``int`` of at least ``minimum`` and return it."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {shown(value)}")
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the cache retries failed ``GetSecretValue`` calls and backs off after failures.

    Only transient failures are retried: throttling, HTTP 5xx, timeouts and connection errors.
    Within one fetch, attempt *n + 1* waits a random time between 0 and
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


@dataclass(frozen=True, slots=True)
class Timing:
    """When a cached value is refreshed, expires and stops being served. Immutable.

    Attributes:
        ttl: Default seconds a fetched value is fresh.
        ttl_jitter: Fraction of the TTL randomly taken off each value's lifetime.
        refresh_ahead: Fraction of the TTL after which a read refreshes in the background, or
            ``None`` for no refresh-ahead.
        max_stale: Seconds past its TTL a value may be served while fetching fails.
        overrides: ``(prefix, ttl)`` pairs, longest prefix first.
        stale_while_revalidate: Seconds past its TTL during which reads still get the value
            at once while one background refresh fetches the next, even when fetching works.
        replica_ttl: Longest a value read from a replica Region is fresh, so the cache returns
            to the primary soon after it recovers.
    """

    ttl: float
    ttl_jitter: float
    refresh_ahead: float | None
    max_stale: float
    overrides: tuple[tuple[str, float], ...] = ()
    stale_while_revalidate: float = 0.0
    replica_ttl: float = 60.0


def check_overrides(overrides: object) -> tuple[tuple[str, float], ...]:
    """Validate ``ttl_overrides`` and return its items, longest prefix first."""
    if overrides is None:
        return ()
    if not isinstance(overrides, Mapping):
        raise TypeError(
            f"ttl_overrides must be a mapping of secret id or prefix to seconds, not {type(overrides).__name__}"
        )
    items = []
    for prefix, seconds in overrides.items():
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"ttl_overrides keys must be non-empty str secret ids or prefixes, got {prefix!r}")
        items.append((prefix, to_seconds(seconds, f"ttl_overrides[{prefix!r}]")))
    return tuple(sorted(items, key=lambda item: len(item[0]), reverse=True))


_DURATIONS = ("TTL", "MAX_STALE", "STALE_WHILE_REVALIDATE", "REPLICA_TTL")
_RETRY_FIELDS = {
    "RETRY_ATTEMPTS": "attempts",
    "RETRY_INITIAL_DELAY": "initial_delay",
    "RETRY_MAX_DELAY": "max_delay",
    "RETRY_DEADLINE": "deadline",
    "RETRY_FAILURE_BACKOFF": "failure_backoff",
    "RETRY_MAX_FAILURE_BACKOFF": "max_failure_backoff",
}
ENV_VARIABLES = (
    "TTL",
    "MAX_SIZE",
    "MAX_STALE",
    "STALE_WHILE_REVALIDATE",
    "REFRESH_AHEAD",
    "TTL_JITTER",
    "TTL_OVERRIDES",
    "REPLICA_REGIONS",
    "REPLICA_TTL",
    *_RETRY_FIELDS,
)
"""Every variable :meth:`SecretCache.from_env` reads, without its prefix."""
READ_ELSEWHERE = frozenset({"BOTOCORE_LOG_REDACTION", "AGENT_ENDPOINT"})
"""Variables with the prefix that other modules read (:mod:`~secretcache.redaction`, :mod:`~secretcache.agent`)."""
READ_ELSEWHERE_PREFIX = "SERVE_"
"""Variables with the prefix then this one belong to ``secretcache serve``, which checks them itself."""
_OFF = frozenset({"", "none", "off", "false", "no", "0"})


def whole_number(text: str) -> int | None:
    """``text`` (a setting's value) as a whole number of digits, or ``None`` if it is not one.

    ``str.isdigit()`` alone accepts what ``int()`` refuses: superscripts (``"²"``), and more
    digits than ``int()`` converts (``sys.get_int_max_str_digits()``); both are ``None`` here.
    """
    if not text.isdigit():
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _number(variable: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number") from None


def settings_from_env(environ: Mapping[str, str], prefix: str) -> dict[str, object]:
    """Read cache settings from ``{prefix}*`` variables; absent variables keep their default.

    Returns keyword arguments for :class:`SecretCache` (``retry`` as a :class:`RetryPolicy`).

    Raises:
        ValueError: A variable is unknown (a typo) or holds an invalid value; the message names
            the variable and the value.
    """
    present = {name[len(prefix) :]: value.strip() for name, value in environ.items() if name.startswith(prefix)}
    unknown = sorted(
        name
        for name in set(present) - set(ENV_VARIABLES) - READ_ELSEWHERE
        if not name.startswith(READ_ELSEWHERE_PREFIX)
    )
    if unknown:
        known = ", ".join(prefix + name for name in ENV_VARIABLES)
        raise ValueError(f"unknown setting {', '.join(prefix + name for name in unknown)}; known: {known}")
    settings: dict[str, object] = {}
    durations = {
        name.lower(): to_seconds(_number(prefix + name, present[name]), prefix + name)
        for name in _DURATIONS
        if name in present
    }
    settings.update(durations)
    limit = durations.get("max_stale", DEFAULT_MAX_STALE)
    if durations.get("stale_while_revalidate", 0.0) > limit:  # the constructor's check, naming the variables
        given = f"{prefix}MAX_STALE={present['MAX_STALE']!r}" if "MAX_STALE" in present else f"max_stale ({limit:g} s)"
        raise ValueError(
            f"{prefix}STALE_WHILE_REVALIDATE={present['STALE_WHILE_REVALIDATE']!r} must be <= {given}: "
            "no value is served past max_stale"
        )
    if "MAX_SIZE" in present:
        raw = present["MAX_SIZE"]
        size = whole_number(raw)
        if size is None:
            raise ValueError(f"{prefix}MAX_SIZE={raw!r} is not a whole number")
        settings["max_size"] = check_size(size, prefix + "MAX_SIZE", minimum=1)
    if "TTL_JITTER" in present:
        settings["ttl_jitter"] = check_fraction(
            _number(prefix + "TTL_JITTER", present["TTL_JITTER"]), prefix + "TTL_JITTER", upper=1.0
        )
    if "REFRESH_AHEAD" in present:
        raw = present["REFRESH_AHEAD"]
        settings["refresh_ahead"] = (
            None
            if raw.lower() in _OFF
            else check_refresh_ahead(_number(prefix + "REFRESH_AHEAD", raw), prefix + "REFRESH_AHEAD")
        )
    if "REPLICA_REGIONS" in present:  # comma-separated Region names; blank means none
        regions = [region.strip() for region in present["REPLICA_REGIONS"].split(",")]
        if any(not region for region in regions) and regions != [""]:
            raise ValueError(f"{prefix}REPLICA_REGIONS={present['REPLICA_REGIONS']!r} holds an empty Region name")
        settings["replica_regions"] = tuple(region for region in regions if region)
    if "TTL_OVERRIDES" in present:
        settings["ttl_overrides"] = _overrides_from_json(prefix + "TTL_OVERRIDES", present["TTL_OVERRIDES"])
    retry: dict[str, float] = {}
    for name, field_name in _RETRY_FIELDS.items():
        if name in present:
            value = _number(prefix + name, present[name])
            if field_name == "attempts":
                if not value.is_integer():
                    raise ValueError(f"{prefix}{name}={present[name]!r} is not a whole number")
                retry[field_name] = check_size(int(value), prefix + name, minimum=1)
            else:
                retry[field_name] = to_seconds(value, prefix + name, allow_inf=False)
    if retry:
        try:
            settings["retry"] = RetryPolicy(**retry)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"{prefix}RETRY_* settings are inconsistent: {err}") from None
    return settings


def _overrides_from_json(variable: str, raw: str) -> dict[str, float]:
    import json

    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ValueError(f'{variable}={raw!r} is not a JSON object like {{"prod/db/": 60}}') from None
    except RecursionError:  # json.loads recurses once per nested array or object
        raise ValueError(f'{variable} is nested too deeply: write a flat JSON object like {{"prod/db/": 60}}') from None
    if not isinstance(parsed, dict):
        raise ValueError(f'{variable}={raw!r} is not a JSON object like {{"prod/db/": 60}}')
    try:
        return dict(check_overrides(parsed))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{variable}={raw!r}: {err}") from None


def check_refresh_ahead(value: object, name: str) -> float | None:
    """Check a ``refresh_ahead`` fraction: ``None`` (off) or a number in ``(0, 1]``."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a fraction of the TTL or None, not {type(value).__name__}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be > 0 and <= 1 (a fraction of the TTL), got {shown(value)}")
    return float(value)
