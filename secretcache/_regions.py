"""Replica Regions: where a fetch goes when the primary Region fails, and for how long.

A cache with ``replica_regions`` keeps one :class:`Regions`. A fetch asks it for the plan:
the primary first (with its retries, within half the retry deadline) unless the primary is
known to be failing, then each replica in order within what is left of the deadline. An
outage *episode* starts when the primary fails transiently after its retries; during it,
fetches go straight to the replicas, and the primary is probed again (one attempt) each time
its backoff ends, until it answers. The start and the end of an episode are logged once each.
Only a failure of an attempt that started after the primary last answered counts: a slow
attempt that began before a probe found the primary healthy is old news.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from secretcache._lazy import Lazy, drop_connections, reading_credentials
from secretcache._logs import facts

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from secretcache._policy import RetryPolicy

__all__ = [
    "Regions",
    "Replica",
    "check_primary",
    "check_replicas",
    "drop_connections",
    "env_region",
    "region_of",
]

logger = logging.getLogger("secretcache")


def env_region(environ: Mapping[str, str] | None = None) -> str | None:
    """The Region ``AWS_REGION`` names, or ``None`` when it is unset or empty.

    Every client the library builds is given it explicitly: botocore reads ``AWS_REGION`` only
    inside Lambda, while the AWS CLI v2 and the other AWS SDKs read it everywhere, over
    ``AWS_DEFAULT_REGION`` and the profile's ``region``.
    """
    region = (os.environ if environ is None else environ).get("AWS_REGION", "").strip()
    return region or None


def region_of(client: Any) -> str | None:
    """The Region a boto3 client calls, if it says."""
    region = getattr(getattr(client, "meta", None), "region_name", None)
    return region if isinstance(region, str) else None


class Replica:
    """One replica Region: its name and its client (built on first use when given by name, no lock held meanwhile)."""

    __slots__ = ("_client", "region")

    def __init__(
        self, region: str, client: SecretsManagerClient | None, build: Callable[[str], Any], *, wait: float
    ) -> None:
        self.region = region
        self._client: Lazy[SecretsManagerClient] = Lazy(
            client, lambda: reading_credentials(lambda: build(region)), wait
        )

    @property
    def client(self) -> SecretsManagerClient:
        """The client for this Region (see :meth:`secretcache._lazy.Lazy.get` for what it raises)."""
        return self._client.get()

    def peek(self) -> SecretsManagerClient | None:
        """The client if there is one yet (given, or built already); never builds."""
        return self._client.peek()

    def reset_after_fork(self) -> None:
        """In a forked child: a client of our own building dropped, a given one's connections closed."""
        self._client.reset_after_fork()

    def close(self) -> None:
        """Close the connections of the client built for this Region (a given one is left alone)."""
        self._client.close()


def check_replicas(replica_regions: object, build: Callable[[str], Any], *, wait: float) -> tuple[Replica, ...]:
    """The replicas of ``replica_regions``: Region names, or ready clients for those Regions.

    ``build(region)`` builds the client of a Region given by name, on first use; a thread
    waits at most ``wait`` seconds for another thread's build.

    Raises:
        TypeError: Not a sequence of Region names and clients (a single string is refused).
        ValueError: A blank Region name, a client that does not say its Region, or a Region twice.
    """
    if isinstance(replica_regions, (str, bytes)) or not isinstance(replica_regions, Sequence):
        raise TypeError(
            "replica_regions must be a sequence of Region names or secretsmanager clients, "
            f"not {type(replica_regions).__name__}"
        )
    replicas: list[Replica] = []
    for item in replica_regions:
        if isinstance(item, str):
            if not item.strip() or item != item.strip():
                raise ValueError(f"replica_regions holds an invalid Region name: {item!r}")
            replicas.append(Replica(item, None, build, wait=wait))
        elif callable(getattr(item, "get_secret_value", None)):
            region = region_of(item)
            if region is None:
                raise ValueError("a client in replica_regions must have a Region (client.meta.region_name)")
            replicas.append(Replica(region, item, build, wait=wait))
        else:
            raise TypeError(
                f"replica_regions items must be Region names or secretsmanager clients, not {type(item).__name__}"
            )
    regions = [replica.region for replica in replicas]
    if len(set(regions)) != len(regions):
        raise ValueError(f"replica_regions names a Region twice: {regions}")
    return tuple(replicas)


