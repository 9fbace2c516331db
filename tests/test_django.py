"""The Django PostgreSQL backend: connections read the secret and survive a rotation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.servers import Server

pytest.importorskip("django", reason="Django is not installed; pip install django")

# Django settings are process-wide: run the scenario in its own interpreter.
SCRIPT = textwrap.dedent(
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


def test_django_backend_survives_rotation(pg_server: Server, tmp_path: Path) -> None:
    """Django's connection uses the secret, and a new connection after a rotation logs in."""
    script = tmp_path / "django_rotation.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PGHOST": pg_server.host, "PGPORT": str(pg_server.port), "PGUSER": pg_server.admin_user}
    env.update(PGPASSWORD=pg_server.admin_password, PGDATABASE=pg_server.dbname)
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before"] == [report["user"], pg_server.dbname]
    assert report["after"] == report["user"]
    assert report["calls"] == 2  # the first read and one forced refresh
