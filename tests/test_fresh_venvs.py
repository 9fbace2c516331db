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

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
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
    """Fresh virtualenvs, one per distinct install line, built on first use (one test session)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._built: dict[str, Path | str] = {}  # install line -> its venv's python, or why it failed

    def python_for(self, line: str) -> str:
        """The python of a fresh venv into which ``pip install {line}`` ran in the checkout."""
        if line not in self._built:
            self._built[line] = self._build(line, self._root / f"venv-{len(self._built)}")
        built = self._built[line]
        if isinstance(built, str):
            pytest.fail(built)
        return str(built)

    def _build(self, line: str, venv: Path) -> Path | str:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=_clean_env())
        python = venv / "bin" / "python"
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *shlex.split(line)],
            cwd=REPO,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            return f"pip install {line} failed in a fresh venv:\n{result.stderr[-4000:]}"
        return python


@pytest.fixture(scope="session")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venvs]:
    """The session's fresh virtualenvs, removed at its end (each holds a few hundred MB)."""
    root = tmp_path_factory.mktemp("fresh-venvs")
    yield Venvs(root)
    # Removed by a detached `rm`: thousands of files, which on a loaded machine take longer to
    # delete than pytest-timeout gives the last test's teardown, and nothing waits for them.
    gone = root.with_name(f"{root.name}-removing")
    root.rename(gone)
    subprocess.run(["/bin/sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(gone)], check=True)


def test_every_example_states_one_install_line() -> None:
    """Each example's header holds exactly one 'pip install ... && python examples/<itself>' command."""
    lines = {name: install_line(name) for name in sorted(EXPECTED)}
    assert all(line == "-e ." or line.startswith("-e '.[") for line in lines.values()), lines


def _one_worker_per_venv(line: str) -> pytest.MarkDecorator:
    """Under pytest-xdist (``--dist loadgroup``), the tests of one install line share a worker, so one venv.

    xdist appends the group to the test id after an ``@`` and takes a ``]`` after it for a
    parameter's, so the name keeps letters, digits, commas and dots only.
    """
    return pytest.mark.xdist_group("fresh-venv_" + re.sub(r"[^A-Za-z0-9,.]+", "_", line))


@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=_one_worker_per_venv(install_line(name)))
        for name in sorted(FRESH, key=lambda name: (install_line(name), name))
    ],
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
