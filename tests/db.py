"""Real database users for the tests of the connection factories, and the steps of a rotation.

``Database`` drives a throwaway PostgreSQL or MariaDB server (``tests/servers.py``) through one
driver; the rotation helpers move a secret's labels as a rotation function does.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from secretcache.db import Failure, _credentials, classify
from tests.leaks import record_leaks
from tests.servers import Server


@pytest.fixture
def no_password_logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Captures ``secretcache``'s records at DEBUG; after the test, none holds a password the library read.

    Every password parsed from a secret is noted (the list handed to the test, which may add
    more); each is searched for in every record (:func:`tests.leaks.record_leaks`) at teardown.
    """
    passwords: list[str] = []
    parse = _credentials.parse_credentials

    def noting(document: str | None, secret_id: str, version_id: str) -> Any:
        creds = parse(document, secret_id, version_id)
        passwords.append(creds.password)
        return creds

    monkeypatch.setattr(_credentials, "parse_credentials", noting)
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        yield passwords
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]  # caplog.records is teardown's now
    for password in dict.fromkeys(passwords):
        if len(password) < 4:  # "p" is in every line: too short to tell from text
            continue
        assert record_leaks(records, password) == [], "a log record holds a password"


@dataclass
class Database:
    """One server, an admin connection, and a fresh application user with a password."""

    server: Server
    driver: str
    user: str
    password: str

    def admin_execute(self, sql: str) -> None:
        if self.server.engine == "postgres":
            import psycopg

            with psycopg.connect(**self._admin_kwargs(), autocommit=True) as connection:
                connection.execute(sql.encode())
        else:
            import pymysql

            connection = pymysql.connect(**self._admin_kwargs(), autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(sql)
            connection.close()

    def _admin_kwargs(self) -> dict[str, Any]:
        server = self.server
        kwargs = {
            "host": server.host,
            "port": server.port,
            "user": server.admin_user,
            "password": server.admin_password,
        }
        return {**kwargs, "dbname": server.dbname} if server.engine == "postgres" else kwargs

    def create_user(self, user: str, password: str) -> None:
        if self.server.engine == "postgres":
            self.admin_execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        else:
            self.admin_execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            self.admin_execute(f"GRANT ALL PRIVILEGES ON app.* TO '{user}'@'%'")

    def set_password(self, user: str, password: str) -> None:
        if self.server.engine == "postgres":
            self.admin_execute(f"ALTER ROLE {user} PASSWORD '{password}'")
        else:
            self.admin_execute(f"ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'")

    def secret(self, user: str, password: str, **changes: Any) -> str:
        document = {
            "engine": "postgres" if self.server.engine == "postgres" else "mariadb",
            "host": self.server.host,
            "port": self.server.port,
            "username": user,
            "password": password,
            "dbname": self.server.dbname,
        }
        document.update(changes)
        return json.dumps(document)

    @property
    def connect(self) -> Callable[..., Any]:
        module = __import__(self.driver)
        return module.connect  # type: ignore[no-any-return]

    def login_works(self, user: str, password: str) -> bool:
        kwargs = {"host": self.server.host, "port": self.server.port, "user": user, "password": password}
        key = "dbname" if self.server.engine == "postgres" else "database"
        try:
            self.connect(**kwargs, **{key: self.server.dbname}).close()
        except self.operational_error as error:
            if classify(error) is not Failure.AUTH:
                raise
            return False
        return True

    @property
    def operational_error(self) -> type[Exception]:
        """The driver's OperationalError, raised for failed connects."""
        if self.driver == "pymysql":
            import pymysql

            return pymysql.err.OperationalError
        return __import__(self.driver).OperationalError  # type: ignore[no-any-return]


def rotate_secret_stage(admin: Any, secret_id: str, new_document: str) -> tuple[str, str]:
    """Rotation step 1: the new version as AWSPENDING. Returns (old, new) version ids."""
    old = admin.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["VersionId"]
    new = admin.put_secret_value(SecretId=secret_id, SecretString=new_document, VersionStages=["AWSPENDING"])
    return old, new["VersionId"]


def finish_rotation(admin: Any, secret_id: str, old: str, new: str) -> None:
    """Rotation step 4: AWSCURRENT moves to the new version."""
    admin.update_secret_version_stage(
        SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
    )


def rotate_password(db: Database, admin: Any, secret_id: str, *, finish: bool = True) -> tuple[str, str]:
    """Rotate the user's password as a rotation function does; return (old, new) version ids."""
    new_password = f"pw-{secrets.token_hex(8)}"
    old, new = rotate_secret_stage(admin, secret_id, db.secret(db.user, new_password))
    db.set_password(db.user, new_password)
    if finish:
        finish_rotation(admin, secret_id, old, new)
    return old, new
