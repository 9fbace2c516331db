"""The backend's ``DatabaseWrapper`` (Django loads ``<ENGINE>.base``)."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base

from secretcache._cache import SecretCache
from secretcache.db._credentials import credentials
from secretcache.db._factory import ConnectionFactory

__all__ = ["DatabaseWrapper"]

_default_cache: SecretCache | None = None
_factories: dict[tuple[int, str], ConnectionFactory[Any]] = {}
_lock = threading.Lock()
_pending: ContextVar[tuple[Any, dict[str, Any]]] = ContextVar("secretcache_django_connect")


def _cache_for(settings: dict[str, Any]) -> SecretCache:
    global _default_cache
    cache = settings.get("SECRET_CACHE")
    if cache is not None:
        if not isinstance(cache, SecretCache):
            raise ImproperlyConfigured("DATABASES SECRET_CACHE must be a secretcache.SecretCache")
        return cache
    with _lock:
        if _default_cache is None:
            _default_cache = SecretCache.from_env()
        return _default_cache


def _connect(**credentials: Any) -> Any:
    wrapper, params = _pending.get()
    # The database Django asks for wins over the secret's: its test runner points NAME at the test
    # database, and NAME None at "postgres"; the secret's dbname only fills in an unset NAME.
    database = {"dbname": params["dbname"]} if params.get("dbname") else {}
    return base.DatabaseWrapper.get_new_connection(wrapper, {**params, **credentials, **database})


def _factory(cache: SecretCache, secret_id: str) -> ConnectionFactory[Any]:
    # One factory per cache and secret, shared by every thread's wrapper, so the rate limit on
    # forced refreshes holds process-wide.
    with _lock:
        key = (id(cache), secret_id)
        if key not in _factories:
            _factories[key] = ConnectionFactory(cache, secret_id, _connect, mapping="psycopg")
        return _factories[key]


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    """Django's PostgreSQL ``DatabaseWrapper``, connecting with a secret's current credentials."""

    def _secret(self) -> tuple[SecretCache, str]:
        secret_id = self.settings_dict.get("SECRET_ID")
        if not isinstance(secret_id, str) or not secret_id:
            raise ImproperlyConfigured("DATABASES entries using secretcache.db.django.postgresql need a SECRET_ID")
        options = self.settings_dict.get("OPTIONS") or {}
        if options.get("pool"):
            # Django's pool (5.1+) opens connections with the credentials it was built with, not
            # through this backend: it would fail at once (PoolTimeout after its timeout), and
            # could not follow a rotation. Refused before any connect, with what to use instead.
            raise ImproperlyConfigured(
                "secretcache.db.django.postgresql does not support OPTIONS['pool']: Django's pool connects "
                "without the secret's credentials and cannot follow a rotation; use CONN_MAX_AGE, or "
                "psycopg_pool with secretcache.db.psycopg_connection_class"
            )
        return _cache_for(self.settings_dict), secret_id

    def get_connection_params(self) -> dict[str, Any]:
        """Django's parameters, with ``NAME`` taken from the secret when the settings leave it empty.

        ``NAME`` ``None`` keeps Django's meaning: the ``postgres`` database (which Django's
        ``_nodb_cursor`` uses to create and drop test databases).
        """
        cache, secret_id = self._secret()
        if self.settings_dict.get("NAME", "") == "":
            dbname = credentials(cache, secret_id).dbname
            if dbname:
                self.settings_dict["NAME"] = dbname
        params: dict[str, Any] = super().get_connection_params()
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """Connect with the secret's credentials, recovering from a password rotation."""
        cache, secret_id = self._secret()
        token = _pending.set((self, conn_params))
        try:
            return _factory(cache, secret_id)()
        finally:
            _pending.reset(token)
