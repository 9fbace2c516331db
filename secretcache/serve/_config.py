"""``secretcache serve``'s settings: :class:`ServeConfig`, built from its flags and ``SECRETCACHE_*`` variables.

Standard library and secretcache only (no HTTP stack), so the command line checks every setting
before it imports the server. Precedence, for every setting: the flag, then its variable, then
the default. Each bad value is one :class:`ServeConfigError` whose message names the flag or the
variable it came from and what to write instead.

| flag | variable | default |
| --- | --- | --- |
| ``--port N`` | ``SECRETCACHE_SERVE_PORT`` | 2773 (0: any free port) |
| ``--bind ADDR`` (repeatable) | ``SECRETCACHE_SERVE_BIND`` (comma-separated) | ``127.0.0.1`` and ``::1`` |
| ``--allow-remote`` | ``SECRETCACHE_SERVE_ALLOW_REMOTE=1`` | off: only loopback addresses |
| ``--no-token`` | (none: for tests only) | off |
| ``--max-conn N`` | ``SECRETCACHE_SERVE_MAX_CONN`` | 800 |
| ``--refresh-interval S`` | ``SECRETCACHE_SERVE_REFRESH_INTERVAL`` | 1.0 |
| ``--prefetch ID`` (repeatable) | ``SECRETCACHE_SERVE_PREFETCH`` (comma-separated) | none |
| ``--sqs-queue-url URL`` | ``SECRETCACHE_SERVE_SQS_QUEUE_URL`` | none |
| ``--metrics-port N`` | ``SECRETCACHE_SERVE_METRICS_PORT`` | none |
| ``--log-ids`` | ``SECRETCACHE_SERVE_LOG_IDS=1`` | off: no secret id in a log line |
| ``--log-level L`` | ``SECRETCACHE_SERVE_LOG_LEVEL`` | ``info`` |
| ``--ttl``, ``--max-size``, ``--refresh-ahead``, ``--max-stale``, ``--replica-regions`` | ``SECRETCACHE_TTL``, ... | |

The cache's settings are read by :func:`secretcache._policy.settings_from_env` (the parser of
:meth:`SecretCache.from_env`), with each flag given standing in for its variable.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from secretcache._policy import settings_from_env, whole_number
from secretcache._token import ServeConfigError

__all__ = [
    "CACHE_FLAGS",
    "DEFAULT_BINDS",
    "DEFAULT_PORT",
    "LOG_LEVELS",
    "SERVE_VARIABLES",
    "ServeConfig",
    "load_config",
]

DEFAULT_PORT = 2773  # the Agent's http_port default (config.rs)
DEFAULT_BINDS = ("127.0.0.1", "::1")
LOG_LEVELS = ("debug", "info", "warning", "error")
_PREFIX = "SECRETCACHE_SERVE_"
SERVE_VARIABLES = (
    "PORT",
    "BIND",
    "ALLOW_REMOTE",
    "MAX_CONN",
    "REFRESH_INTERVAL",
    "PREFETCH",
    "SQS_QUEUE_URL",
    "METRICS_PORT",
    "LOG_IDS",
    "LOG_LEVEL",
)
"""Every ``SECRETCACHE_SERVE_*`` variable, without the prefix; any other name with the prefix is refused."""

CACHE_FLAGS = {
    "ttl": "TTL",
    "max_size": "MAX_SIZE",
    "refresh_ahead": "REFRESH_AHEAD",
    "max_stale": "MAX_STALE",
    "replica_regions": "REPLICA_REGIONS",
}
"""The cache flags (argparse ``dest``) and the ``SECRETCACHE_*`` variable each overrides."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``secretcache serve`` runs with. Immutable; holds no token and no secret value.

    Attributes:
        port: TCP port of every bound address (0: a free port, the same on every address).
        binds: IP addresses to listen on.
        binds_given: Whether ``binds`` was given (then an address that cannot be bound is an
            error; the default ``::1`` is skipped on a host without IPv6).
        allow_remote: Whether a non-loopback address may be bound.
        no_token: Accept requests without a token (tests only).
        max_conn: Open connections served at once; a request on one more gets ``429``.
        refresh_interval: Least seconds between two forced refreshes of one secret.
        prefetch: Secret ids loaded (``BatchGetSecretValue``) before the server listens.
        sqs_queue_url: Queue of Secrets Manager change events to invalidate from, or ``None``.
        metrics_port: Port of the Prometheus endpoint on 127.0.0.1, or ``None``.
        log_ids: Whether secret ids may appear in log lines.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        cache_settings: Keyword arguments for :class:`~secretcache.SecretCache`.
        region: AWS Region (``--region``), or ``None`` for the environment's.
        profile: AWS profile (``--profile``), or ``None``.
        endpoint_url: Secrets Manager endpoint (``--endpoint-url``), or ``None``.
    """

    port: int = DEFAULT_PORT
    binds: tuple[str, ...] = DEFAULT_BINDS
    binds_given: bool = False
    allow_remote: bool = False
    no_token: bool = False
    max_conn: int = 800
    refresh_interval: float = 1.0
    prefetch: tuple[str, ...] = ()
    sqs_queue_url: str | None = None
    metrics_port: int | None = None
    log_ids: bool = False
    log_level: str = "info"
    cache_settings: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None


def _given(flags: Mapping[str, Any], dest: str, flag: str, environ: Mapping[str, str], name: str) -> tuple[Any, str]:
    """The flag's value if given, else the variable's (stripped), else ``None``; and where it came from."""
    value = flags.get(dest)
    if value is not None:
        return value, flag
    variable = _PREFIX + name
    if variable in environ:
        return environ[variable].strip(), variable
    return None, variable


def _whole(raw: Any, where: str, low: int, high: int, what: str) -> int:
    text = str(raw).strip()
    number = whole_number(text)
    if number is None or not low <= number <= high:
        raise ServeConfigError(f"{where}={text!r} is not {what} (a whole number from {low} to {high})")
    return number


def _flag(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ServeConfigError(f"{where}={raw!r} is not a yes/no value (1 or 0, true or false)")


def _listed(raw: Any) -> list[str]:
    """A repeatable flag's values, or a comma-separated variable's, each stripped."""
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    return [str(item).strip() for item in items]


def _addresses(raw: Any, where: str, allow_remote: bool) -> tuple[str, ...]:
    addresses: list[str] = []
    for text in _listed(raw):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ServeConfigError(
                f"{where} {text!r} is not an IP address (for example 127.0.0.1, ::1 or 0.0.0.0)"
            ) from None
        if not address.is_loopback and not allow_remote:
            raise ServeConfigError(
                f"{where} {text} is not a loopback address: add --allow-remote (SECRETCACHE_SERVE_ALLOW_REMOTE=1) "
                "to accept connections from other hosts, and know that the token is then the only defence"
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    return tuple(addresses)


def _cache_settings(flags: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The cache's keyword arguments: its ``SECRETCACHE_*`` variables, each flag given in place of its own."""
    env = {name: value for name, value in environ.items() if name.startswith("SECRETCACHE_")}
    for dest, name in CACHE_FLAGS.items():
        value = flags.get(dest)
        if value is None:
            continue
        variable = "SECRETCACHE_" + name
        try:
            settings_from_env({variable: str(value)}, "SECRETCACHE_")
        except ValueError as err:
            raise ServeConfigError(str(err).replace(variable, "--" + dest.replace("_", "-"))) from None
        env[variable] = str(value)
    try:
        return settings_from_env(env, "SECRETCACHE_")
    except ValueError as err:
        raise ServeConfigError(str(err)) from None


