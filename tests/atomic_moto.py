"""moto's Secrets Manager made atomic per call, as the service is.

In-process moto keeps each secret's versions in a plain dict and serves requests on the caller's
thread (in-process) or on a server thread (``ThreadedMotoServer``). A ``GetSecretValue``
iterating a secret's versions while a ``PutSecretValue`` adds one raises ``RuntimeError:
dictionary changed size during iteration`` inside moto, which reaches the client as an
unexpected error: a failure of the test double, not of the cache, that appeared at random under
load (a model test saw a stale read "while the backend answered"). The real service applies each
request atomically. :func:`install` serialises every Secrets Manager request moto handles, on both
paths, under :data:`LOCK`; test code that edits moto's backend directly takes :data:`LOCK` too.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.secretsmanager.responses import SecretsManagerResponse

LOCK = threading.RLock()
"""Held while moto handles a Secrets Manager request, and while a test edits moto's secrets."""

_installed = False


def install() -> None:
    """Wrap moto's Secrets Manager request handler in :data:`LOCK` (once per process)."""
    global _installed
    if _installed:
        return
    dispatch = SecretsManagerResponse._dispatch

    def atomic(self: SecretsManagerResponse, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return dispatch(self, *args, **kwargs)

    SecretsManagerResponse._dispatch = atomic  # type: ignore[method-assign]
    _installed = True


def versions(name: str, region: str) -> dict[str, tuple[frozenset[str], str | None]]:
    """What moto holds for secret ``name`` in ``region``: each version id with its labels and SecretString.

    Read from moto's backend under :data:`LOCK`, so it is one consistent moment of the backend.
    The models use it as their oracle instead of DescribeSecret and GetSecretValue calls (about
    3 ms each in-process): what the cache under test calls is unchanged, and the oracle no longer
    goes through moto's request layer, which is not what they test.
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.secretsmanager.models import secretsmanager_backends

    with LOCK:
        secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID][region].secrets[name]
        return {
            version_id: (frozenset(version["version_stages"]), version.get("secret_string"))
            for version_id, version in secret.versions.items()
        }
