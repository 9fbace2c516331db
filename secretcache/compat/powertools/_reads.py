"""Reads for the Powertools adapter: Powertools' arguments checked, the cache read, the value transformed.

Public API of the cache only: every read is one of :class:`~secretcache.SecretCache`'s getters.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from secretcache import SecretCache, SecretFormatError, SecretValue
from secretcache.compat.powertools._powertools import (
    DEFAULT_MAX_AGE_SECS,
    PARAMETERS_MAX_AGE_ENV,
    GetParameterError,
    TransformParameterError,
)

__all__ = ["check_transform", "raw", "read", "ttl_of", "version_options"]

_TRANSFORMS = {"json": "json", ".json": "json", "binary": "binary", ".binary": "binary", "auto": "auto"}
"""Transform names Powertools accepts (its ``TRANSFORM_METHOD_MAPPING``) -> what they do."""

_READ_OPTIONS = frozenset({"SecretId", "VersionId", "VersionStage"})
"""The ``GetSecretValue`` parameters; ``SecretId`` is ignored, as Powertools' ``name`` overrides it."""


def read(
    cache: SecretCache,
    name: str,
    transform: str | None,
    version_stage: str | None,
    version_id: str | None,
    force: bool,
    ttl: float,
) -> Any:
    """One read through the cache's public getters, transformed as Powertools' ``transform_value``.

    JSON is parsed by :meth:`SecretCache.get_secret_json`, once per version, a private copy
    each time. Powertools decodes binary values as UTF-8 before any transform, and picks the
    ``"auto"`` transform from the text after the name's last dot. A transform error is raised
    outside any ``except`` block and chained only from a secretcache error: nothing reachable
    from it holds the value (``UnicodeDecodeError`` holds the bytes, ``JSONDecodeError`` the
    document).

    Raises:
        SecretCacheError: The read failed (``TypeError`` for an argument of the wrong type).
        TransformParameterError: The value does not transform.
    """
    kind = _TRANSFORMS[transform] if transform else None
    if kind == "auto":
        suffix = name.rsplit(".", maxsplit=1)[-1]
        kind = suffix if suffix in ("json", "binary") else None
    cause: SecretFormatError | None = None
    if kind == "json":
        try:
            return cache.get_secret_json(
                name, version_stage=version_stage, version_id=version_id, force_refresh=force, ttl=ttl
            )
        except SecretFormatError as err:  # not JSON, or binary data: which one, the value says
            cause = err
            force = False  # the value was just fetched and is cached (with max_age <= 0 this reads it again)
    value = cache.get_secret(name, version_stage=version_stage, version_id=version_id, force_refresh=force, ttl=ttl)
    if not transform:
        return raw(value)
    if cause is not None and value.secret_string is not None:
        raise TransformParameterError(f"Unable to transform value using '{transform}' transform: {cause}") from cause
    try:
        text = value.secret_string if value.secret_string is not None else (value.secret_binary or b"").decode()
        if kind is None:  # "auto" on a name without a known suffix: the value as text
            return text
        return json.loads(text) if kind == "json" else base64.b64decode(text)
    except json.JSONDecodeError as err:  # its message gives a position, never the document
        problem = f"{err.msg}: line {err.lineno} column {err.colno} (char {err.pos})"
    except RecursionError:  # json.loads recurses once per nested array or object
        problem = f"secret {name!r} is JSON nested too deeply to parse"
    except UnicodeDecodeError as err:
        problem = f"secret {name!r} holds binary data that is not UTF-8 text (byte {err.start})"
    except (binascii.Error, ValueError) as err:  # base64: the message never quotes the input
        problem = str(err)
    raise TransformParameterError(f"Unable to transform value using '{transform}' transform: {problem}")


def raw(value: SecretValue) -> str | bytes:
    """The ``SecretString``, or the ``SecretBinary`` bytes, as Powertools' ``SecretsProvider`` returns."""
    if value.secret_string is not None:
        return value.secret_string
    return value.secret_binary if value.secret_binary is not None else b""


def ttl_of(max_age: object) -> float:
    """``max_age`` resolved as Powertools does (argument, environment, 300 s), as a TTL >= 0.

    Raises:
        TypeError: Not a number.
        ValueError: NaN, or ``POWERTOOLS_PARAMETERS_MAX_AGE`` is not an integer.
    """
    if max_age is None:
        max_age = int(os.getenv(PARAMETERS_MAX_AGE_ENV, DEFAULT_MAX_AGE_SECS))
    if not isinstance(max_age, (int, float)) or isinstance(max_age, bool):
        raise TypeError(f"max_age must be seconds (an int), not {type(max_age).__name__}")
    if math.isnan(max_age):
        raise ValueError("max_age must be a number of seconds, not NaN")
    return max(float(max_age), 0.0)  # Powertools caches nothing for max_age <= 0: fetch every time


def check_transform(transform: object) -> None:
    """Refuse, before any call, a transform Powertools would fail on after fetching.

    Raises:
        TransformParameterError: Not one of ``None``, ``"json"``, ``"binary"``, ``"auto"``.
    """
    if transform and not (isinstance(transform, str) and transform in _TRANSFORMS):
        raise TransformParameterError(
            f"Unable to transform value using '{transform}' transform: unknown transform; "
            "use 'json', 'binary', 'auto' or None"
        )


def version_options(sdk_options: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(version_stage, version_id)`` from ``GetSecretValue`` options.

    Raises:
        GetParameterError: An option ``GetSecretValue`` does not take (Powertools' botocore
            call would refuse it too), before any call.
    """
    unknown = sorted(set(sdk_options) - _READ_OPTIONS)
    if unknown:
        raise GetParameterError(
            f"unsupported option(s) {', '.join(unknown)}: SecretCacheProvider.get() takes VersionId and VersionStage"
        )
    return sdk_options.get("VersionStage"), sdk_options.get("VersionId")
