"""secretcache: a fast, thread-safe client-side cache for AWS Secrets Manager.

The public names live here; every module with a leading underscore is private.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from secretcache._aio import AsyncSecretCache
from secretcache._cache import ChangeListener, SecretCache
from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretFormatError,
    SecretNotFoundError,
    SecretUnavailableError,
)
from secretcache._policy import RetryPolicy
from secretcache._stats import CacheStats
from secretcache._value import SecretChange, SecretValue

try:
    __version__ = _version("secretcache")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

# A library never prints on its own: without logging configured by the application, the library's
# warnings go nowhere instead of to stderr (Python's "last resort" handler).
_logging.getLogger("secretcache").addHandler(_logging.NullHandler())

__all__ = [
    "AsyncSecretCache",
    "CacheStats",
    "ChangeListener",
    "InvalidSecretRequestError",
    "RetryPolicy",
    "SecretAccessDeniedError",
    "SecretCache",
    "SecretCacheError",
    "SecretChange",
    "SecretDecryptionError",
    "SecretFormatError",
    "SecretNotFoundError",
    "SecretUnavailableError",
    "SecretValue",
    "__version__",
]
