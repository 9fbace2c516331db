"""``secretcache demo``: the whole story against an embedded local Secrets Manager (moto)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from unittest import mock

from secretcache._cache import SecretCache
from secretcache._client import isolated_client
from secretcache._errors import SecretUnavailableError
from secretcache._output import flush, out, say
from secretcache._policy import RetryPolicy
from secretcache._value import SecretChange

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["run_demo"]

SECRET = "demo/db-password"  # noqa: S105 - a secret name, not a password
TTL = 300.0


class _DemoClock:
    """A monotonic clock the story fast-forwards, so minutes pass without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _say(text: str = "") -> None:
    """Print one line of the story now, through the command's output (a failure to write: exit 74 or 141)."""
    out(text)
    flush()


def _step(number: int, title: str) -> None:
    _say()
    _say(f"{number}. {title}")


class _LogLines(logging.Handler):
    """Holds secretcache's log lines until the story shows them after the step that caused them.

    A background refresh logs from its own thread whenever it fails; printing its line at once
    would race the narration. The story waits for the line, then shows it where it belongs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("   [log %(levelname)s] %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # list.append is atomic; handle() holds our lock

    def show(self) -> None:
        """Print the lines held so far, oldest first."""
        while self.lines:
            _say(self.lines.pop(0))


def _wait_for(condition: Callable[[], bool]) -> None:
    """Let the background refresh thread finish its (local, fast) work."""
    deadline = time.monotonic() + 10.0
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def _calls(client: SecretsManagerClient) -> dict[str, int]:
    """Count GetSecretValue calls as they leave the client (botocore's before-call event)."""
    counts = {"GetSecretValue": 0}

    def count(**_: Any) -> None:
        counts["GetSecretValue"] += 1

    client.meta.events.register("before-call.secretsmanager.GetSecretValue", count)
    return counts


def _forget_aws_configuration() -> None:
    """Drop the environment's AWS profile, config files and endpoint URLs: the demo talks to moto only.

    The demo's client reads none of them (:func:`~secretcache._client.isolated_client`); dropping
    them too keeps them from anything else the demo runs (moto). Call under ``mock.patch.dict(os.environ)``.
    """
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def run_demo() -> int:
    """Run the demo; return the process exit status."""
    try:
        from moto import mock_aws
    except ImportError:
        say(
            "secretcache: error: the demo needs moto; install the demo extra: pip install -e '.[demo]' in a "
            "secretcache checkout (or pip install 'secretcache[demo]' once secretcache is on PyPI)"
        )
        return 1
    from botocore.exceptions import EndpointConnectionError

    handler = _LogLines()
    logger = logging.getLogger("secretcache")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with mock.patch.dict(os.environ), mock_aws():  # the environment is restored on exit
            _forget_aws_configuration()
            client = isolated_client()  # AWS_DEFAULTS_MODE, AWS_MAX_ATTEMPTS, ... cannot stop it either
            return _story(client, EndpointConnectionError, handler)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _backoff_text(retry: RetryPolicy) -> str:
    """The pauses ``retry`` makes after consecutive failed fetches: "a pause of 30 s, then 60 s, ..."."""
    pauses = [retry.backoff_after(1)]
    while len(pauses) <= 4 and retry.backoff_after(len(pauses) + 1) > pauses[-1]:
        pauses.append(retry.backoff_after(len(pauses) + 1))
    if len(pauses) > 4:
        return f"a pause of {pauses[0]:g} s, doubling with each further failure up to {retry.max_failure_backoff:g} s"
    *growing, last = [f"{pause:g} s" for pause in pauses]
    if not growing:
        return f"a pause of {last} after every failure"
    return f"a pause of {', then '.join(growing)}, then {last} after every further failure"


def _story(client: SecretsManagerClient, outage_error: Any, logs: _LogLines) -> int:
    clock = _DemoClock()
    retry = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05, failure_backoff=30.0, max_failure_backoff=120.0)
    # Closed however the story ends (its reader may go away: a broken pipe), before moto stops.
    with SecretCache(client, ttl=TTL, max_stale=3600.0, ttl_jitter=0.0, retry=retry, clock=clock) as cache:
        try:
            _tell(client, cache, clock, retry, outage_error, logs)
        finally:
            logs.show()
    _say()
    _say("Done: one call per TTL however many threads, rotation picked up in the background, outage ridden out.")
    return 0


