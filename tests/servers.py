"""Throwaway PostgreSQL and MariaDB servers with password authentication, for the DB tests.

Each server runs from a temporary directory on a free loopback port and is stopped at the end.
Under ``CI=true`` a missing server binary is an error; elsewhere the tests that need it skip
with a message saying what to install.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ADMIN_PASSWORD = "admin-Secret-1"


@dataclass(frozen=True)
class Server:
    """A running database server and its administrator login."""

    engine: str
    host: str
    port: int
    admin_user: str
    admin_password: str
    dbname: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing(what: str, install: str) -> None:
    message = f"{what} is not installed; install it with: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _as_user(user: str) -> list[str]:
    """Run as ``user`` when root (initdb and mariadbd refuse root); as ourselves otherwise."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _postgres_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _setup(result: subprocess.CompletedProcess[bytes]) -> None:
    """Fail a server's set-up step with what the tool said (its stderr), not only its exit status."""
    if result.returncode != 0:
        said = (result.stderr or result.stdout or b"").decode(errors="replace")[-2000:]
        raise RuntimeError(f"{result.args[0]} exited with {result.returncode}:\n{said}")


@contextmanager
def postgres() -> Iterator[Server]:
    """A PostgreSQL server with scram-sha-256 password authentication for every connection."""
    bindir = _postgres_bindir()
    if bindir is None:
        missing("PostgreSQL (initdb, pg_ctl)", "apt-get install postgresql")
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="secretcache-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    (base / "pw").write_text(ADMIN_PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(base / "pw", "postgres", "postgres")
    data, log, port = base / "data", base / "log", free_port()
    run = _as_user("postgres")
    _setup(subprocess.run(
        [*run, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
         f"--pwfile={base / 'pw'}", "--no-sync", "-E", "UTF8", "--locale=C"],
        check=False, capture_output=True, timeout=120,
    ))  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off"
    try:
        _setup(subprocess.run(
            [*run, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
            check=False, capture_output=True, timeout=120,
        ))  # fmt: skip
        _wait_for_port(port, None, log)
        yield Server("postgres", "127.0.0.1", port, "postgres", ADMIN_PASSWORD, "postgres")
    finally:
        subprocess.run(
            [*run, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def mariadb() -> Iterator[Server]:
    """A MariaDB server whose root and users log in with passwords over TCP."""
    install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    daemon = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin") or shutil.which("mysqld")
    if install_db is None or daemon is None:
        missing("MariaDB (mariadb-install-db, mariadbd)", "apt-get install mariadb-server")
    assert install_db is not None
    assert daemon is not None
    base = Path(tempfile.mkdtemp(prefix="secretcache-mariadb-"))
    data, log, sock, port = base / "data", base / "log", base / "sock", free_port()
    # A starting mariadbd deletes every ``#sql*`` file in its tmpdir, so servers sharing /tmp
    # (xdist workers, the bootstrap of another) would delete each other's temporary tables.
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(base, "mysql", "mysql")
        shutil.chown(tmpdir, "mysql", "mysql")
    _setup(subprocess.run(
        [install_db, "--no-defaults", f"--datadir={data}", *user, "--auth-root-authentication-method=normal",
         "--skip-test-db", f"--tmpdir={tmpdir}"],
        check=False, capture_output=True, timeout=180,
    ))  # fmt: skip
    process = subprocess.Popen(
        [daemon, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
         f"--socket={sock}", "--skip-name-resolve", f"--log-error={log}", f"--pid-file={base / 'pid'}",
         f"--tmpdir={tmpdir}", "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin", *user],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port, process, log)
        import pymysql

        # Fresh root has no password and may log in over the socket only; give it one.
        connection = pymysql.connect(unix_socket=str(sock), user="root", password="", autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute("CREATE USER 'admin'@'%%' IDENTIFIED BY %s", (ADMIN_PASSWORD,))
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION")
            cursor.execute("CREATE DATABASE app")
        connection.close()
        yield Server("mysql", "127.0.0.1", port, "admin", ADMIN_PASSWORD, "app")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
