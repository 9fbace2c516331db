"""A Powertools ``parameters`` provider whose values come from a :class:`~secretcache.SecretCache`.

Install the extra (``pip install 'secretcache[powertools]'``) and add one line before the
handler; code written for Powertools keeps working, with single flight, refresh-ahead and
stale-on-error underneath::

    from aws_lambda_powertools.utilities import parameters
    from secretcache.compat.powertools import install

    install()  # parameters.get_secret() now reads through secretcache's process-wide cache

    def handler(event, context):
        api_key = parameters.get_secret("prod/payments/api-key")
        db = parameters.get_secret("prod/orders/db", transform="json")

:func:`install` makes a :class:`SecretCacheProvider` the default secrets provider of
``parameters.get_secret``, ``get_secrets_by_name`` and ``set_secret``; :func:`uninstall` gives
them back to Powertools. A provider can also be passed wherever Powertools takes one.

How Powertools' arguments map to the cache:

============================  ==================================================================
Powertools                    secretcache
============================  ==================================================================
``name``                      ``secret_id`` (a name, full ARN or partial ARN)
``max_age=None``              resolved as Powertools does: ``POWERTOOLS_PARAMETERS_MAX_AGE``,
                              else 300 s
``max_age=N``                 ``ttl=N`` for the fetch this read causes and the refreshes that
                              follow it; a value already cached is served until its own TTL
                              (as in Powertools, where ``max_age`` is stored with the value)
``max_age<=0``                ``ttl=0``: every read fetches (concurrent reads share the fetch)
``force_fetch=True``          ``force_refresh=True`` (during an outage the cached value is served)
``transform``                 applied to the cached value like Powertools does; JSON is parsed
                              once per version and each read gets its own copy
``VersionId=``,               ``version_id=``, ``version_stage=``, cached per version
``VersionStage=``
``get_multiple(names)``       :meth:`SecretCache.prefetch` (one ``BatchGetSecretValue`` per 20
                              secrets not fresh), then one read per name
============================  ==================================================================

Errors keep Powertools' types: :class:`GetParameterError` for a failed read (chained from the
typed secretcache error), :class:`TransformParameterError` for a failed transform,
``GetSecretError`` for ``get_multiple``. Unlike Powertools' messages, none holds or chains a
secret value. The cache's own ``ttl``/``ttl_overrides`` (``SECRETCACHE_TTL``) apply to reads
made on the cache directly and to values warmed by ``get_multiple``'s batch; ``max_age`` to
values fetched through :meth:`SecretCacheProvider.get`.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from secretcache._cache import SecretCache, store_of
from secretcache._entry import Entry, json_of, value_of
from secretcache._errors import SecretCacheError, SecretFormatError, SecretUnavailableError
from secretcache._json import parse_document
from secretcache._keys import check_read
from secretcache.aws_lambda import default_cache

try:
    from aws_lambda_powertools.shared.constants import PARAMETERS_MAX_AGE_ENV
    from aws_lambda_powertools.utilities.parameters import BaseProvider, SecretsProvider
    from aws_lambda_powertools.utilities.parameters import exceptions as _powertools_errors
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_MAX_AGE_SECS, DEFAULT_PROVIDERS
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
except ImportError as err:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "secretcache.compat.powertools needs aws-lambda-powertools: pip install 'secretcache[powertools]'"
    ) from err

_GetSecretError: type[Exception] = getattr(_powertools_errors, "GetSecretError", GetParameterError)
"""What ``get_multiple`` raises: Powertools' ``GetSecretError``, new with its batch secret reads
(``get_secrets_by_name``, 2025); before them, ``GetParameterError`` as Powertools then raised."""

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters.types import TransformOptions
    from mypy_boto3_secretsmanager.type_defs import CreateSecretResponseTypeDef

__all__ = ["SecretCacheProvider", "install", "uninstall"]

_TRANSFORMS = {"json": "json", ".json": "json", "binary": "binary", ".binary": "binary", "auto": "auto"}
"""Transform names Powertools accepts (its ``TRANSFORM_METHOD_MAPPING``) -> what they do."""

_READ_OPTIONS = frozenset({"SecretId", "VersionId", "VersionStage"})
"""The ``GetSecretValue`` parameters; ``SecretId`` is ignored, as Powertools' ``name`` overrides it."""


