"""The public surface: a thin root whose __all__ is exactly its public names, typed and versioned."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import secretcache


def test_all_matches_public_names() -> None:
    """__all__ lists every public name of the package root and nothing else, sorted."""
    public = {name for name in vars(secretcache) if not name.startswith("_")} | {"__version__"}
    modules = {name for name in public if type(getattr(secretcache, name)).__name__ == "module"}
    assert set(secretcache.__all__) == public - modules
    assert list(secretcache.__all__) == sorted(secretcache.__all__)


def test_exported_objects_have_docstrings() -> None:
    """Every exported class and function documents itself."""
    for name in secretcache.__all__:
        if name == "__version__":
            continue
        assert (getattr(secretcache, name).__doc__ or "").strip(), name


def test_version_comes_from_package_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert secretcache.__version__ == importlib.metadata.version("secretcache")


def test_package_is_typed() -> None:
    """The py.typed marker ships with the package."""
    assert (Path(secretcache.__file__).parent / "py.typed").is_file()


def test_error_tree() -> None:
    """Every typed error derives from SecretCacheError; argument errors are also ValueErrors."""
    for name in secretcache.__all__:
        obj = getattr(secretcache, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, secretcache.SecretCacheError)
    assert issubclass(secretcache.InvalidSecretRequestError, ValueError)
    assert issubclass(secretcache.SecretFormatError, ValueError)
