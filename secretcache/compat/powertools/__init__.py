"""Powertools' ``parameters`` for secrets, with a :class:`~secretcache.SecretCache` underneath.

Install the extra (``pip install 'secretcache[powertools]'``) and change one import; code written
for Powertools keeps working, with single flight, refresh-ahead and stale-on-error underneath::

    # from aws_lambda_powertools.utilities import parameters
    from secretcache.compat.powertools import parameters

    def handler(event, context):
        api_key = parameters.get_secret("prod/payments/api-key")
        db = parameters.get_secret("prod/orders/db", transform="json")

:mod:`secretcache.compat.powertools.parameters` stands in for Powertools' module:
``get_secret``, ``get_secrets_by_name``, ``set_secret`` and ``clear_caches`` read and write
through a :class:`SecretCacheProvider`; ``SecretsProvider`` is :class:`SecretCacheProvider`
(with Powertools' ``boto3_client``, ``boto_config``, ``boto3_session`` and ``config``); every
other name (``get_parameter``, ``SSMProvider``, ``exceptions``, ...) is Powertools' own.

Code that keeps Powertools' import can instead call :func:`install` once: it makes a
:class:`SecretCacheProvider` Powertools' default secrets provider, until Powertools'
``clear_caches()`` forgets it (call ``install()`` again then).

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

from secretcache import SecretCache
from secretcache.compat.powertools import parameters
from secretcache.compat.powertools._powertools import DEFAULT_PROVIDERS
from secretcache.compat.powertools._provider import SecretCacheProvider

SecretCacheProvider.__module__ = __name__  # its public home, for tracebacks, pickle and the docs

__all__ = ["SecretCacheProvider", "install", "parameters", "uninstall"]


def install(cache: SecretCache | None = None) -> SecretCacheProvider:
    """Make a :class:`SecretCacheProvider` the default secrets provider of Powertools.

    Powertools' ``parameters.get_secret``, ``get_secrets_by_name`` and ``set_secret`` then go
    through it. Call it once, at import time of the handler's module. Powertools'
    ``clear_caches()`` forgets every default provider, this one included: call ``install()``
    again after it, or import :mod:`secretcache.compat.powertools.parameters` instead, whose
    functions need no ``install()`` and whose ``clear_caches()`` keeps the cache in charge.

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