def _tell(
    client: SecretsManagerClient,
    cache: SecretCache,
    clock: _DemoClock,
    retry: RetryPolicy,
    outage_error: Any,
    logs: _LogLines,
) -> None:
    calls = _calls(client)
    changes: list[SecretChange] = []
    cache.on_change(changes.append)

    _say("secretcache demo: a local Secrets Manager (moto), a simulated clock, no AWS account needed.")
    _say(
        f"Cache settings: ttl={TTL:.0f}s, refresh_ahead=0.8, max_stale=3600s, stale_while_revalidate=0, "
        f"retry={retry.attempts} attempts"
    )

    _step(1, f"Create the secret {SECRET!r} with password 'correct-horse-1'.")
    first = client.create_secret(Name=SECRET, SecretString="correct-horse-1")
    _say(f"   version {first['VersionId'][:8]}... is AWSCURRENT")

    _step(2, "32 threads ask for it at the same moment (a cold start stampede).")
    barrier = threading.Barrier(32)

    def read() -> str:
        barrier.wait()
        return cache.get_secret_string(SECRET)

    with ThreadPoolExecutor(max_workers=32) as pool:
        values = list(pool.map(lambda _: read(), range(32)))
    _say(f"   32 reads returned {sorted(set(values))}; GetSecretValue calls so far: {calls['GetSecretValue']}")
    for _ in range(10_000):
        cache.get_secret_string(SECRET)
    _say(f"   10,000 more reads within the TTL; GetSecretValue calls so far: {calls['GetSecretValue']}")

    _step(3, "Rotate the password: stage 'correct-horse-2' as AWSPENDING, then move AWSCURRENT to it.")
    pending = client.put_secret_value(SecretId=SECRET, SecretString="correct-horse-2", VersionStages=["AWSPENDING"])
    _say(f"   AWSPENDING (readable during rotation): {cache.get_secret_string(SECRET, version_stage='AWSPENDING')!r}")
    client.update_secret_version_stage(
        SecretId=SECRET,
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending["VersionId"],
        RemoveFromVersionId=first["VersionId"],
    )
    _say(f"   right after rotation the cache still serves {cache.get_secret_string(SECRET)!r} (within its TTL)")
    clock.now += TTL * 0.85
    _say(f"   ... {TTL * 0.85:.0f} simulated seconds later (past refresh_ahead x ttl = {TTL * 0.8:.0f}s):")
    _say(f"   a read returns {cache.get_secret_string(SECRET)!r} at once and starts ONE background refresh")
    _wait_for(lambda: cache.stats().refreshes >= 1 and bool(changes))  # listeners run after the count
    _say(f"   the next read serves {cache.get_secret_string(SECRET)!r}: no read waited for the network")
    for change in changes:
        _say(
            f"   on_change fired: {change.version_stage} of {change.name!r} moved from "
            f"{change.old_version_id[:8]}... to {change.new_version_id[:8]}... (ids only, never values)"
        )
    _say(f"   GetSecretValue calls so far: {calls['GetSecretValue']}")

    _step(4, "Secrets Manager becomes unreachable (every call fails with a connection error).")

    def outage(**_: Any) -> None:
        raise outage_error(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com")

    client.meta.events.register("before-call.secretsmanager.GetSecretValue", outage)
    clock.now += TTL * 0.85
    before = calls["GetSecretValue"]
    _say(f"   {TTL * 0.85:.0f}s later the value is past its refresh point but within its TTL. A read returns")
    _say(f"   {cache.get_secret_string(SECRET)!r}, while the background refresh fails and is retried")
    _wait_for(lambda: cache.stats().errors >= 1 and bool(logs.lines))
    logs.show()
    attempts = calls["GetSecretValue"] - before
    _say(f"   the refresh gave up after {attempts} attempts; the value is still within its TTL.")
    for _ in range(1000):
        cache.get_secret_string(SECRET)
    _say(f"   1,000 more reads during the outage made {calls['GetSecretValue'] - before - attempts} calls")
    _say(f"   (failed fetches back off: {_backoff_text(retry)})")
    clock.now += TTL * 0.2
    before = calls["GetSecretValue"]
    stale_before = cache.stats().stale_served
    value = cache.get_secret_string(SECRET)
    stale = cache.stats().stale_served - stale_before
    _say(f"   {TTL * 0.2:.0f}s later the TTL has passed and the backoff is over. The TTL is a bound, so a read")
    _say("   fetches first; its first attempt fails, and it returns the last good value at once:")
    _say(f"   {value!r} (stale_served +{stale}; allowed up to max_stale), while the retries go on behind it")
    _wait_for(lambda: cache.stats().in_flight == 0)
    logs.show()
    _say(f"   the retries failed too ({calls['GetSecretValue'] - before} attempts in all); the key backs off again")
    clock.now += 3600.0
    _say("   an hour later the value is too old to serve (max_stale); a read fetches, fails and raises:")
    try:
        cache.get_secret_string(SECRET)
    except SecretUnavailableError as err:
        logs.show()
        _say(f"   SecretUnavailableError: {err}")

    _step(5, "Secrets Manager is back.")
    client.meta.events.unregister("before-call.secretsmanager.GetSecretValue", outage)
    clock.now += retry.max_failure_backoff + 1.0
    _say(f"   after the backoff the next read fetches again: {cache.get_secret_string(SECRET)!r}")
    logs.show()

    _step(6, "Statistics (counts only: stats never hold a secret id or value).")
    stats = cache.stats()
    _say(f"   hits={stats.hits} misses={stats.misses} api_calls={dict(stats.api_calls)}")
    _say(
        f"   refreshes={stats.refreshes} background_refreshes={stats.background_refreshes} "
        f"stale_served={stats.stale_served} errors={stats.errors} "
        f"evictions={stats.evictions} size={stats.size} hit_ratio={stats.hit_ratio:.4f}"
    )
    _say(f"   repr: {cache!r}")
