"""Replication lag for moto's replica secrets: a replica that answers what the primary held earlier.

moto keeps a replica in sync at once: its ``ReplicaSecret`` reads the primary's versions and
labels. Real replication takes a moment, during which a replica answers an older version. A
:class:`Lag` makes moto's own replica answer as of a moment (:meth:`Lag.freeze`) until it catches
up (:meth:`Lag.catch_up`), by pointing the replica at a snapshot of the primary's state taken
then, so every answer still comes from moto's code (in-process and over HTTP alike).
"""

from __future__ import annotations

import copy

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.secretsmanager.models import FakeSecret, ReplicaSecret, secretsmanager_backends

from tests.atomic_moto import LOCK

__all__ = ["Lag"]


class Lag:
    """The replicas of secret ``name`` in ``region``, made to lag behind their primary on demand."""

    def __init__(self, name: str, region: str) -> None:
        self.name = name
        self.region = region
        self._lock = LOCK  # moto's: no request sees the replica half swapped
        self._saved: FakeSecret | None = None

    def _replica(self) -> ReplicaSecret:
        secrets = secretsmanager_backends[DEFAULT_ACCOUNT_ID][self.region].secrets
        found = [
            secret for secret in secrets.values() if isinstance(secret, ReplicaSecret) and secret.name == self.name
        ]
        assert len(found) == 1, f"{self.name} has {len(found)} replicas in {self.region}"
        return found[0]

    @property
    def frozen(self) -> bool:
        """Whether the replica answers as of an earlier moment."""
        with self._lock:
            return self._saved is not None

    def freeze(self) -> None:
        """From now on the replica answers what the primary holds now (its versions and labels)."""
        with self._lock:
            replica = self._replica()
            source = self._saved if self._saved is not None else replica.source
            snapshot = copy.copy(source)
            snapshot.versions = copy.deepcopy(source.versions)
            self._saved = source
            replica.source = snapshot

    def catch_up(self) -> None:
        """The replica is in sync with the primary again."""
        with self._lock:
            if self._saved is not None:
                self._replica().source = self._saved
                self._saved = None
