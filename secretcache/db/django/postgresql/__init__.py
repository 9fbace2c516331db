"""Django's PostgreSQL backend with credentials from Secrets Manager.

Settings::

    DATABASES = {
        "default": {
            "ENGINE": "secretcache.db.django.postgresql",
            "SECRET_ID": "prod/orders/db",   # host, port, user, password and dbname come from it
            "SECRET_CACHE": cache,           # optional: a SecretCache; default SecretCache.from_env()
            "OPTIONS": {"connect_timeout": 5},
        }
    }

Every new connection reads the secret's current credentials and recovers from a password
rotation as :class:`secretcache.db.ConnectionFactory` does. ``USER``, ``PASSWORD``, ``HOST``
and ``PORT`` may be left out; when set, the secret's values win. ``NAME`` left out (empty) is the
secret's ``dbname``; when set, it names the database, as Django's test runner needs (it points
``NAME`` at the test database, and ``None`` at ``postgres``). Django's own
connection pool (``OPTIONS["pool"]``) copies credentials once when it is created, so it would
not follow a rotation: leave it off with this backend (``CONN_MAX_AGE`` persistent connections
are fine).
"""
