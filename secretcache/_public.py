"""Public module paths for the names the public modules re-export from private ones."""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy", "publish"]


def publish(namespace: dict[str, object], names: Iterable[str]) -> None:
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
                    hints = typing.get_type_hints(obj, include_extras=True)
                except NameError:  # pragma: no cover - a name imported under TYPE_CHECKING stays a string
                    hints = own
                obj.__annotations__ = {key: hints[key] for key in own}
        elif not isinstance(obj, types.FunctionType):
            continue  # constants, and names resolved lazily by a module __getattr__
        obj.__module__ = module  # type: ignore[assignment]


def lazy(namespace: dict[str, object], sources: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports each name of ``sources`` from its module on first use.

    The name is then published (:func:`publish`) and kept in ``namespace``, so it costs one import.
    A public module uses it for what would pull in a heavy dependency (asyncio) for everyone.
    """

    def __getattr__(name: str) -> object:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        publish({"__name__": namespace["__name__"], name: value}, [name])
        namespace[name] = value
        return value

    return __getattr__
