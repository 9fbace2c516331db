"""Exceptions raised by secretcache.

Every error the cache raises on purpose derives from :class:`SecretCacheError`::

    SecretCacheError
    ├── SecretNotFoundError          the secret, version or staging label does not exist
    ├── SecretAccessDeniedError      IAM, KMS key policy or missing credentials refused it
    ├── SecretDecryptionError        KMS could not decrypt the secret
    ├── InvalidSecretRequestError    bad arguments, marked for deletion, stage/version mismatch
    │                                (also a ValueError)
    ├── SecretFormatError            not JSON, missing JSON key, string vs binary (also a ValueError)
    ├── SecretUnavailableError       transient failures (throttling, 5xx, timeouts, connection
    │                                errors) outlived the retry policy and no usable value is cached
    └── secretcache.db.RedactedConnectError
                                     a database connect failed with an error holding the password

Wrong argument *types* raise the built-in :class:`TypeError`. Where a botocore error caused the
failure, it is chained as ``__cause__``. Messages name the secret id and the cause, never a value.
"""

from __future__ import annotations

__all__ = [
    "InvalidSecretRequestError",
    "SecretAccessDeniedError",
    "SecretCacheError",
    "SecretDecryptionError",
    "SecretFormatError",
    "SecretNotFoundError",
    "SecretUnavailableError",
]


class SecretCacheError(Exception):
    """Base class of every error raised by secretcache.

    Attributes:
        secret_id: The secret id the failing call asked for, or ``None`` when the error is not
            about one secret.
    """

    def __init__(self, message: str, *, secret_id: str | None = None) -> None:
        super().__init__(message)
        self.secret_id = secret_id

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.secret_id))


def _rebuild(cls: type[SecretCacheError], message: str, secret_id: str | None) -> SecretCacheError:
    return cls(message, secret_id=secret_id)


class SecretNotFoundError(SecretCacheError):
    """The secret, the requested version id or the requested staging label does not exist."""


class SecretAccessDeniedError(SecretCacheError):
    """The caller may not read the secret.

    Refused by an IAM, resource or KMS key policy, or no usable AWS credentials were found.
    """


class SecretDecryptionError(SecretCacheError):
    """Secrets Manager could not decrypt the secret with its KMS key."""


class InvalidSecretRequestError(SecretCacheError, ValueError):
    """The request is invalid.

    A bad argument, a secret marked for deletion, or a ``version_stage`` that does not label
    the requested ``version_id``. Also a :class:`ValueError`.
    """


class SecretFormatError(SecretCacheError, ValueError):
    """The secret exists but does not have the asked-for shape.

    Not JSON, a missing JSON key, or a binary secret read as a string (or the reverse). Also a
    :class:`ValueError`.
    """


class SecretUnavailableError(SecretCacheError):
    """Secrets Manager kept failing and no cached value is young enough to serve.

    Throttling, HTTP 5xx, timeouts or connection errors outlived the retry policy (or the cache
    is backing off after such failures).
    """
