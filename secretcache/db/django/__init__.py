"""Django database backends that read credentials through secretcache.

Use ``"ENGINE": "secretcache.db.django.postgresql"`` with a ``"SECRET_ID"`` key in the
``DATABASES`` entry; see :mod:`secretcache.db.django.postgresql`.
"""
