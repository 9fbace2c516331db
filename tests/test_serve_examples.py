"""What ``examples/serve/`` ships works as its comments say: the token seeding, the systemd units, the sidecar.

The seeding script is run as root would run it (its paths pointed at a temporary directory and
this user's group); ``secretcache serve`` then accepts the token it wrote. The units pass
``systemd-analyze verify`` without a warning, and their command line and variables are ones the
command accepts. The Dockerfile's entry point and compose file are checked the same way (no
Docker daemon here to build them).
"""

from __future__ import annotations

import grp
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from secretcache._cli_args import parse
from secretcache.serve._config import load_config
from tests.serveproc import base_env, start_serve

SERVE = Path(__file__).resolve().parent.parent / "examples" / "serve"
SEED = SERVE / "secretcache-seed-token"


def seed(action: str, token_file: Path) -> subprocess.CompletedProcess[str]:
    """Run the seeding script as its unit does, writing ``token_file``, group: this user's."""
    env = {**os.environ, "TOKEN_FILE": str(token_file), "TOKEN_GROUP": grp.getgrgid(os.getgid()).gr_name}
    return subprocess.run([str(SEED), action], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_the_seeded_token_is_random_private_to_its_group_and_accepted_by_the_server(
    tmp_path: Path, moto_server: str
) -> None:
    """start: 64 hex characters, mode 0640, new each time; the server reads it (file://); stop removes it."""
    token_file = tmp_path / "run" / "secretcache" / "token"
    assert seed("start", token_file).returncode == 0
    first = token_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o640
    assert seed("start", token_file).returncode == 0
    token = token_file.read_text()
    assert token != first

    env = base_env(AWS_TOKEN=f"file://{token_file}")
    served = start_serve(["--bind", "127.0.0.1", "--endpoint-url", moto_server], env, tmp_path)
    try:
        for sent, expected in ((token, 404), (first, 403)):  # an unknown secret: moto's 404, past the token check
            connection = served.connection()
            connection.request(
                "GET", "/secretsmanager/get?secretId=none", headers={"X-Aws-Parameters-Secrets-Token": sent}
            )
            assert connection.getresponse().status == expected
            connection.close()
    finally:
        assert served.stop() == 0
    assert token not in served.output()

    assert seed("stop", token_file).returncode == 0
    assert not token_file.exists()
    assert seed("restart", token_file).returncode == 2


def unit(name: str) -> dict[str, list[str]]:
    """A unit file's ``Key=value`` lines, by key (comments and sections dropped)."""
    keys: dict[str, list[str]] = {}
    for line in (SERVE / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return keys


def test_the_systemd_units_verify_and_the_server_accepts_their_settings(tmp_path: Path) -> None:
    """``systemd-analyze verify`` is silent (paths pointed at this checkout); ExecStart and Environment are valid."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is not installed (Debian: systemd)")
        pytest.skip("systemd-analyze is not installed")
    entry_point = Path(sys.executable).with_name("secretcache")
    for name in ("secretcache.service", "secretcache-token.service"):
        text = (SERVE / name).read_text()
        text = text.replace("/opt/secretcache/bin/secretcache", str(entry_point))
        text = text.replace("/usr/local/libexec/secretcache-seed-token", str(SEED))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            str(tmp_path / "secretcache.service"),
            str(tmp_path / "secretcache-token.service"),
        ],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    service, token = unit("secretcache.service"), unit("secretcache-token.service")
    assert token["ExecStart"] == ["/usr/local/libexec/secretcache-seed-token start"]
    environment = dict(value.split("=", 1) for value in service["Environment"])
    assert environment["AWS_TOKEN"] == "file:///run/secretcache/token"  # where the script writes it
    assert "/run/secretcache/token" in SEED.read_text()
    argv = shlex.split(service["ExecStart"][0])[1:]
    args = parse(argv)
    assert args.command == "serve"
    config = load_config(vars(args), environment)  # an unknown SECRETCACHE_SERVE_* variable would raise
    assert config.port == 2773
    assert config.prefetch == ("prod/app/db", "prod/app/api-key")


def test_the_sidecar_entry_point_and_compose_file_are_valid() -> None:
    """The image runs ``secretcache serve`` with flags it accepts; compose shares the app's network namespace."""
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", (SERVE / "Dockerfile").read_text(), re.MULTILINE)
    assert entry is not None
    argv: list[str] = yaml.safe_load(entry.group(1))
    assert argv[:2] == ["secretcache", "serve"]
    config = load_config(vars(parse(argv[1:])), {})
    assert config.binds == ("127.0.0.1", "::1")  # loopback: the shared namespace makes it enough
    compose: dict[str, Any] = yaml.safe_load((SERVE / "compose.yaml").read_text())
    sidecar = compose["services"]["secretcache"]
    assert sidecar["network_mode"] == "service:app"
    assert sidecar["build"]["dockerfile"] == "examples/serve/Dockerfile"
    assert (SERVE / sidecar["build"]["context"] / sidecar["build"]["dockerfile"]).resolve() == (
        SERVE / "Dockerfile"
    ).resolve()
    assert "AWS_TOKEN" in sidecar["environment"]
    assert "AWS_TOKEN" in compose["services"]["app"]["environment"]
