"""FastAPI with an async SQLAlchemy engine (asyncpg) whose logins follow a password rotation.

Needs a PostgreSQL server and an admin login in the usual libpq variables; Secrets Manager is moto:
    export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGPASSWORD=...
    pip install -e '.[demo,asyncpg,sqlalchemy-asyncio]' fastapi httpx && python examples/fastapi_app.py
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import boto3
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from secretcache import AsyncSecretCache
from secretcache.db import async_connection_factory

# --8<-- [start:app]
DB_SECRET = "prod/orders/db"  # the secret's name: RDS layout (host, port, username, password, dbname)


def create_app(
    secret_id: str = DB_SECRET,
    *,
    client: Any = None,  # a boto3 Secrets Manager client; None builds one from the AWS environment
    connect: Callable[..., Awaitable[Any]] = asyncpg.connect,
    rotation_grace: float = 5.0,
) -> FastAPI:
    """The application; the cache and the engine live as long as its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncSecretCache(client) as cache:  # closed at shutdown
            factory = async_connection_factory(cache, secret_id, connect, rotation_grace=rotation_grace)
            # The URL names only the dialect: each new connection logs in with the host, port,
            # user, password and database of the secret, and recovers from a rotation.
            engine = create_async_engine("postgresql+asyncpg://", async_creator=factory, pool_pre_ping=True)
            app.state.cache, app.state.engine = cache, engine
            try:
                yield
            finally:
                await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    return app


async def db_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for the length of one request."""
    async with request.app.state.engine.connect() as connection:
        yield connection


router = APIRouter()


@router.get("/whoami")
async def whoami(connection: Annotated[AsyncConnection, Depends(db_connection)]) -> dict[str, Any]:
    """The database user this request ran as, and the server process of its connection."""
    row = (await connection.execute(text("SELECT current_user, pg_backend_pid()"))).one()
    return {"user": row[0], "backend_pid": row[1]}
    # --8<-- [end:app]


async def main(client: Any) -> None:
    admin = await asyncpg.connect()  # PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
    user, password = f"example_{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    await admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    document = {"engine": "postgres", "host": os.environ["PGHOST"], "port": int(os.environ.get("PGPORT", "5432")),
                "username": user, "password": password, "dbname": os.environ.get("PGDATABASE", "postgres")}  # fmt: skip
    client.create_secret(Name=DB_SECRET, SecretString=json.dumps(document))
    app = create_app(client=client)
    try:
        # httpx's ASGI transport does not run the lifespan: enter it explicitly, as a server would.
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
        ):
            print("before rotation:", (await http.get("/whoami")).json()["user"])

            # A single-user rotation, as Secrets Manager's rotation function does it.
            new_password = secrets.token_urlsafe(16)
            old = client.get_secret_value(SecretId=DB_SECRET)["VersionId"]
            new = client.put_secret_value(
                SecretId=DB_SECRET, SecretString=json.dumps({**document, "password": new_password}),
                VersionStages=["AWSPENDING"],
            )["VersionId"]  # fmt: skip
            await admin.execute(f"ALTER ROLE {user} PASSWORD '{new_password}'")
            client.update_secret_version_stage(
                SecretId=DB_SECRET, VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
            )
            await app.state.engine.dispose()  # new logins from here on; the cache still holds the old password

            response = await http.get("/whoami")
            print("after rotation:", response.status_code, response.json()["user"])
            print(f"Secrets Manager calls: {dict(app.state.cache.stats().api_calls)} (one forced refresh)")
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {user}")
        await admin.close()


if __name__ == "__main__":
    from moto import mock_aws

    with mock_aws():
        asyncio.run(main(boto3.client("secretsmanager", region_name="us-east-1")))
