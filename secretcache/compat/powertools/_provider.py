"""``SecretCacheProvider``: a Powertools secrets provider whose values come from a ``SecretCache``.

Public API of the cache only: every read is one of :class:`~secretcache.SecretCache`'s getters.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3

from secretcache import SecretCache, SecretCacheError, SecretUnavailableError
from secretcache.aws_lambda import default_cache
from secretcache.compat.powertools._powertools import (
    BaseProvider,
    ConfigWarning,
    GetParameterError,
    SecretsProvider,
    TransformParameterError,
)
from secretcache.compat.powertools._powertools import exceptions as _powertools_errors
from secretcache.compat.powertools._reads import check_transform, raw, read, ttl_of, version_options

GetSecretError: type[Exception] = getattr(_powertools_errors, "GetSecretError", GetParameterError)
"""What ``get_multiple`` raises: Powertools' ``GetSecretError``, new with its batch secret reads
(``get_secrets_by_name``, 2025); before them, ``GetParameterError`` as Powertools then raised."""

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters.types import TransformOptions
    from botocore.config import Config
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import CreateSecretResponseTypeDef

__all__ = ["GetSecretError", "SecretCacheProvider"]


class SecretCacheProvider(BaseProvider):
    """A Powertools secrets provider that reads through a :class:`~secretcache.SecretCache`.

    Use it wherever Powertools takes a provider, in place of ``SecretsProvider``, or through
    :mod:`secretcache.compat.powertools.parameters`. ``get``, ``get_multiple`` and ``set`` keep
    the signatures, return values and exception types of Powertools' ``SecretsProvider``; the
    values come from the cache, so concurrent reads of a cold secret make one call, secrets read
    regularly are refreshed in the background, and the last good value is served through an
    outage. Powertools' per-provider store (``self.store``) is bypassed and stays empty: the
    cache is the only copy, shared by every transform and every provider over the same cache.

    Safe to share across threads. It holds no resources of its own beyond the cache it builds
    when given Powertools' client arguments (closed with :meth:`SecretCache.close` via
    :attr:`cache`).

    Args:
        cache: The cache to read through. By default the process-wide
            :func:`secretcache.aws_lambda.default_cache`, looked up on each read (so it follows
            :func:`~secretcache.aws_lambda.reset_default_cache`) and built here once, so that
            invalid ``SECRETCACHE_*`` variables fail now rather than at the first read.
        config: Powertools' deprecated name of ``boto_config`` (warns as Powertools does).
        boto_config: A botocore ``Config`` for the client built from ``boto3_session``.
        boto3_session: The boto3 session to build the ``secretsmanager`` client from.
        boto3_client: The ``secretsmanager`` client to call (``boto3_session`` is then ignored).

    Given any of the last four, as to ``SecretsProvider``, the provider builds its own
    ``SecretCache`` over that client (default settings, ``send_current_stage=False``: a read of
    the current version sends only ``SecretId``, like Powertools), and :attr:`client` is that
    client, so a botocore ``Stubber`` on it sees the calls Powertools would make.

    Raises:
        TypeError: ``cache`` is not a :class:`~secretcache.SecretCache` or ``None``, or comes
            with Powertools' client arguments.
        ValueError: A ``SECRETCACHE_*`` variable is invalid (default cache only).
    """

    def __init__(
        self,
        cache: SecretCache | None = None,
        *,
        config: Config | None = None,
        boto_config: Config | None = None,
        boto3_session: boto3.session.Session | None = None,
        boto3_client: SecretsManagerClient | None = None,
    ) -> None:
        if cache is not None and not isinstance(cache, SecretCache):
            hint = " (pass Powertools' arguments by keyword: config=, boto_config=, ...)" if _is_boto(cache) else ""
            raise TypeError(f"cache must be a SecretCache or None, not {type(cache).__name__}{hint}")
        given = [
            name
            for name, value in (
                ("config", config),
                ("boto_config", boto_config),
                ("boto3_session", boto3_session),
                ("boto3_client", boto3_client),
            )
            if value is not None
        ]
        if cache is not None and given:
            raise TypeError(
                f"cache= cannot be combined with {', '.join(given)}: those build the provider's own cache; "
                "give the SecretCache its client instead"
            )
        if config is not None:
            warnings.warn(
                "The 'config' parameter is deprecated in V3 and will be removed in V4. "
                "Please use 'boto_config' instead.",
                category=ConfigWarning,
                stacklevel=2,
            )
        if given:
            if boto3_client is None:
                session = boto3_session or boto3.session.Session()
                boto3_client = session.client("secretsmanager", config=boto_config or config)
            cache = SecretCache(boto3_client, send_current_stage=False)
        elif cache is None:
            default_cache()
        # Powertools tags the client it was given or built with its user agent; a cache's own
        # client is the cache's business.
        super().__init__(client=boto3_client)  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
        self._cache = cache
        self._writer: SecretsProvider | None = None

    def __repr__(self) -> str:
        return f"SecretCacheProvider(cache={'default_cache()' if self._cache is None else repr(self._cache)})"

    @property
    def cache(self) -> SecretCache:
        """The cache values come from: the one given or built, else :func:`~secretcache.aws_lambda.default_cache`."""
        return self._cache if self._cache is not None else default_cache()

    @property
    def client(self) -> SecretsManagerClient:
        """The ``secretsmanager`` client the cache calls, as Powertools' ``SecretsProvider.client``.

        Attach a botocore ``Stubber`` to it to script answers. Built on first access when the
        cache builds its own.
        """
        return self.cache.client

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

        Arguments may be positional, in Powertools' order. A miss joins the fetch another
        thread is making.

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
            **sdk_options: ``VersionId`` and/or ``VersionStage`` to read another version
                (``SecretId`` is ignored: ``name`` wins, as in Powertools).

        Raises:
            GetParameterError: The secret could not be read (not found, access denied, Secrets
                Manager unavailable with nothing cached, an unsupported SDK option, ...);
                the secretcache error is chained as ``__cause__``.
            TransformParameterError: ``transform`` is unknown (before any call), or the value
                does not transform (invalid JSON or base64, JSON nested too deeply, binary data
                that is not UTF-8).
            TypeError: ``max_age`` is not a number (before any call).
            ValueError: ``POWERTOOLS_PARAMETERS_MAX_AGE`` is not an integer.
        """
        check_transform(transform)
        ttl = ttl_of(max_age)
        version_stage, version_id = version_options(sdk_options)
        try:
            return read(self.cache, name, transform, version_stage, version_id, bool(force_fetch), ttl)
        except TransformParameterError:
            raise
        except Exception as err:  # Powertools wraps every failed read in GetParameterError
            raise GetParameterError(str(err)) from err

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
            raise GetSecretError("You must provide at least one secret name")
        if isinstance(names, (str, bytes)) or not all(isinstance(name, str) for name in names):
            raise GetSecretError(f"names must be a list of secret names, not {type(names).__name__}")
        if sdk_options:
            raise GetSecretError(
                f"unsupported option(s) {', '.join(sorted(sdk_options))}: SecretCacheProvider.get_multiple() "
                "reads the named secrets only"
            )
        ttl = ttl_of(max_age)
        check_transform(transform)
        unique = list(dict.fromkeys(names))
        force = bool(force_fetch)
        cache = self.cache
        try:
            if not force and ttl > 0:  # a batch cannot force, nor give its values this read's TTL
                cache.prefetch(unique)
        except Exception as err:
            raise GetSecretError(f"Failed to retrieve secrets: {err}") from err
        values: dict[str, Any] = {}
        for name in unique:
            try:
                values[name] = read(cache, name, transform, None, None, force, ttl)
            except TransformParameterError:
                if raise_on_transform_error:
                    raise
                values[name] = None
            except SecretUnavailableError as err:  # an outage: Powertools' batch call would fail too
                raise GetSecretError(f"Failed to retrieve secrets: {err}") from err
            except SecretCacheError:  # one secret's answer (not found, denied, ...): left out
                continue
            except Exception as err:
                raise GetSecretError(f"Failed to retrieve secrets: {err}") from err
        if not values:
            raise GetSecretError(f"No secrets found matching the provided names: {names}")
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
        so ``parameters.set_secret`` keeps working; once it succeeded, the next read fetches the
        new value.

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
        version_stage, version_id = version_options(sdk_options)
        return raw(self.cache.get_secret(name, version_stage=version_stage, version_id=version_id))

    def _get_multiple(self, names: list[str], **sdk_options: Any) -> dict[str, Any]:  # type: ignore[override]
        """The raw values of ``names``, for Powertools' own code paths (see :meth:`get_multiple`)."""
        return self.get_multiple(names, **sdk_options)


def _is_boto(value: object) -> bool:
    """Whether ``value`` is one of Powertools' client arguments given positionally by mistake."""
    return type(value).__module__.split(".")[0] in ("botocore", "boto3")
