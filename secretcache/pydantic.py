"""A pydantic-settings source that reads Secrets Manager through a :class:`SecretCache`.

``SecretsManagerSettingsSource`` takes the arguments of pydantic-settings' own
``AWSSecretsManagerSettingsSource`` (the same nested-key delimiter rule, ``case_sensitive``,
``env_prefix``, the same defaults), so moving over is one import::

    from secretcache.pydantic import SecretsManagerSettingsSource

It reads through a cache: pydantic-settings builds its sources each time a settings object is
built, and the source of pydantic-settings calls ``GetSecretValue`` each time; this one costs a
cache hit, so settings may be built per request and follow rotations within the cache's TTL.
It also reads staging labels (``version_stage``), binary secrets holding a JSON document, and
nested JSON objects as nested models.

Needs ``pip install 'secretcache[pydantic-settings]'``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from pydantic_settings import EnvSettingsSource, SettingsError
except ImportError:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError(
        "secretcache.pydantic needs pydantic-settings: pip install 'secretcache[pydantic-settings]'"
    ) from None

from secretcache._cache import SecretCache
from secretcache._client import build_client
from secretcache._errors import SecretFormatError
from secretcache._json import parse_document

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from secretcache._aio import AsyncSecretCache

__all__ = ["SecretsManagerSettingsSource"]

_caches: dict[tuple[str | None, str | None], SecretCache] = {}
_caches_lock = threading.Lock()  # guards the dict only; no cache is built under it


def _shared_cache(region_name: str | None, endpoint_url: str | None) -> SecretCache:
    """The process-wide cache of sources given no cache: the default one, or one per Region and endpoint."""
    if region_name is None and endpoint_url is None:
        from secretcache.aws_lambda import default_cache

        return default_cache()
    key = (region_name, endpoint_url)
    found = _caches.get(key)
    if found is None:
        built = SecretCache(build_client(region_name, endpoint_url))
        with _caches_lock:
            found = _caches.setdefault(key, built)
        if found is not built:  # another thread built one first
            built.close()
    return found


class SecretsManagerSettingsSource(EnvSettingsSource):
    """Settings values from one Secrets Manager secret holding a JSON object, read through a cache.

    Each top-level key of the secret's JSON object is read as an environment variable would be
    by pydantic-settings' ``EnvSettingsSource``: ``env_prefix`` applies, keys match field names
    case-sensitively unless ``case_sensitive=False``, and a key such as ``database--password``
    fills the nested field ``database.password`` (``env_nested_delimiter``, default ``"--"``),
    exactly as pydantic-settings' ``AWSSecretsManagerSettingsSource`` does.

    Use it from ``settings_customise_sources``::

        class Settings(BaseSettings):
            database: Database

            @classmethod
            def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                           dotenv_settings, file_secret_settings):
                return (init_settings, env_settings,
                        SecretsManagerSettingsSource(settings_cls, "prod/orders/app", cache=CACHE))

    Differences from pydantic-settings' source, on purpose: the read is a cache hit (one
    ``GetSecretValue`` per TTL however many settings objects are built), a rotation is picked up
    within the TTL, ``version_stage`` reads a staging label, a binary secret holding a UTF-8
    JSON document is read too, and a key whose value is a JSON object (``{"database": {"host":
    ...}}``) fills a nested model (pydantic-settings' source fails on it with ``TypeError``).

    Args:
        settings_cls: The settings class (pydantic-settings passes it to
            ``settings_customise_sources``).
        secret_id: The secret's name, full ARN or partial ARN.
        cache: The cache to read through: a :class:`SecretCache`, or an
            :class:`AsyncSecretCache` whose underlying cache is used (a miss then blocks the
            calling thread). Default: a process-wide cache, the one of
            :func:`secretcache.aws_lambda.default_cache` (configured by ``SECRETCACHE_*``
            variables), or one per ``region_name`` and ``endpoint_url`` when given.
        version_stage: Staging label to read (default ``"AWSCURRENT"``).
        version_id: A version id to read (immutable).
        region_name: Region of the client of the process-wide cache (ignored with ``cache``).
        endpoint_url: Endpoint of the client of the process-wide cache (ignored with ``cache``).
        case_sensitive: Whether keys must match field names in case (default ``True``, as
            pydantic-settings' AWS source).
        env_prefix: Prefix every key carries (default: the settings class's ``env_prefix``).
        env_nested_delimiter: Separator of nested field names in keys (default ``"--"``).
        env_parse_none_str: A value read as ``None``.
        env_parse_enums: Whether enum fields accept member names.

    Raises:
        SecretFormatError: The secret is not a JSON object.
        SecretCacheError: The secret cannot be read; see :class:`SecretCache`.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        secret_id: str,
        *,
        cache: SecretCache | AsyncSecretCache | None = None,
        version_stage: str | None = None,
        version_id: str | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        case_sensitive: bool | None = True,
        env_prefix: str | None = None,
        env_nested_delimiter: str | None = "--",
        env_parse_none_str: str | None = None,
        env_parse_enums: bool | None = None,
    ) -> None:
        if cache is None:
            cache = _shared_cache(region_name, endpoint_url)
        elif not isinstance(cache, SecretCache):
            inner = getattr(cache, "cache", None)
            if not isinstance(inner, SecretCache):
                raise TypeError(f"cache must be a SecretCache or an AsyncSecretCache, not {type(cache).__name__}")
            cache = inner
        self._cache = cache
        self._secret_id = secret_id
        self._version_stage = version_stage
        self._version_id = version_id
        super().__init__(
            settings_cls,
            case_sensitive=case_sensitive,
            env_prefix=env_prefix,
            env_nested_delimiter=env_nested_delimiter,
            env_ignore_empty=False,
            env_parse_none_str=env_parse_none_str,
            env_parse_enums=env_parse_enums,
        )

    def __call__(self) -> dict[str, Any]:
        """The fields' values (``EnvSettingsSource``'s), with no error of the secret's values chained.

        pydantic-settings raises a ``SettingsError`` naming the field (a value it cannot decode,
        such as a complex field's text that is not JSON) from the error it met, and that error
        holds the value (``JSONDecodeError.doc``). The same message is raised here with the type
        of that error instead, built after the ``except`` block: nothing is chained.

        Raises:
            SettingsError: A value of the secret cannot be decoded for its field.
        """
        try:
            return super().__call__()
        except SettingsError as err:
            cause = err.__cause__ or err.__context__
            message = str(err) if cause is None else f"{err} ({type(cause).__name__}; the value is not shown)"
        raise SettingsError(message)

    def _load_env_vars(self) -> Mapping[str, Any]:
        """The secret's top-level keys and values, keyed as ``EnvSettingsSource`` expects (a cache hit)."""
        secret_id, stage, version = self._secret_id, self._version_stage, self._version_id
        value = self._cache.get_secret(secret_id, version_stage=stage, version_id=version)
        if value.secret_string is not None:  # parsed once per version by the cache; a copy per read
            document = self._cache.get_secret_json(secret_id, version_stage=stage, version_id=version)
        else:
            assert value.secret_binary is not None
            text = value.secret_binary.decode("utf-8", "replace")
            document = parse_document(text, secret_id, hint="a settings source needs a JSON object")
        if not isinstance(document, dict):
            raise SecretFormatError(
                f"secret {secret_id!r} is JSON but not an object; a settings source needs one", secret_id=secret_id
            )
        # A nested JSON object or array is handed on as the JSON text an environment variable
        # would hold, which EnvSettingsSource decodes for a complex field (pydantic-settings'
        # own source hands on the dict, and json.loads refuses it).
        document = {key: json.dumps(item) if isinstance(item, (dict, list)) else item for key, item in document.items()}
        none_str = self.env_parse_none_str
        if none_str is not None:
            from pydantic_settings.sources.types import EnvNoneType

            document = {key: EnvNoneType(item) if item == none_str else item for key, item in document.items()}
        if self.case_sensitive:
            return document
        return {key.lower(): item for key, item in document.items()}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(secret_id={self._secret_id!r}, env_nested_delimiter={self.env_nested_delimiter!r})"
        )
