"""psycopg_pool.ConnectionPool whose new connections survive a password rotation.

Needs a PostgreSQL server and an admin login in the usual libpq variables; Secrets Manager is moto:
    export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGPASSWORD=...
    pip install -e '.[demo,postgres]' && python examples/psycopg_pool_rotation.py
"""

from __future__ import annotations

import json
import os
import secrets

import boto3
import psycopg
from psycopg_pool import ConnectionPool

from secretcache import SecretCache
from secretcache.db import psycopg_connection_class


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
        # The pool opens connections in its own threads and only logs failures, so the recovery
        # lives in the connection class it uses.
        connection_class = psycopg_connection_class(cache, "example/db")
        # open= explicitly: psycopg_pool warns (DeprecationWarning) when it is left to its default.
        pool = ConnectionPool(connection_class=connection_class, min_size=1, max_lifetime=3600, timeout=10, open=False)
        with pool:  # opens the pool, and closes it on the way out
            with pool.connection() as connection:
                print("before rotation:", connection.execute("SELECT current_user").fetchone())
            new_password = secrets.token_urlsafe(16)
            old = sm.get_secret_value(SecretId="example/db", VersionStage="AWSCURRENT")["VersionId"]  # type: ignore[attr-defined]
            new = sm.put_secret_value(  # type: ignore[attr-defined]
                SecretId="example/db", SecretString=json.dumps({**document, "password": new_password}),
                VersionStages=["AWSPENDING"],
            )["VersionId"]  # fmt: skip
            admin(f"ALTER ROLE {user} PASSWORD '{new_password}'")
            sm.update_secret_version_stage(  # type: ignore[attr-defined]
                SecretId="example/db", VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
            )
        # A new pool (or the old one replacing connections) logs in with the new password.
        pool = ConnectionPool(connection_class=connection_class, min_size=1, timeout=10, open=False)
        with pool, pool.connection() as connection:
            print("after rotation:", connection.execute("SELECT current_user").fetchone())
        print(f"Secrets Manager calls: {dict(cache.stats().api_calls)}")
    finally:
        admin(f"DROP ROLE IF EXISTS {user}")


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        main(boto3.client("secretsmanager", region_name="us-east-1"))
