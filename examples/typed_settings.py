"""FastAPI whose typed database settings follow a password rotation without a restart.

The settings come from a Secrets Manager secret through secretcache's pydantic-settings source
(a cache hit per settings object), and a watch rebuilds the connection pool when a rotation
brings a new valid version. Secrets Manager is moto; no database is needed:
    pip install -e '.[demo,pydantic-settings]' fastapi httpx && python examples/typed_settings.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from secretcache import SecretCache
from secretcache.pydantic import SecretsManagerSettingsSource

# --8<-- [start:app]
SECRET = "prod/orders/app"  # {"app_name": "orders", "database": {"host": ..., "username": ..., "password": ...}}
CACHE = SecretCache(ttl=1.0)  # one per process; a short TTL for the demo (default 300 s)


class Database(BaseModel):
    model_config = ConfigDict(frozen=True)  # frozen: validated once per version, shared by readers

    host: str
    port: int = 5432
    username: str
    password: SecretStr  # never printed: SecretStr('**********')


class Settings(BaseSettings):
    app_name: str
    database: Database

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments first, then environment variables, then the secret through the cache (a hit).
        return init_settings, env_settings, SecretsManagerSettingsSource(settings_cls, SECRET, cache=CACHE)


class Pool:
    """Stands in for your driver's pool (psycopg_pool, asyncpg, SQLAlchemy), built from credentials."""

    def __init__(self, database: Database) -> None:
        self.user = database.username
        self._password = database.password  # a real pool logs in with .get_secret_value()

    def close(self) -> None:
        print(f"closed the pool of {self.user}")


def get_settings() -> Settings:
    return Settings()  # per request: a cache hit, not a call; a rotation shows within the TTL


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    def rebuild(database: Database) -> None:  # on the thread that fetched the new version
        old, app.state.pool = app.state.pool, Pool(database)
        old.close()

    # The "database" key validated into Database: each new valid version rebuilds the pool; an
    # invalid one is logged (field names and error types, no value) and the last valid one kept.
    with CACHE.watch(SECRET, Database, key="database", on_change=rebuild) as database:
        app.state.pool = Pool(database.current)
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/whoami")
def whoami(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, str]:
    pool: Pool = request.app.state.pool
    return {"app": settings.app_name, "settings_user": settings.database.username, "pool_user": pool.user}
    # --8<-- [end:app]


async def main() -> None:
    client = CACHE.client
    database = {"host": "db.internal", "username": "orders_v1", "password": "example-password-1"}
    client.create_secret(Name=SECRET, SecretString=json.dumps({"app_name": "orders", "database": database}))
    # httpx's ASGI transport does not run the lifespan: enter it explicitly, as a server would.
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        print("before rotation:", (await http.get("/whoami")).json())
        rotated = {**database, "username": "orders_v2", "password": "example-password-2"}
        client.put_secret_value(SecretId=SECRET, SecretString=json.dumps({"app_name": "orders", "database": rotated}))
        await asyncio.sleep(1.1)  # past the TTL: the next read fetches the new version, the watch rebuilds the pool
        print("after rotation:", (await http.get("/whoami")).json())
        stats = CACHE.stats()
        print(f"Secrets Manager calls: {dict(stats.api_calls)}, hits: {stats.hits}")


if __name__ == "__main__":
    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the Region of the cache's own client
    with mock_aws():
        asyncio.run(main())
