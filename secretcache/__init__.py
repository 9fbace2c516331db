"""secretcache: a fast, thread-safe client-side cache for AWS Secrets Manager.

The public names live here; every module with a leading underscore is private.
"""

# First, before the heavy imports: a Ctrl-C while the `secretcache` command starts exits 130
# quietly (only when this process is that command; see secretcache/_startup.py).
from secretcache import _startup as _startup  # isort: skip

import logging as _logging
import typing as _typing

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
from secretcache._model import SecretWatch
from secretcache._policy import RetryPolicy
from secretcache._public import lazy as _lazy
from secretcache._public import publish as _publish
from secretcache._stats import CacheStats
from secretcache._value import RefreshResult, SecretChange, SecretValue

if _typing.TYPE_CHECKING:
    from secretcache._aio import AsyncSecretCache

# Resolved on first access by __getattr__ below, so that a plain SecretCache (every cold Lambda
# start) pays neither for asyncio nor for reading the package metadata.
__version__: str

# A library never prints on its own: without logging configured by the application, the library's
# warnings go nowhere instead of to stderr (Python's "last resort" handler).
_logging.getLogger("secretcache").addHandler(_logging.NullHandler())

__all__ = [
    "AsyncSecretCache",
    "CacheStats",
    "ChangeListener",
    "InvalidSecretRequestError",
    "RefreshResult",
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
    "SecretWatch",
    "__version__",
]


_publish(globals(), __all__)


# Hidden from type checkers, which would otherwise accept any misspelt name as an ``object``; they
# see AsyncSecretCache and __version__ declared above.
if not _typing.TYPE_CHECKING:
    _load = _lazy(globals(), {"AsyncSecretCache": "secretcache._aio"})

    def __getattr__(name: str) -> object:
        """Load ``AsyncSecretCache`` and ``__version__`` on first use, then keep them."""
        if name != "__version__":
            return _load(name)
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version(__name__)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
            value = "0.0.0"
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
