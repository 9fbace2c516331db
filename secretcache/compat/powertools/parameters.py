"""A stand-in for ``aws_lambda_powertools.utilities.parameters`` whose secrets come from secretcache.

Change one import and keep the code::

    # from aws_lambda_powertools.utilities import parameters
    from secretcache.compat.powertools import parameters

    parameters.get_secret("prod/db", transform="json")      # through a SecretCache
    parameters.get_secrets_by_name(["a", "b"])               # one BatchGetSecretValue
    provider = parameters.SecretsProvider(boto3_client=client)  # a SecretCacheProvider
    parameters.clear_caches()                                # the next read fetches again
    parameters.get_parameter("/ssm/name")                    # Powertools' own, unchanged

The secrets functions take Powertools' arguments, return what Powertools returns and raise its
exception types. They use Powertools' default provider slot (``DEFAULT_PROVIDERS["secrets"]``):
when it is empty, or holds the ``SecretsProvider`` Powertools builds for itself, a
:class:`~secretcache.compat.powertools.SecretCacheProvider` over the process-wide
:func:`~secretcache.aws_lambda.default_cache` takes it; a provider put there by the
application (or by :func:`~secretcache.compat.powertools.install`) is used as it is.

``SecretsProvider`` is :class:`~secretcache.compat.powertools.SecretCacheProvider`. Every other
name is looked up in Powertools' own module, so SSM, AppConfig, DynamoDB, ``exceptions`` and
``base`` work as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secretcache.compat.powertools._powertools import DEFAULT_PROVIDERS
from secretcache.compat.powertools._powertools import BaseProvider as BaseProvider
from secretcache.compat.powertools._powertools import GetParameterError as GetParameterError
from secretcache.compat.powertools._powertools import SecretsProvider as _PowertoolsSecretsProvider
from secretcache.compat.powertools._powertools import TransformParameterError as TransformParameterError
from secretcache.compat.powertools._powertools import parameters as _powertools
from secretcache.compat.powertools._provider import GetSecretError as GetSecretError
from secretcache.compat.powertools._provider import SecretCacheProvider

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters.types import TransformOptions
    from mypy_boto3_secretsmanager.type_defs import CreateSecretResponseTypeDef

__all__ = ["clear_caches", "get_secret", "get_secrets_by_name", "set_secret"]

SecretsProvider = SecretCacheProvider
"""Powertools' secrets provider class, read through a cache: ``SecretsProvider(boto3_client=client)``."""


def get_secret(
    name: str,
    transform: TransformOptions = None,
    force_fetch: bool = False,
    max_age: int | None = None,
    **sdk_options: Any,
) -> Any:
    """Read a secret as Powertools' ``parameters.get_secret`` does, through the cache.

    Args:
        name: The secret's name, full ARN or partial ARN.
        transform: ``None``, ``"json"``, ``"binary"`` or ``"auto"``, as Powertools.
        force_fetch: Fetch now even if a fresh value is cached.
        max_age: Seconds a value fetched by this read lives; ``None`` reads
            ``POWERTOOLS_PARAMETERS_MAX_AGE``, else 300.
        **sdk_options: ``VersionId`` and/or ``VersionStage``.

    Raises:
        GetParameterError: The secret could not be read (the secretcache error chained).
        TransformParameterError: The transform is unknown or the value does not transform.
    """
    return _provider().get(name, max_age=max_age, transform=transform, force_fetch=force_fetch, **sdk_options)


def get_secrets_by_name(
    names: list[str],
    transform: TransformOptions = None,
    force_fetch: bool = False,
    max_age: int | None = None,
    **sdk_options: Any,
) -> dict[str, Any]:
    """Read several secrets as Powertools' ``parameters.get_secrets_by_name`` does, through the cache.

    Secrets not fresh in the cache are fetched with ``BatchGetSecretValue`` (20 per call); see
    :meth:`SecretCacheProvider.get_multiple <secretcache.compat.powertools.SecretCacheProvider.get_multiple>`.

    Raises:
        GetSecretError: No names, SDK options, an outage with nothing cached, or nothing found.
        TransformParameterError: The transform is unknown.
    """
    if not names:
        raise GetSecretError("You must provide at least one secret name")
    provider = _provider()  # SecretsProvider's get_multiple: names, not BaseProvider's path
    values: dict[str, Any] = provider.get_multiple(
        names, max_age=max_age, transform=transform, force_fetch=force_fetch, **sdk_options
    )
    return values


def set_secret(
    name: str,
    value: str | bytes,
    *,
    client_request_token: str | None = None,
    **sdk_options: Any,
) -> CreateSecretResponseTypeDef:
    """Write a secret as Powertools' ``parameters.set_secret`` does; the next read fetches it.

    Raises:
        SetSecretError: The write failed (from Powertools).
    """
    written: CreateSecretResponseTypeDef = _provider().set(
        name, value, client_request_token=client_request_token, **sdk_options
    )
    return written


def clear_caches() -> None:
    """Powertools' ``clear_caches()``, and drop the values of the secrets provider's cache.

    Every default provider is forgotten, as in Powertools; the next secret read fetches again
    and still goes through the cache (no ``install()`` needed).
    """
    provider = DEFAULT_PROVIDERS.get("secrets")
    if isinstance(provider, SecretCacheProvider):
        provider.clear_cache()
    _powertools.clear_caches()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated


def _provider() -> SecretCacheProvider | _PowertoolsSecretsProvider:
    """The default secrets provider: the one in Powertools' slot, unless Powertools built it itself."""
    provider = DEFAULT_PROVIDERS.get("secrets")
    if provider is None or type(provider) is _PowertoolsSecretsProvider:
        provider = DEFAULT_PROVIDERS["secrets"] = SecretCacheProvider()
    return provider


def __getattr__(name: str) -> Any:
    """Every other name is Powertools' own (``get_parameter``, ``SSMProvider``, ``exceptions``, ...)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_powertools, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(dir(_powertools)))
