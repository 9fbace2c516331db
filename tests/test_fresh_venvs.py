"""What the docs tell a reader to install works in a fresh virtualenv holding only that.

Every example that needs no database server runs with the install line at its top, and the
README's docs line builds the site. ``tests/test_examples.py`` runs the examples under the
development extras, which hold far more than a reader installs; this file builds a virtualenv per
distinct install line (``pip install -e '.[demo]'`` and so on, shared by the examples that write
the same one), installs that line from this checkout, and runs each example with it. The examples
that need a PostgreSQL server (``NEEDS_POSTGRES``) run only under the development extras. pip
needs PyPI (or a mirror configured for pip): without it these tests fail, they never skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import subprocess
import sys
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


class Venvs:
    """Fresh virtualenvs, one per distinct install line, built on first use, once per test run.

    The pytest-xdist workers share them: a venv lives under a directory every worker of the run
    sees, and is built under an exclusive lock on a file beside it, so the first worker to need
    a line builds it while the others wait and then use it (or read why it failed). Each worker
    counts itself in while it may use them; the last one out removes them.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    def python_for(self, line: str) -> str:
        """The python of a fresh venv into which ``pip install {line}`` ran in the checkout."""
        venv = self._root / ("venv-" + hashlib.sha256(line.encode()).hexdigest()[:16])
        outcome = venv.with_name(venv.name + ".outcome")  # the venv's python, or why it failed
        with _locked(venv.with_name(venv.name + ".lock")):
            if not outcome.exists():
                outcome.write_text(self._build(line, venv))
            built = outcome.read_text()
        if not built.startswith("/"):
            pytest.fail(built)
        return built

    def _build(self, line: str, venv: Path) -> str:
        # No pip inside (ensurepip costs seconds per venv): this process's pip installs into it
        # (``pip --python``), and without compiling bytecode (the examples compile what they import).
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
    """The run's fresh virtualenvs, shared by its workers, removed when the last one is done.

    Under pytest-xdist each worker's base temporary directory is ``popen-gwN`` inside the
    run's own, which is where the shared ones go (as pytest-xdist's docs suggest).
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "fresh-venvs"
    root.mkdir(exist_ok=True)
    users = root / "users"
    with _locked(root / "users.lock"):
        users.write_text(str(int(users.read_text() or 0) + 1) if users.exists() else "1")
    yield Venvs(root)
    with _locked(root / "users.lock"):
        left = int(users.read_text()) - 1
        users.write_text(str(left))
        if left == 0:
            # Removed by a detached `rm`: thousands of files, which on a loaded machine take longer
            # to delete than pytest-timeout gives the last test's teardown, and nothing waits for
            # them. The lock files stay (a few bytes), so a late worker still finds them.
            for venv in root.glob("venv-*"):
                if venv.is_dir():
                    gone = venv.with_name(f"{venv.name}-removing")
                    venv.with_name(venv.name + ".outcome").unlink(missing_ok=True)
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
    _run(name, _clean_env(), python=venvs.python_for(install_line(name)))


@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
def test_docs_extra_builds_the_site_with_formatted_signatures(venvs: Venvs) -> None:
    """The README's docs install builds the site strictly, with a formatter for long signatures."""
    found = DOCS_LINE.search((REPO / "README.md").read_text())
    assert found is not None, "README: no `pip install ... && mkdocs serve`"
    python = venvs.python_for(found["line"])
    result = subprocess.run(
        [python, "scripts/check_docs.py"],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Formatting signatures requires" not in output
