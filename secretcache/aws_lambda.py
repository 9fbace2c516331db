"""AWS Lambda: inject secrets into handlers from a process-wide cache.

A Lambda execution environment runs one handler invocation at a time and keeps the process
between invocations. A module-level cache therefore makes the first (cold) invocation fetch the
handler's secrets, in one ``BatchGetSecretValue`` call for up to 20 of them, and warm
invocations within the TTL make no API call at all::

    from secretcache.aws_lambda import inject_secrets, secret

    @inject_secrets(api_key="prod/payments/api-key", db=secret("prod/orders/db", json=True))
    def handler(event, context, *, api_key: str, db: dict):
        ...
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from secretcache._cache import SecretCache
from secretcache._keys import make_key
from secretcache._lazy import ClientUnusableError, Lazy

__all__ = ["SecretSpec", "default_cache", "handle_rotation_event", "inject_secrets", "reset_default_cache", "secret"]

logger = logging.getLogger("secretcache")

_P = ParamSpec("_P")
_R = TypeVar("_R")

DEFAULT_CACHE_WAIT = 30.0
"""Longest a thread waits, in seconds, for another thread building the default cache."""


def _lazy_default() -> Lazy[SecretCache]:
    return Lazy(None, SecretCache.from_env, wait=DEFAULT_CACHE_WAIT, what="the default secretcache cache")


_default = _lazy_default()
_default_lock = threading.Lock()  # guards swapping ``_default`` only; no cache is built under it


def default_cache() -> SecretCache:
    """The process-wide cache, built once from ``SECRETCACHE_*`` variables on first use.

    Thread-safe. Warm Lambda invocations reuse it, which is what makes them free. Concurrent
    first calls share one build; no lock is held while it runs (building may log through
    botocore, and a log handler may call this function on the same thread: it then gets a cache
    of its own building, the first one built being the default).

    Raises:
        ValueError: A ``SECRETCACHE_*`` variable is invalid (see :meth:`SecretCache.from_env`).
        RuntimeError: Another thread has been building the cache for 30 s, or calls nest more
            than three deep on one thread while it is built.
    """
    try:
        return _default.get()
    except ClientUnusableError as err:
        raise RuntimeError(str(err)) from None


def reset_default_cache() -> None:
    """Close and forget the process-wide cache; the next :func:`default_cache` builds a new one.

    For tests, and for re-reading ``SECRETCACHE_*`` variables.
    """
    global _default
    with _default_lock:
        old, _default = _default, _lazy_default()
    cache = old.peek()
    if cache is not None:
        cache.close()


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """What to inject for one handler keyword; build it with :func:`secret`."""

    secret_id: str
    key: str | None = None
    json: bool = False
    version_stage: str | None = None
    version_id: str | None = None
    binary: bool = False

    def read(self, cache: SecretCache) -> Any:
        """Read the value this spec asks for through ``cache``."""
        options: dict[str, Any] = {"version_stage": self.version_stage, "version_id": self.version_id}
        if self.binary:
            return cache.get_secret_binary(self.secret_id, **options)
        if self.json or self.key is not None:
            return cache.get_secret_json(self.secret_id, self.key, **options)
        return cache.get_secret_string(self.secret_id, **options)

    @property
    def batchable(self) -> bool:
        """Whether ``BatchGetSecretValue`` can fetch it (AWSCURRENT only)."""
        return self.version_id is None and self.version_stage in (None, "AWSCURRENT")


def secret(
    secret_id: str,
    *,
    key: str | None = None,
    json: bool = False,
    version_stage: str | None = None,
    version_id: str | None = None,
    binary: bool = False,
) -> SecretSpec:
    """Describe a secret to inject: the string (default), parsed JSON, one JSON key, or bytes.

    Args:
        secret_id: The secret's name, full ARN or partial ARN.
        key: Inject this key of the secret's JSON object (implies ``json``).
        json: Inject the secret parsed as JSON (a fresh copy per invocation).
        version_stage: A staging label other than AWSCURRENT.
        version_id: A specific version.
        binary: Inject ``SecretBinary`` as bytes.

    Raises:
        TypeError: An option has the wrong type, or is unknown.
        ValueError: ``binary`` together with ``key`` or ``json``.
        InvalidSecretRequestError: ``secret_id`` or ``version_stage`` is empty or too long, or
            ``version_id`` is not 32 to 64 characters long (checked as reads check them).
    """
    make_key(secret_id, version_stage, version_id)
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a str or None, not {type(key).__name__}")
    for name, value in (("json", json), ("binary", binary)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    if binary and (key is not None or json):
        raise ValueError(f"secret {secret_id!r}: binary=True cannot be combined with key= or json=True")
    return SecretSpec(secret_id, key, json or key is not None, version_stage, version_id, binary)


def inject_secrets(
    cache: SecretCache | None = None, **secrets: str | SecretSpec
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a Lambda handler so each named keyword argument receives a secret.

    Each keyword names a handler parameter; its value is a secret id (the ``SecretString`` is
    injected) or a :func:`secret` spec. On every invocation the AWSCURRENT secrets are warmed
    together with :meth:`SecretCache.prefetch` (one ``BatchGetSecretValue`` per 20 secrets when
    any is missing or stale, none when all are fresh), then read from the cache. An argument the
    caller passes explicitly, by keyword or by position, is left alone (handy in tests). Name,
    docstring and signature of the handler are kept (``functools.wraps``), so it stacks with
    other decorators such as Powertools' ``@logger.inject_lambda_context``. A coroutine function
    gets a coroutine function (``inspect.iscoroutinefunction`` holds), which reads its secrets on
    a worker thread when awaited, so the event loop never blocks on a fetch. Below
    ``@staticmethod`` or ``@classmethod``, the function it holds is decorated and held the same
    way. The wrapper's ``get_cache()`` returns the cache in use.

    Args:
        cache: The cache to read through; by default :func:`default_cache`.
        **secrets: Handler keyword -> secret id or :func:`secret` spec.

    Raises:
        TypeError: At decoration: no secrets declared, a value that is neither a secret id nor a
            spec, or a keyword the handler does not accept.
        SecretCacheError: At invocation, when a secret cannot be read (the typed error names the
            secret, never its value).
    """
    if cache is not None and not isinstance(cache, SecretCache):
        raise TypeError(f"cache must be a SecretCache or None, not {type(cache).__name__}")
    if not secrets:
        raise TypeError("inject_secrets() needs at least one keyword=secret_id")
    specs: dict[str, SecretSpec] = {}
    for name, declared in secrets.items():
        if isinstance(declared, str):
            specs[name] = secret(declared)
        elif isinstance(declared, SecretSpec):
            specs[name] = declared
        else:
            raise TypeError(f"{name}= must be a secret id or secret(...), not {type(declared).__name__}")
    batch = list(dict.fromkeys(spec.secret_id for spec in specs.values() if spec.batchable))

    def decorate(handler: Callable[_P, _R]) -> Callable[_P, _R]:
        if isinstance(handler, (staticmethod, classmethod)):  # decorated below @staticmethod/@classmethod
            return type(handler)(decorate(handler.__func__))
        positions = _check_accepts(handler, specs)

        def inject(in_use: SecretCache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            wanted = {
                name: spec
                for name, spec in specs.items()
                if name not in kwargs and positions.get(name, len(args)) >= len(args)
            }
            if wanted:
                in_use.prefetch([spec.secret_id for spec in wanted.values() if spec.secret_id in batch])
                for name, spec in wanted.items():
                    kwargs[name] = spec.read(in_use)

        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(handler):
            import asyncio  # only for a coroutine handler: `import secretcache` stays free of asyncio

            @functools.wraps(handler)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                await asyncio.to_thread(inject, cache or default_cache(), args, kwargs)  # never blocks the loop
                return await handler(*args, **kwargs)

        else:

            @functools.wraps(handler)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                inject(cache or default_cache(), args, kwargs)
                return handler(*args, **kwargs)

        wrapper.get_cache = lambda: cache or default_cache()  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _check_accepts(handler: Callable[..., Any], specs: Mapping[str, SecretSpec]) -> dict[str, int]:
    """Refuse a handler with no parameter for a secret; return the position of each one that may be passed so."""
    if not callable(handler):
        raise TypeError(f"inject_secrets decorates a handler function, not {type(handler).__name__}")
    parameters = inspect.signature(handler).parameters
    positions = {
        name: index
        for index, (name, parameter) in enumerate(parameters.items())
        if name in specs and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    }
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return positions
    accepted = {
        name
        for name, parameter in parameters.items()
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    refused = sorted(set(specs) - accepted)
    if refused:
        raise TypeError(
            f"{getattr(handler, '__qualname__', handler)!r} has no parameter {', '.join(map(repr, refused))} "
            "to inject into; add it (e.g. a keyword-only argument) or accept **kwargs"
        )
    return positions


def handle_rotation_event(event: Mapping[str, Any], cache: SecretCache | None = None) -> list[str]:
    """Invalidate the secret a Secrets Manager change event is about; return what was invalidated.

    For a Lambda subscribed (through EventBridge) to Secrets Manager events, so that it drops a
    rotated secret at once instead of serving it until its TTL. Delegates to
    :func:`secretcache.events.invalidate_from_event`, which understands CloudTrail API-call events
    (``PutSecretValue``, ``UpdateSecretVersionStage``, ``RotateSecret``, ...), the rotation
    service events, and the same wrapped in SNS or SQS. Unknown or malformed events invalidate
    nothing and never raise.
    """
    from secretcache.events import invalidate_from_event

    return invalidate_from_event(cache or default_cache(), event)
