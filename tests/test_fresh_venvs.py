"""What the docs tell a reader to install works in a fresh virtualenv holding only that.

Every example that needs no database server runs with the install line at its top, and the
README's docs line builds the site. ``tests/test_examples.py`` runs the examples under the
development extras, which hold far more than a reader installs; this file builds a virtualenv per
distinct install line (``pip install -e '.[demo]'`` and so on, shared by the examples that write
the same one), installs that line from this checkout, and runs each example with it. The examples
that need a PostgreSQL server (``NEEDS_POSTGRES``) run only under the development extras. pip
needs PyPI (or a mirror configured for pip): without it these tests fail, they never skip.

The venvs are kept between runs and shared by every checkout on the machine, rebuilt whenever the
install line, ``pyproject.toml`` or the Python changes (:class:`Venvs`);
``SECRETCACHE_FRESH_VENVS=rebuild`` (the nightly run) builds every one anew, as a new reader would
today.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_examples import EXAMPLES, EXPECTED, NEEDS_POSTGRES, _run

pytestmark = pytest.mark.fresh_venv

REPO = EXAMPLES.parent
FRESH = sorted(set(EXPECTED) - NEEDS_POSTGRES)
INSTALL_TIMEOUT = 600.0  # seconds for one `pip install`: downloads on a slow link, never a stall
INSTALL = re.compile(r"^ *pip install (?P<line>.+?) && python examples/(?P<name>[\w.]+)$", re.MULTILINE)
DOCS_LINE = re.compile(r"`pip install (?P<line>[^`]+?) && mkdocs serve`")
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")
BYTECODE = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")  # where a venv's runs cache their bytecode: its own


def install_line(name: str) -> str:
    """The arguments after ``pip install`` in the one run command at the top of example ``name``."""
    commands = INSTALL.findall((EXAMPLES / name).read_text())
    assert len(commands) == 1, f"{name}: expected one 'pip install ... && python examples/{name}' line"
    line, named = commands[0]
    assert named == name, f"{name}: its run command runs {named}"
    return str(line)


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the development tree or venv leak in."""
    return {key: value for key, value in os.environ.items() if key not in LEAKY}


def _checkout_env(python: str) -> dict[str, str]:
    """:func:`_clean_env` for a run of the venv's ``python``, with this checkout on ``PYTHONPATH``.

    A kept venv's editable install names the checkout that built it (:class:`Venvs`): the
    checkout on ``PYTHONPATH``, where the editable install puts it, makes the code run this
    checkout's, whichever built the venv. The run caches the bytecode of what it imports in the
    venv (``PYTHONPYCACHEPREFIX``), even where ``PYTHONDONTWRITEBYTECODE`` is set: pip installed it
    uncompiled, and each run would compile boto3, botocore and moto again (about 0.5 s of CPU an
    example); nothing is written into the checkout.
    """
    env = {key: value for key, value in _clean_env().items() if key not in BYTECODE}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(Path(python).parent.parent / "pycache")}


REBUILD = "SECRETCACHE_FRESH_VENVS"
"""Set to ``rebuild`` (the nightly run) to build every venv anew in this run instead of reusing one."""
CACHE = "SECRETCACHE_FRESH_VENV_CACHE"
"""Where venvs are kept between runs (default ``~/.cache/secretcache-tests/fresh-venvs``)."""
KEEP_DAYS = 14  # a kept venv unused this long is removed


