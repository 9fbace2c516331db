"""SQLAlchemy engine whose connections survive a password rotation.

Needs a PostgreSQL server and an admin login in the usual libpq variables; Secrets Manager is moto:
    export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGPASSWORD=...
    pip install -e '.[demo,postgres,sqlalchemy]' && python examples/sqlalchemy_rotation.py
"""

from __future__ import annotations

import json
import os
import secrets

import boto3
import psycopg
import sqlalchemy

from secretcache import SecretCache
from secretcache.db import connection_factory


def admin(sql: str) -> None:
    with psycopg.connect(dbname=os.environ.get("PGDATABASE", "postgres"), autocommit=True) as connection:
        connection.execute(sql.encode())


def main(sm: object) -> None:
    user, password = f"example_{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    admin(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    document = {"engine": "postgres", "host": os.environ["PGHOST"], "port": int(os.environ.get("PGPORT", "5432")),
                "username": user, "password": password, "dbname": os.environ.get("PGDATABASE", "postgres")}  # fmt: skip
    sm.create_secret(Name="example/db", SecretString=json.dumps(document))  # type: ignore[attr-defined]
    try:
        cache = SecretCache(sm, ttl=3600)  # type: ignore[arg-type]
        engine = sqlalchemy.create_engine(
            "postgresql+psycopg://", creator=connection_factory(cache, "example/db", psycopg.connect)
        )
        with engine.connect() as connection:
            print("before rotation:", connection.execute(sqlalchemy.text("SELECT current_user")).scalar())

        # A rotation, as Secrets Manager's rotation function does it.
        new_password = secrets.token_urlsafe(16)
        old = sm.get_secret_value(SecretId="example/db", VersionStage="AWSCURRENT")["VersionId"]  # type: ignore[attr-defined]
        new = sm.put_secret_value(  # type: ignore[attr-defined]
            SecretId="example/db",
            SecretString=json.dumps({**document, "password": new_password}),
            VersionStages=["AWSPENDING"],
        )["VersionId"]
        admin(f"ALTER ROLE {user} PASSWORD '{new_password}'")
        sm.update_secret_version_stage(  # type: ignore[attr-defined]
            SecretId="example/db", VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
        )
        engine.dispose()  # new connections from here on; the cache still holds the old password
        with engine.connect() as connection:
            print("after rotation:", connection.execute(sqlalchemy.text("SELECT current_user")).scalar())
        print(f"Secrets Manager calls: {dict(cache.stats().api_calls)} (the login failure forced one refresh)")
        engine.dispose()
    finally:
        admin(f"DROP ROLE IF EXISTS {user}")


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        main(boto3.client("secretsmanager", region_name="us-east-1"))
