"""Drop-in adapters: keep code written for another secrets cache, and get secretcache behind it.

- :mod:`secretcache.compat.aws_secretsmanager_caching`: the official ``aws-secretsmanager-caching``
  library's ``SecretCache``, ``SecretCacheConfig`` and decorators; change the import, keep the code.
- :mod:`secretcache.compat.powertools`: Powertools' ``parameters`` for secrets
  (``from secretcache.compat.powertools import parameters``) and ``SecretCacheProvider``, backed by
  a :class:`~secretcache.SecretCache` (extra ``secretcache[powertools]``).

Neither is imported by ``import secretcache``.
"""