class Venvs:
    """Fresh virtualenvs, one per distinct install line, built on first use.

    A venv is named by what decides its contents: the install line, ``pyproject.toml`` (the
    extras and their pins) and this Python. Not the checkout: the install is editable, so the
    package's code is the checkout's, and the examples run with this checkout on ``PYTHONPATH``
    (:func:`_checkout_env`), so every checkout on the machine shares a venv (CI's clean one too),
    whichever built it. Kept between runs, a venv is rebuilt as soon as any of those changes; with
    ``SECRETCACHE_FRESH_VENVS=rebuild`` every venv is built anew in a directory of the run's own
    (what PyPI serves today, as a new reader gets it).

    The pytest-xdist workers share them: a venv is built under an exclusive lock on a file
    beside it, so the first worker to need a line builds it while the others wait and then use
    it (or read why it failed: a failure counts for this run only).
    """

    def __init__(self, root: Path, run: str) -> None:
        self._root = root
        self._run = run

    def python_for(self, line: str) -> str:
        """The python of a fresh venv into which ``pip install {line}`` ran in the checkout."""
        identity = "\0".join([line, (REPO / "pyproject.toml").read_text(), sys.version])
        venv = self._root / ("venv-" + hashlib.sha256(identity.encode()).hexdigest()[:16])
        outcome = venv.with_name(venv.name + ".outcome")  # the venv's python, or this run's reason it failed
        with _locked(venv.with_name(venv.name + ".lock")):
            built = outcome.read_text() if outcome.exists() else ""
            usable = built.startswith("/") and Path(built).exists()
            if not usable and not built.startswith(f"run {self._run}: "):
                shutil.rmtree(venv, ignore_errors=True)  # a half-built venv of an interrupted run
                built = self._build(line, venv)
                outcome.write_text(built if built.startswith("/") else f"run {self._run}: {built}")
            os.utime(outcome)  # used now: kept another KEEP_DAYS
            built = outcome.read_text()
        if not built.startswith("/"):
            pytest.fail(built)
        return built

    def _build(self, line: str, venv: Path) -> str:
        # No pip inside (ensurepip costs seconds per venv): this process's pip installs into it
        # (``pip --python``), and without compiling bytecode: the runs cache what they import
        # (:func:`_checkout_env`), a small part of what is installed.
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120, env=_clean_env()
        )
        python = venv / "bin" / "python"
        pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
        result = subprocess.run(
            [*pip, "install", "-q", "--no-compile", *shlex.split(line)],
            cwd=REPO,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            return f"pip install {line} failed in a fresh venv:\n{result.stderr[-4000:]}"
        return str(python)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) against the other workers."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venvs]:
    """The fresh virtualenvs: kept between runs, or with ``SECRETCACHE_FRESH_VENVS=rebuild`` the run's own.

    Kept ones live in :data:`CACHE`'s directory; one unused for :data:`KEEP_DAYS` days is removed.
    A run's own live under pytest-xdist's shared base directory (each worker's is ``popen-gwN``
    inside it) and are removed by the last worker out.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or base.name
    if os.environ.get(REBUILD) != "rebuild":
        kept = Path(os.environ.get(CACHE) or Path.home() / ".cache" / "secretcache-tests" / "fresh-venvs")
        kept.mkdir(parents=True, exist_ok=True)
        with _locked(kept / "prune.lock"):
            for outcome in kept.glob("venv-*.outcome"):
                if time.time() - outcome.stat().st_mtime > KEEP_DAYS * 86400:
                    with _locked(outcome.with_suffix(".lock")):
                        outcome.unlink()
                        _remove_later(outcome.with_suffix(""))
        yield Venvs(kept, run)
        return
    root = base / "fresh-venvs"
    root.mkdir(exist_ok=True)
    users = root / "users"
    with _locked(root / "users.lock"):
        users.write_text(str(int(users.read_text() or 0) + 1) if users.exists() else "1")
    yield Venvs(root, run)
    with _locked(root / "users.lock"):
        left = int(users.read_text()) - 1
        users.write_text(str(left))
        if left == 0:
            for venv in root.glob("venv-*"):
                if venv.is_dir():
                    venv.with_name(venv.name + ".outcome").unlink(missing_ok=True)
                    _remove_later(venv)


def _remove_later(venv: Path) -> None:
    """Remove ``venv`` with a detached ``rm``: thousands of files, which on a loaded machine take longer
    to delete than pytest-timeout gives a teardown, and nothing waits for them."""
    if venv.is_dir():
        gone = venv.with_name(f"{venv.name}-removing-{os.getpid()}")
        venv.rename(gone)
        subprocess.run(["/bin/sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(gone)], check=True)


def test_every_example_states_one_install_line() -> None:
    """Each example's header holds exactly one 'pip install ... && python examples/<itself>' command."""
    lines = {name: install_line(name) for name in sorted(EXPECTED)}
    assert all(line == "-e ." or line.startswith("-e '.[") for line in lines.values()), lines


@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
@pytest.mark.parametrize(
    "name",
    sorted(FRESH),
)
def test_example_runs_in_a_fresh_venv_with_its_install_line(name: str, venvs: Venvs) -> None:
    """The example runs with nothing installed but its documented install line, not the dev extras."""
    python = venvs.python_for(install_line(name))
    _run(name, _checkout_env(python), python=python)


@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
def test_a_kept_venv_runs_this_checkouts_code_whichever_checkout_built_it(venvs: Venvs, tmp_path: Path) -> None:
    """The checkout comes before the venv's site-packages, so before the editable path its builder left."""
    python = venvs.python_for(install_line(FRESH[0]))
    probe = "import secretcache, sys; print(secretcache.__file__); print(*sys.path, sep='\\n')"
    result = subprocess.run(
        [python, "-c", probe],
        cwd=tmp_path,
        env=_checkout_env(python),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    module, *path = result.stdout.splitlines()
    assert Path(module).is_relative_to(REPO / "secretcache")
    packages = next(entry for entry in path if entry.endswith("site-packages"))
    assert path.index(str(REPO)) < path.index(packages)


@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
def test_docs_extra_builds_the_site_with_formatted_signatures(venvs: Venvs) -> None:
    """The README's docs install builds the site strictly, with a formatter for long signatures."""
    found = DOCS_LINE.search((REPO / "README.md").read_text())
    assert found is not None, "README: no `pip install ... && mkdocs serve`"
    python = venvs.python_for(found["line"])
    result = subprocess.run(
        [python, "scripts/check_docs.py"],
        cwd=REPO,
        env=_checkout_env(python),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Formatting signatures requires" not in output
