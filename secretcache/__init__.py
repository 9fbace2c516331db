"""secretcache: a fast, thread-safe client-side cache for AWS Secrets Manager.

The public names live here; every module with a leading underscore is private.
"""

import logging as _logging
import types as _types
import typing as _typing
from collections.abc import Iterable as _Iterable

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


def _publish(namespace: dict[str, object], names: _Iterable[str]) -> None:
    """Make the classes and functions ``names`` of a public module report that module.

    Tracebacks and reprs then show the path users import from (``secretcache.SecretNotFoundError``,
    not ``secretcache._errors...``), as httpx does; pickle finds the objects there too. A class's
    string annotations are resolved first, in its defining module: :func:`typing.get_type_hints`
    looks names up in ``sys.modules[cls.__module__]``, which is about to change.
    """
    module = namespace["__name__"]
    for name in names:
        obj = namespace.get(name)
        if isinstance(obj, type):
            own = vars(obj).get("__annotations__")
            if own:
                try:
                    hints = _typing.get_type_hints(obj, include_extras=True)
                except NameError:  # pragma: no cover - a name imported under TYPE_CHECKING stays a string
                    hints = own
                obj.__annotations__ = {key: hints[key] for key in own}
        elif not isinstance(obj, _types.FunctionType):
            continue  # constants, and names resolved lazily by __getattr__
        obj.__module__ = module  # type: ignore[assignment]


_publish(globals(), __all__)


# Hidden from type checkers, which would otherwise accept any misspelt name as an ``object``; they
# see AsyncSecretCache and __version__ declared above.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Load ``AsyncSecretCache`` and ``__version__`` on first use, then keep them."""
        if name == "AsyncSecretCache":
            from secretcache._aio import AsyncSecretCache

            _publish({"__name__": __name__, name: AsyncSecretCache}, [name])
            value: object = AsyncSecretCache
        elif name == "__version__":
            from importlib.metadata import PackageNotFoundError, version

            try:
                value = version(__name__)
            except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
                value = "0.0.0"
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