class SecretCacheProvider(BaseProvider):
    """A Powertools secrets provider that reads through a :class:`~secretcache.SecretCache`.

    Use it wherever Powertools takes a provider, or make it the default of
    ``parameters.get_secret`` with :func:`install`. ``get`` and ``get_multiple`` keep the
    signatures, return values and exception types of Powertools' ``SecretsProvider``; the values
    come from the cache, so concurrent reads of a cold secret make one call, secrets read
    regularly are refreshed in the background, and the last good value is served through an
    outage. Powertools' per-provider store (``self.store``) is bypassed and stays empty: the
    cache is the only copy, shared by every transform and every provider over the same cache.

    Safe to share across threads. It holds no resources of its own: closing is the cache's
    business.

    Args:
        cache: The cache to read through; by default the process-wide
            :func:`secretcache.aws_lambda.default_cache`, looked up on each read (so it follows
            :func:`~secretcache.aws_lambda.reset_default_cache`) and built here once, so that
            invalid ``SECRETCACHE_*`` variables fail now rather than at the first read.

    Raises:
        TypeError: ``cache`` is not a :class:`~secretcache.SecretCache` or ``None``.
        ValueError: A ``SECRETCACHE_*`` variable is invalid (``cache=None`` only).
    """

    def __init__(self, cache: SecretCache | None = None) -> None:
        if cache is not None and not isinstance(cache, SecretCache):
            raise TypeError(f"cache must be a SecretCache or None, not {type(cache).__name__}")
        if cache is None:
            default_cache()
        # No client for Powertools to tag with its user agent: the cache owns the client.
        super().__init__()  # type: ignore[no-untyped-call]  # Powertools leaves BaseProvider.__init__ unannotated
        self._cache = cache
        self._writer: SecretsProvider | None = None

    def __repr__(self) -> str:
        return f"SecretCacheProvider(cache={'default_cache()' if self._cache is None else repr(self._cache)})"

    @property
    def cache(self) -> SecretCache:
        """The cache values come from: the one given, else :func:`~secretcache.aws_lambda.default_cache`."""
        return self._cache if self._cache is not None else default_cache()

    @overload
    def get(
        self,
        name: str,
        max_age: int | None = None,
        transform: None = None,
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> str | bytes: ...

    @overload
    def get(
        self,
        name: str,
        max_age: int | None = None,
        *,
        transform: Literal["binary"],
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> bytes: ...

    @overload
    def get(
        self,
        name: str,
        max_age: int | None = None,
        transform: TransformOptions = None,
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> Any: ...

    def get(
        self,
        name: str,
        max_age: int | None = None,
        transform: TransformOptions = None,
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> Any:
        """Return a secret's value from the cache, fetching it only when the cache must.

        Arguments may be positional, in Powertools' order. A hit takes no lock and makes no
        call, whatever the arguments; a miss joins the fetch another thread is making.

        Args:
            name: The secret's name, full ARN or partial ARN.
            max_age: Seconds a value fetched by this read lives (its ``ttl``); ``None`` reads
                ``POWERTOOLS_PARAMETERS_MAX_AGE``, else 300, as Powertools does; ``<= 0``
                fetches on every read.
            transform: ``None`` (the ``SecretString``, or the ``SecretBinary`` bytes),
                ``"json"`` (parsed JSON), ``"binary"`` (the value base64-decoded to bytes) or
                ``"auto"`` (by the name's suffix ``.json`` / ``.binary``; else the value as
                text), exactly as Powertools transforms.
            force_fetch: Fetch now even if a fresh value is cached (``force_refresh``); if
                the fetch fails transiently, the cached value is served.
            **sdk_options: ``VersionId`` and/or ``VersionStage`` to read another version.

        Raises:
            GetParameterError: The secret could not be read (not found, access denied, Secrets
                Manager unavailable with nothing cached, an unsupported SDK option, ...);
                the secretcache error is chained as ``__cause__``.
            TransformParameterError: ``transform`` is unknown (before any call), or the value
                does not transform (invalid JSON or base64, binary data that is not UTF-8).
            TypeError: ``max_age`` is not a number (before any call).
            ValueError: ``POWERTOOLS_PARAMETERS_MAX_AGE`` is not an integer.
        """
        _check_transform(transform)
        store = store_of(self.cache)
        force = bool(force_fetch)  # Powertools tests truthiness
        if not force and not sdk_options:
            entry = store.hit(name)  # a non-str misses; check_read then says why
            if entry is not None:  # fresh: max_age would only matter to a fetch
                return _transform(entry, name, transform)
        ttl = _ttl(max_age)
        version_stage, version_id = _version_options(sdk_options)
        try:
            entry = store.read(*check_read(name, version_stage, version_id, force, ttl))
        except Exception as err:  # Powertools wraps every failed read in GetParameterError
            raise GetParameterError(str(err)) from err
        return _transform(entry, name, transform)

    def get_multiple(  # type: ignore[override]  # SecretsProvider's signature: names, not a path
        self,
        names: list[str],
        max_age: int | None = None,
        transform: TransformOptions = None,
        raise_on_transform_error: bool = False,
        force_fetch: bool = False,
        **sdk_options: Any,
    ) -> dict[str, Any]:
        """Return several secrets by name, as Powertools' ``SecretsProvider.get_multiple`` does.

        Secrets that are not fresh in the cache are fetched with :meth:`SecretCache.prefetch`
        (one ``BatchGetSecretValue`` per 20), then each is read like :meth:`get`. Batch-fetched
        values live for the cache's own TTL; ``max_age`` applies to secrets fetched one by one
        (with ``force_fetch``, ``max_age <= 0``, or when the batch could not fetch them).

        Args:
            names: The secrets' names or ARNs.
            max_age: See :meth:`get`.
            transform: See :meth:`get`; ``"auto"`` looks at each name's suffix.
            raise_on_transform_error: Raise on the first value that does not transform, instead
                of returning ``None`` for it.
            force_fetch: Fetch each secret now (one ``GetSecretValue`` each).
            **sdk_options: None are supported (Powertools passes them to the batch call).

        Returns:
            Each name whose secret could be read -> its (transformed) value. Secrets that do
            not exist, may not be read or cannot be decrypted are left out, as Powertools
            leaves out the batch call's per-secret errors; unlike Powertools, secrets whose
            names merely start with a requested name are not added.

        Raises:
            GetSecretError: No names, names that are not a list of strings, SDK options, a
                secret unavailable with nothing cached (an outage), or no secret found at all.
            TransformParameterError: ``transform`` is unknown (before any call), or a value
                does not transform and ``raise_on_transform_error`` is set.
            TypeError: ``max_age`` is not a number (before any call).
        """
        if not names:
            raise _GetSecretError("You must provide at least one secret name")
        if isinstance(names, (str, bytes)) or not all(isinstance(name, str) for name in names):
            raise _GetSecretError(f"names must be a list of secret names, not {type(names).__name__}")
        if sdk_options:
            raise _GetSecretError(
                f"unsupported option(s) {', '.join(sorted(sdk_options))}: SecretCacheProvider.get_multiple() "
                "reads the named secrets only"
            )
        ttl = _ttl(max_age)
        _check_transform(transform)
        entries = self._entries(list(dict.fromkeys(names)), bool(force_fetch), ttl)
        values: dict[str, Any] = {}
        for name, entry in entries.items():
            try:
                values[name] = _transform(entry, name, transform)
            except TransformParameterError:
                if raise_on_transform_error:
                    raise
                values[name] = None
        return values

    def set(
        self,
        name: str,
        value: str | bytes | dict[str, Any],
        *,
        client_request_token: str | None = None,
        **sdk_options: Any,
    ) -> CreateSecretResponseTypeDef:
        """Write a secret with Powertools' ``SecretsProvider.set``, then drop it from the cache.

        The write goes through the cache's client (``PutSecretValue``, else ``CreateSecret``),
        so ``parameters.set_secret`` keeps working after :func:`install`; once it succeeded,
        the next read fetches the new value.

        Raises:
            SetSecretError: The write failed (from Powertools).
        """
        cache = self.cache
        client = cache.client
        writer = self._writer  # racing threads may each build one: harmless, the last one is kept
        if writer is None or writer.client is not client:
            writer = self._writer = SecretsProvider(boto3_client=client)
        result = writer.set(name, value, client_request_token=client_request_token, **sdk_options)
        cache.invalidate(name)
        return result

    def clear_cache(self) -> None:
        """Drop every value of the cache (:meth:`SecretCache.invalidate`), as Powertools empties its store.

        The cache may be shared (the default one is process-wide): other readers refetch too.
        """
        self.cache.invalidate()

    def has_not_expired_in_cache(self, key: tuple[Any, ...]) -> bool:
        """Always ``False``: Powertools' store is not used, so its lookups always miss."""
        return False

    def add_to_cache(self, key: tuple[Any, ...], value: Any, max_age: int) -> None:
        """Do nothing: values are cached by the :class:`~secretcache.SecretCache`, never twice."""

    def _get(self, name: str, **sdk_options: Any) -> str | bytes:
        """The raw value (``SecretString`` or ``SecretBinary``), for Powertools' own code paths."""
        version_stage, version_id = _version_options(sdk_options)
        return _raw(_read(self.cache, name, version_stage, version_id, False, None))

    def _get_multiple(self, names: list[str], **sdk_options: Any) -> dict[str, Any]:  # type: ignore[override]
        """The raw values of ``names``, for Powertools' own code paths (see :meth:`get_multiple`)."""
        return self.get_multiple(names, **sdk_options)

    def _entries(self, names: list[str], force: bool, ttl: float) -> dict[str, Entry]:
        """Read ``names``, warming them with one batch call per 20 first when that is allowed."""
        cache = self.cache
        try:
            if not force and ttl > 0:  # a batch cannot force, nor give its values this read's TTL
                cache.prefetch(names)
        except Exception as err:
            raise _GetSecretError(f"Failed to retrieve secrets: {err}") from err
        entries: dict[str, Entry] = {}
        for name in names:
            try:
                entries[name] = _read(cache, name, None, None, force, ttl)
            except SecretUnavailableError as err:  # an outage: Powertools' batch call would fail too
                raise _GetSecretError(f"Failed to retrieve secrets: {err}") from err
            except SecretCacheError:  # one secret's answer (not found, denied, ...): left out
                continue
            except Exception as err:
                raise _GetSecretError(f"Failed to retrieve secrets: {err}") from err
        if not entries:
            raise _GetSecretError(f"No secrets found matching the provided names: {names}")
        return entries


def install(cache: SecretCache | None = None) -> SecretCacheProvider:
    """Make a :class:`SecretCacheProvider` the default secrets provider of Powertools.

    ``parameters.get_secret``, ``get_secrets_by_name`` and ``set_secret`` then go through it.
    Call it once, at import time of the handler's module. Powertools' ``clear_caches()``
    forgets every default provider, this one included: call ``install()`` again after it.

    Args:
        cache: The cache to read through; by default the process-wide
            :func:`secretcache.aws_lambda.default_cache`.

    Returns:
        The provider installed.

    Raises:
        TypeError: ``cache`` is not a :class:`~secretcache.SecretCache` or ``None``.
        ValueError: A ``SECRETCACHE_*`` variable is invalid (``cache=None`` only).
    """
    provider = SecretCacheProvider(cache)
    DEFAULT_PROVIDERS["secrets"] = provider
    return provider


def uninstall() -> bool:
    """Undo :func:`install`: Powertools builds its own ``SecretsProvider`` again on next use.

    Returns:
        Whether a :class:`SecretCacheProvider` was the default and has been removed (a provider
        of any other class is left in place).
    """
    if isinstance(DEFAULT_PROVIDERS.get("secrets"), SecretCacheProvider):
        DEFAULT_PROVIDERS.pop("secrets", None)
        return True
    return False


def _read(
    cache: SecretCache, name: object, version_stage: object, version_id: object, force: bool, ttl: float | None
) -> Entry:
    """The cache entry for one read: the lock-free hit when possible, else the store's slow path.

    A per-read TTL only matters to the fetch a read causes, so a fresh cached value is served
    from the hot path even though Powertools passes ``max_age`` on every read.

    Raises:
        SecretCacheError: The typed error of the read (TypeError for an argument of the wrong type).
    """
    store = store_of(cache)
    if not force and version_stage is None and version_id is None:
        entry = store.hit(name)  # type: ignore[arg-type]  # a non-key misses; check_read then says why
        if entry is not None:
            return entry
    return store.read(*check_read(name, version_stage, version_id, force, ttl))


def _ttl(max_age: object) -> float:
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


def _check_transform(transform: object) -> None:
    """Refuse, before any call, a transform Powertools would fail on after fetching.

    Raises:
        TransformParameterError: Not one of ``None``, ``"json"``, ``"binary"``, ``"auto"``.
    """
    if transform and not (isinstance(transform, str) and transform in _TRANSFORMS):
        raise TransformParameterError(
            f"Unable to transform value using '{transform}' transform: unknown transform; "
            "use 'json', 'binary', 'auto' or None"
        )


def _version_options(sdk_options: Mapping[str, Any]) -> tuple[Any, Any]:
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


def _raw(entry: Entry) -> str | bytes:
    """The ``SecretString``, or the ``SecretBinary`` bytes, as Powertools' ``SecretsProvider`` returns."""
    value = value_of(entry)
    if value.secret_string is not None:
        return value.secret_string
    return value.secret_binary if value.secret_binary is not None else b""


def _transform(entry: Entry, name: str, transform: str | None) -> Any:
    """The entry's value transformed exactly as Powertools' ``transform_value`` would.

    Powertools decodes binary values as UTF-8 before any transform, and picks the ``"auto"``
    transform from the text after the name's last dot. The error is raised after the ``except``
    block, chained only from a secretcache error: nothing reachable from it holds the value
    (``UnicodeDecodeError`` holds the bytes, ``JSONDecodeError`` the document).

    Raises:
        TransformParameterError: The value does not transform.
    """
    if not transform:
        string = entry.string
        return string if string is not None else _raw(entry)
    kind: str | None = _TRANSFORMS[transform]
    if kind == "auto":
        suffix = name.rsplit(".", maxsplit=1)[-1]
        kind = suffix if suffix in ("json", "binary") else None
    value = value_of(entry)
    cause: SecretFormatError | None = None
    try:
        if value.secret_string is not None:
            if kind == "json":
                return json_of(entry, name, None)  # parsed once per version; a private copy each time
            return value.secret_string if kind is None else base64.b64decode(value.secret_string)
        text = (value.secret_binary or b"").decode("utf-8")
        if kind == "json":
            return parse_document(text, name)
        return text if kind is None else base64.b64decode(text)
    except SecretFormatError as err:  # its message gives a position, never the value
        cause, problem = err, str(err)
    except UnicodeDecodeError as err:
        problem = f"secret {name!r} holds binary data that is not UTF-8 text (byte {err.start})"
    except (binascii.Error, ValueError) as err:  # base64: the message never quotes the input
        problem = str(err)
    raise TransformParameterError(f"Unable to transform value using '{transform}' transform: {problem}") from cause
