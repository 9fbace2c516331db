"""Value objects handed to callers: a fetched secret version and a version-change notice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["ChangeListener", "RefreshResult", "SecretChange", "SecretValue"]


@dataclass(frozen=True, slots=True, repr=False)
class SecretValue:
    """One version of a secret as Secrets Manager returned it.

    Immutable and safe to share between threads. ``repr()`` and ``str()`` show the metadata
    and whether a value is present, never the value itself.

    Attributes:
        name: The secret's friendly name (the id requested, if the answer did not say).
        arn: The secret's full ARN; empty if the answer did not carry one (real answers always
            do; a test stub's ``{"SecretString": ...}`` does not).
        version_id: The id of this version; empty if the answer did not carry one (as above).
        version_stages: The staging labels attached to this version when it was fetched
            (for example ``("AWSCURRENT",)``); labels move, so this is a snapshot.
        created_date: When this version was created, as reported by Secrets Manager.
        secret_string: The string value, or ``None`` for a binary secret.
        secret_binary: The binary value, or ``None`` for a string secret.
        region: The AWS Region the value was read from: the client's Region, or a replica
            Region's when the primary failed (``replica_regions``); ``None`` if the client does
            not say. ``arn`` is always the primary Region's ARN.
    """

    name: str
    arn: str
    version_id: str
    version_stages: tuple[str, ...]
    created_date: datetime | None
    secret_string: str | None
    secret_binary: bytes | None
    region: str | None = None

    def __repr__(self) -> str:
        kind = "secret_string" if self.secret_string is not None else "secret_binary"
        return (
            f"SecretValue(name={self.name!r}, arn={self.arn!r}, version_id={self.version_id!r}, "
            f"version_stages={self.version_stages!r}, created_date={self.created_date!r}, "
            f"{kind}=<redacted>, region={self.region!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class SecretChange:
    """A refresh found a new version behind a staging label. Carries ids only, never a value.

    Attributes:
        name: The secret's friendly name.
        arn: The secret's full ARN.
        version_stage: The staging label that moved (for example ``"AWSCURRENT"``).
        old_version_id: The version id the cache held for that label before.
        new_version_id: The version id the label points to now.
    """

    name: str
    arn: str
    version_stage: str
    old_version_id: str
    new_version_id: str


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What a forced fetch found (:meth:`SecretCache.try_refresh`): a new version, the same one, or none.

    Immutable; its ``repr`` shows the value's metadata only, never the value.

    Attributes:
        value: The value now served for the key: the fetched one, or the last good one when
            ``stale``.
        stale: The fetch failed transiently (after its retries) and ``value`` is the last good
            value, served because it is within ``max_stale``.
        previous_version_id: The version id cached for the key before the refresh; ``None`` if
            nothing was cached (or only a remembered failure).
    """

    value: SecretValue
    stale: bool
    previous_version_id: str | None

    @property
    def changed(self) -> bool:
        """Whether the fetch succeeded and found another version than the one cached before it."""
        previous = self.previous_version_id
        return not self.stale and previous is not None and previous != self.value.version_id


class ChangeListener(Protocol):
    """Called with a :class:`SecretChange` when a fetch finds a new version behind a label."""

    def __call__(self, change: SecretChange, /) -> None:
        """Handle one change; exceptions are logged and swallowed."""
