"""The Django PostgreSQL backend: connections read the secret and survive a rotation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server

pytest.importorskip("django", reason="Django is not installed; pip install django")

# Django settings are process-wide: each scenario runs in its own interpreter, after this preamble
# (the admin connection to the test server, from the PG* variables run_scenario sets).
PREAMBLE = textwrap.dedent(
    """
    import json, os, secrets
    import boto3, psycopg
    from moto import mock_aws
    from secretcache import SecretCache

    admin = dict(host=os.environ["PGHOST"], port=int(os.environ["PGPORT"]), user=os.environ["PGUSER"],
                 password=os.environ["PGPASSWORD"], dbname=os.environ["PGDATABASE"])

    def sql(statement):
        with psycopg.connect(**admin, autocommit=True) as connection:
            connection.execute(statement.encode())
    """
)

SCRIPT = PREAMBLE + textwrap.dedent(
    """
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        user, password = "django_" + secrets.token_hex(3), secrets.token_urlsafe(12)
        sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        document = {"engine": "postgres", "host": admin["host"], "port": admin["port"], "username": user,
                    "password": password, "dbname": admin["dbname"]}
        sm.create_secret(Name="django/db", SecretString=json.dumps(document))
        cache = SecretCache(sm, ttl=3600)

        import django
        from django.conf import settings
        settings.configure(DATABASES={"default": {
            "ENGINE": "secretcache.db.django.postgresql", "SECRET_ID": "django/db", "SECRET_CACHE": cache}})
        django.setup()
        from django.db import connection

        report = {}
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_database()")
            report["before"] = list(cursor.fetchone())
        new_password = secrets.token_urlsafe(12)
        old = sm.get_secret_value(SecretId="django/db", VersionStage="AWSCURRENT")["VersionId"]
        new = sm.put_secret_value(SecretId="django/db", VersionStages=["AWSPENDING"],
                                  SecretString=json.dumps({**document, "password": new_password}))["VersionId"]
        sql(f"ALTER ROLE {user} PASSWORD '{new_password}'")
        sm.update_secret_version_stage(SecretId="django/db", VersionStage="AWSCURRENT",
                                       MoveToVersionId=new, RemoveFromVersionId=old)
        connection.close()  # the next query opens a new connection with the stale cached password
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            report["after"] = cursor.fetchone()[0]
        report["user"] = user
        report["calls"] = cache.stats().api_calls["GetSecretValue"]
        connection.close()
        sql(f"DROP ROLE {user}")
        print(json.dumps(report))
    """
)


def run_scenario(script: str, pg_server: Server, tmp_path: Path) -> dict[str, Any]:
    """Run ``script`` in a new interpreter against ``pg_server``; the JSON report its last line prints."""
    path = tmp_path / "django_scenario.py"
    path.write_text(script)
    env = {**os.environ, "PGHOST": pg_server.host, "PGPORT": str(pg_server.port), "PGUSER": pg_server.admin_user}
    env.update(PGPASSWORD=pg_server.admin_password, PGDATABASE=pg_server.dbname)
    result = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_django_backend_survives_rotation(pg_server: Server, tmp_path: Path) -> None:
    """Django's connection uses the secret, and a new connection after a rotation logs in."""
    report = run_scenario(SCRIPT, pg_server, tmp_path)
    assert report["before"] == [report["user"], pg_server.dbname]
    assert report["after"] == report["user"]
    assert report["calls"] == 2  # the first read and one forced refresh


# Django's test runner, with NAME left to the secret: it creates test_<name> and must connect to it.
TEST_DATABASE_SCRIPT = PREAMBLE + textwrap.dedent(
    """
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        user, password = "django_" + secrets.token_hex(3), secrets.token_urlsafe(12)
        app_db = "app_" + user
        sql(f"CREATE ROLE {user} LOGIN CREATEDB PASSWORD '{password}'")
        sql(f"CREATE DATABASE {app_db} OWNER {user}")
        document = {"engine": "postgres", "host": admin["host"], "port": admin["port"], "username": user,
                    "password": password, "dbname": app_db}
        sm.create_secret(Name="django/db", SecretString=json.dumps(document))

        import django
        from django.conf import settings
        settings.configure(DATABASES={"default": {
            "ENGINE": "secretcache.db.django.postgresql", "SECRET_ID": "django/db",
            "SECRET_CACHE": SecretCache(sm, ttl=3600)}})
        django.setup()
        from django.db import connection

        def database():
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_database()")
                return cursor.fetchone()[0]

        report = {"app": app_db, "before": database()}
        connection.close()
        test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        report["test_db"], report["during"] = test_db, database()
        with connection._nodb_cursor() as cursor:  # how Django creates and drops test databases
            cursor.execute("SELECT current_database()")
            report["nodb"] = cursor.fetchone()[0]
        connection.creation.destroy_test_db(app_db, verbosity=0)
        sql(f"DROP DATABASE {app_db}")
        sql(f"DROP ROLE {user}")
        print(json.dumps(report))
    """
)


def test_django_test_runner_uses_the_test_database(pg_server: Server, tmp_path: Path) -> None:
    """Django's test runner connects to the test database it made, not to the secret's database."""
    report = run_scenario(TEST_DATABASE_SCRIPT, pg_server, tmp_path)
    assert report["before"] == report["app"]  # NAME left out: the secret's database
    assert report["test_db"] == "test_" + report["app"]
    assert report["during"] == report["test_db"]  # migrations and flushes never reach the app's database
    assert report["nodb"] == "postgres"  # NAME None: Django's "postgres" database, as with its own backend


POOL_SCRIPT = textwrap.dedent(
    """
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from secretcache.testing import seeded_cache

    cache = seeded_cache({"django/db": {"username": "u", "password": "p", "host": "127.0.0.1", "port": 1}})
    settings.configure(DATABASES={"default": {
        "ENGINE": "secretcache.db.django.postgresql", "SECRET_ID": "django/db", "SECRET_CACHE": cache,
        "OPTIONS": {"pool": True}}})
    django.setup()
    from django.db import connection
    try:
        connection.ensure_connection()
    except ImproperlyConfigured as err:
        print("refused:", err)
    """
)


def test_djangos_own_pool_is_refused_before_any_connect(tmp_path: Path) -> None:
    """OPTIONS["pool"] would connect without the secret's credentials: refused at once, naming what to use."""
    script = tmp_path / "django_pool.py"
    script.write_text(POOL_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refused: secretcache.db.django.postgresql does not support OPTIONS['pool']" in result.stdout
    assert "psycopg_connection_class" in result.stdout