def load_config(flags: Mapping[str, Any], environ: Mapping[str, str]) -> ServeConfig:
    """The configuration from the parsed flags (argparse ``dest`` -> value, ``None`` if not given) and ``environ``.

    Raises:
        ServeConfigError: A value is invalid, a ``SECRETCACHE_SERVE_*`` variable is unknown, or a
            non-loopback address is given without ``--allow-remote``; the message is one line
            naming the flag or variable.
    """
    unknown = sorted(
        name for name in environ if name.startswith(_PREFIX) and name[len(_PREFIX) :] not in SERVE_VARIABLES
    )
    if unknown:
        known = ", ".join(_PREFIX + name for name in SERVE_VARIABLES)
        raise ServeConfigError(f"unknown setting {', '.join(unknown)}; known: {known}")
    raw, where = _given(flags, "port", "--port", environ, "PORT")
    port = DEFAULT_PORT if raw is None else _whole(raw, where, 0, 65535, "a port number")
    raw, where = _given(flags, "allow_remote", "--allow-remote", environ, "ALLOW_REMOTE")
    allow_remote = False if raw is None else _flag(raw, where)
    raw, where = _given(flags, "bind", "--bind", environ, "BIND")
    binds = DEFAULT_BINDS if raw is None else _addresses(raw, where, allow_remote)
    if not binds:
        raise ServeConfigError(f"{where} names no address")
    raw, where = _given(flags, "max_conn", "--max-conn", environ, "MAX_CONN")
    max_conn = 800 if raw is None else _whole(raw, where, 1, 1_000_000, "a connection count")
    raw, where = _given(flags, "refresh_interval", "--refresh-interval", environ, "REFRESH_INTERVAL")
    refresh_interval = 1.0 if raw is None else _seconds(raw, where)
    raw, where = _given(flags, "prefetch", "--prefetch", environ, "PREFETCH")
    prefetch = _ids(raw, where)
    raw, where = _given(flags, "sqs_queue_url", "--sqs-queue-url", environ, "SQS_QUEUE_URL")
    if raw is not None and not str(raw).startswith(("https://", "http://")):
        raise ServeConfigError(
            f"{where}={raw!r} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
        )
    sqs_queue_url = str(raw) if raw else None
    raw, where = _given(flags, "metrics_port", "--metrics-port", environ, "METRICS_PORT")
    metrics_port = None if raw is None or raw == "" else _whole(raw, where, 1, 65535, "a port number")
    raw, where = _given(flags, "log_ids", "--log-ids", environ, "LOG_IDS")
    log_ids = False if raw is None else _flag(raw, where)
    raw, where = _given(flags, "log_level", "--log-level", environ, "LOG_LEVEL")
    log_level = "info" if raw is None else str(raw).strip().lower()
    if log_level not in LOG_LEVELS:
        raise ServeConfigError(f"{where}={raw!r} is not a log level ({', '.join(LOG_LEVELS)})")
    return ServeConfig(
        port=port,
        binds=binds,
        binds_given=flags.get("bind") is not None or _PREFIX + "BIND" in environ,
        allow_remote=allow_remote,
        no_token=bool(flags.get("no_token")),
        max_conn=max_conn,
        refresh_interval=refresh_interval,
        prefetch=prefetch,
        sqs_queue_url=sqs_queue_url,
        metrics_port=metrics_port,
        log_ids=log_ids,
        log_level=log_level,
        cache_settings=_cache_settings(flags, environ),
        region=flags.get("region"),
        profile=flags.get("profile"),
        endpoint_url=flags.get("endpoint_url"),
    )


def _seconds(raw: Any, where: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if not 0.0 <= value < math.inf:
        raise ServeConfigError(f"{where}={raw!r} is not a number of seconds (0 or more)")
    return value


def _ids(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    ids: Sequence[str] = _listed(raw)
    if ids == [""]:
        return ()
    if any(not secret_id for secret_id in ids):
        raise ServeConfigError(f"{where} holds an empty secret id")
    return tuple(dict.fromkeys(ids))