def check_primary(primary: str | None, replicas: Sequence[Replica], whose: str) -> None:
    """Refuse a replica in the primary's own Region; ``whose`` says where that Region comes from.

    A fleet deploying one configuration to several Regions would otherwise fail over to itself.

    Raises:
        ValueError: ``primary`` is the Region of one of ``replicas``.
    """
    if primary is not None and primary in {replica.region for replica in replicas}:
        raise ValueError(
            f"replica_regions names the primary Region {primary!r} ({whose}): a replica there would only "
            "repeat the primary's failures; list other Regions"
        )


class Regions:
    """The replicas of one cache and the state of the current outage episode. Thread-safe."""

    def __init__(self, replicas: tuple[Replica, ...], retry: RetryPolicy, clock: Callable[[], float]) -> None:
        self.replicas = replicas
        self._retry = retry
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # failed backoff windows of the primary in a row: 0 = no episode
        self._retry_at = float("-inf")
        self._probing = False  # one fetch probes the primary when a backoff ends; the others skip it
        self._answered_at = float("-inf")  # when the primary last answered, on the cache's clock

    def now(self) -> float:
        """The cache's clock: when an attempt on the primary starts, for :meth:`primary_failed`."""
        return self._clock()

    def primary_first(self) -> tuple[bool, bool]:
        """Whether this fetch tries the primary, and whether with its retries (else one probe)."""
        with self._lock:
            if self._failures == 0:
                return True, True
            if not self._probing and self._clock() >= self._retry_at:
                self._probing = True
                return True, False
            return False, False

    def primary_failed(self, primary: str | None, error: BaseException, operation: str, started: float) -> None:
        """The primary failed transiently: start the episode (logged), or extend it after a failed probe.

        ``started`` is when the failed attempt started (:meth:`now`). An attempt that started
        before the primary last answered says nothing new and is ignored. Fetches that were
        already under way when the episode started fail too; they count as the same failure, so
        the backoff grows with failed probes, not with concurrency.
        """
        with self._lock:
            if started < self._answered_at:
                return
            first = self._failures == 0
            if not first and not self._probing:
                return
            self._failures += 1
            self._probing = False
            self._retry_at = self._clock() + self._retry.backoff_after(self._failures)
        if first:
            extra = facts(operation, error=error)
            logger.warning(
                "Secrets Manager in %s is failing (%s); reading replicas in %s until it answers",
                primary or "the primary Region",
                extra["error_type"],
                ", ".join(replica.region for replica in self.replicas),
                extra=extra,
            )

    def primary_answered(self, primary: str | None, operation: str) -> None:
        """The primary answered: end the episode, if one was going on (logged once)."""
        now = self._clock()
        with self._lock:
            self._answered_at = max(self._answered_at, now)
            failures, self._failures = self._failures, 0
            if failures:
                self._probing = False
        if failures:
            logger.info(
                "Secrets Manager in %s answers again (it had failed %d time(s)); replicas no longer read",
                primary or "the primary Region",
                failures,
                extra=facts(operation),
            )

    def abandoned(self) -> None:
        """A try of the primary ended neither way (an unexpected exception): let another fetch probe."""
        with self._lock:
            self._probing = False

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, clients of our own building dropped, no episode."""
        self._lock = threading.Lock()
        self._failures = 0
        self._retry_at = float("-inf")
        self._probing = False
        self._answered_at = float("-inf")
        for replica in self.replicas:
            replica.reset_after_fork()

    def close(self) -> None:
        """Close the connections of the replica clients built here (given ones are left alone)."""
        for replica in self.replicas:
            replica.close()
