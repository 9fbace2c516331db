"""The official library's decorators, ``InjectSecretString`` and ``InjectKeywordedSecretString``.

Public through :mod:`secretcache.compat.aws_secretsmanager_caching`, whose docstring says how they
differ from the original's.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["InjectKeywordedSecretString", "InjectSecretString"]

_R = TypeVar("_R")

_MAX_UNWRAP = 32  # decorators followed down from a class attribute to find an injected function


class _SecretSource(Protocol):
    """What the decorators read from: this module's :class:`SecretCache`, the original's, or a test double."""

    def get_secret_string(self, secret_id: str, version_stage: str | None = None) -> str | None:
        """Return the secret's string."""


class InjectSecretString:
    """Decorator: pass a secret's string as the function's first argument (after ``self`` in a method).

    ``@InjectSecretString("id", cache)`` on ``def f(secret, a, b)`` makes ``f(a, b)`` call
    ``f(<string of "id">, a, b)``; the secret is read from ``cache`` at each call. Unlike the
    original, which guesses from the first argument's class, the wrapper knows when it is called
    as a method (it is a descriptor, like a function); called through its class, when the first
    argument is an instance of that class; and, under another decorator that is looked up on the
    class instead (``functools.wraps`` wrapper, ``functools.lru_cache``, ``property``,
    ``classmethod``), when the first argument's class (or the class passed as ``cls``) holds it
    under those decorators. A function kept in a class without ``self`` and called through the
    class gets the secret first. Thread-safe.

    Args:
        secret_id: The secret to read.
        cache: A :class:`SecretCache` (anything with ``get_secret_string(secret_id=...)``).
    """

    def __init__(self, secret_id: str, cache: _SecretSource) -> None:
        self.cache = cache
        self.secret_id = secret_id

    def __call__(self, func: Callable[..., _R]) -> Callable[..., _R]:
        """Return ``func`` with the secret injected; its name, docstring and signature are kept."""
        return _Injected(func, self._read)

    def _read(self) -> str | None:
        return self.cache.get_secret_string(secret_id=self.secret_id)


class _Injected(Generic[_R]):
    """A function with a secret injected first, or after ``self`` when it is called as a method."""

    def __init__(self, func: Callable[..., _R], read: Callable[[], str | None]) -> None:
        # Over a staticmethod (listed under this decorator): no instance, however it is looked up.
        self._static = isinstance(func, staticmethod)
        if isinstance(func, staticmethod):
            func = func.__func__
        self._func = func
        self._read = read
        # The classes holding this object directly in their body (``__set_name__``): their instances
        # come first when it is called through the class (``Base.connect(self, host)``).
        self._owners: tuple[weakref.ref[type[Any]], ...] = ()
        functools.update_wrapper(self, func)

        @functools.wraps(func)
        def method(instance: object, *args: Any, **kwargs: Any) -> _R:
            return func(instance, read(), *args, **kwargs)

        self._method = method

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._owners = (*self._owners, weakref.ref(owner))  # a new tuple: read without a lock

    def __call__(self, *args: Any, **kwargs: Any) -> _R:
        # Called with self (or cls) first: through the class, or through a decorator stacked over
        # this one; never for a static method.
        if args and not self._static and self._is_method_of(args[0]):
            return self._func(args[0], self._read(), *args[1:], **kwargs)
        return self._func(self._read(), *args, **kwargs)

    def _is_method_of(self, instance: object) -> bool:
        """Whether ``instance`` is the ``self`` (or ``cls``) of this very function.

        It is when its class (or, for a class, the class itself) holds this object: directly in a
        class body (an instance of that class or a subclass, as a method called through its class
        gets it), or under its name inside other decorators stacked over this one (a
        ``functools.wraps`` wrapper, ``functools.lru_cache``, ``property``, and ``classmethod``,
        which since Python 3.13 calls this object with ``cls`` first instead of binding it),
        which call this object directly with ``self`` first. The original guesses from the name
        alone; this follows the wrappers down (``__wrapped__``, ``fget``, ``__func__``, ``func``)
        and must find this object. A function kept in a class without ``self``
        (``Util.helper(text)``) is not called with one.
        """
        classes = list(type(instance).__mro__)  # the type's, not __class__: no code of the instance runs
        if any(owner() in classes for owner in self._owners):
            return True
        if isinstance(instance, type):
            classes += instance.__mro__
        name = self.__dict__["__name__"]
        return any(self._leads_here(vars(cls).get(name)) for cls in classes)

    def _leads_here(self, found: object) -> bool:
        """Whether ``found``, a class attribute, is this object inside other decorators."""
        for _ in range(_MAX_UNWRAP):
            if found is self:
                return True
            if isinstance(found, property):
                found = found.fget
            elif isinstance(found, (staticmethod, classmethod)):
                found = found.__func__
            elif isinstance(found, (functools.cached_property, functools.partialmethod)):
                found = found.func
            else:
                found = inspect.getattr_static(found, "__wrapped__", None)
            if found is None:
                return False
        return False

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Callable[..., _R]:
        if self._static or instance is None:
            # Looked up on a class, like a function: called as it is (see _is_method_of).
            return self
        return types.MethodType(self._method, instance)

    def __reduce__(self) -> str:
        return str(self.__dict__["__qualname__"])  # pickled by name, as a function is


class InjectKeywordedSecretString:
    """Decorator: pass keys of a JSON secret as keyword arguments.

    ``@InjectKeywordedSecretString("id", cache, user="username", pw="password")`` makes each call
    of the function pass ``user=`` and ``pw=`` from the secret's ``username`` and ``password``
    keys, read from ``cache`` at each call, plus the caller's own arguments. Thread-safe.

    Args:
        secret_id: The secret to read; its string must be a JSON object.
        cache: A :class:`SecretCache` (anything with ``get_secret_string(secret_id=...)``).
        **kwargs: Keyword argument of the function -> key of the JSON object.

    The wrapper raises ``RuntimeError`` when the secret is not valid JSON, is not a JSON object,
    has no string (it holds binary data, or no version carries the staging label), or lacks a
    key (the original's messages; it raises ``TypeError`` for the middle two). The messages name
    the secret id and the key, never a value.
    """

    def __init__(self, secret_id: str, cache: _SecretSource, **kwargs: str) -> None:
        self.cache = cache
        self.kwarg_map = kwargs
        self.secret_id = secret_id

    def __call__(self, func: Callable[..., _R]) -> Callable[..., _R]:
        """Return ``func`` with the keyword arguments injected; its name, docstring and signature are kept."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> _R:
            return func(*args, **self._resolve(), **kwargs)

        return wrapper

    def _resolve(self) -> dict[str, Any]:
        secret_id = self.secret_id
        text = self.cache.get_secret_string(secret_id=secret_id)
        if text is None:
            raise RuntimeError(
                f"Cached secret is not valid JSON: secret {secret_id!r} has no string value (it holds binary "
                "data, or no version carries the staging label read)"
            )
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            # Not chained: json's error carries the secret's text in its ``doc`` attribute.
            raise RuntimeError(f"Cached secret is not valid JSON (secret {secret_id!r})") from None
        if not isinstance(document, dict):
            raise RuntimeError(f"Cached secret is not a JSON object (secret {secret_id!r})")
        resolved = {}
        for name, key in self.kwarg_map.items():
            try:
                resolved[name] = document[key]
            except KeyError as err:
                raise RuntimeError(f"Cached secret does not contain key {key} (secret {secret_id!r})") from err
        return resolved
