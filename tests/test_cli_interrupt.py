"""Ctrl-C at any point of the command's life: status 130 and nothing on standard error.

Deterministic: a ``sitecustomize`` on the child's path holds the import of a chosen module,
says so on a pipe and waits; the test sends SIGINT only once the child is held there. A child
that never gets there, or never ends, fails the test at the timeout instead of stalling it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import secretcache
from secretcache import _startup

_HOLD = '''\
import os, sys, time

class _Hold:
    """Hold the import of $TEST_HOLD_IMPORT_OF: announce it on the pipe, wait for a signal."""

    def find_spec(self, name, path=None, target=None):
        if name != os.environ["TEST_HOLD_IMPORT_OF"]:
            return None
        sys.meta_path.remove(self)
        fd = int(os.environ["TEST_HOLD_ANNOUNCE_FD"])
        os.write(fd, b"held\\n")
        os.close(fd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)  # a SIGINT's handler runs here
        return None

sys.meta_path.insert(0, _Hold())
'''

# pip's console-script launcher, as in the venv's bin/secretcache.
_LAUNCHER = """\
import re
import sys
from secretcache.__main__ import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


# A job that a non-interactive shell starts in the background (as .ci/run starts the other
# Pythons' test runs) has SIGINT ignored, and a child keeps an ignored signal across exec: start
# each child through an exec that gives SIGINT its default first, as in a terminal.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def _as_in_a_terminal(command: list[str]) -> list[str]:
    """``command``, started with SIGINT at its default disposition whatever this process inherited."""
    return [sys.executable, "-c", _DEFAULT_SIGINT, *command]


def _interrupted_at(module: str, command: list[str], tmp_path: Path) -> tuple[int, bytes, bytes]:
    """Run ``command``, hold it at the import of ``module``, send SIGINT: (status, stdout, stderr)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_HOLD)
    read_end, write_end = os.pipe()
    path = os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "TEST_HOLD_IMPORT_OF": module,
        "TEST_HOLD_ANNOUNCE_FD": str(write_end),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never reached: the command is stopped first
    }
    try:
        process = subprocess.Popen(
            _as_in_a_terminal(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_end,)
        )
    finally:
        os.close(write_end)
    try:
        with open(read_end, "rb") as announced:
            assert announced.readline() == b"held\n", f"the child never imported {module}"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    except BaseException:
        process.kill()
        process.communicate()  # reaps it and closes the pipes
        raise
    return process.returncode, out, err


@pytest.mark.parametrize(
    "module",
    [
        "botocore",  # inside `import secretcache`, before the command's own code runs
        "secretcache._cli",  # python -m secretcache importing the command
        "secretcache._check",
        "boto3",  # once the command runs: its client is being built
    ],
)
def test_sigint_under_python_m_is_130_and_quiet(module: str, tmp_path: Path) -> None:
    """`python -m secretcache get x` interrupted at each stage: 130, no traceback (was -2 early on)."""
    command = [sys.executable, "-m", "secretcache", "get", "x"]
    assert _interrupted_at(module, command, tmp_path) == (130, b"", b"")


def test_sigint_while_the_arguments_are_parsed_is_130_and_quiet(tmp_path: Path) -> None:
    """Ctrl-C while argparse runs, after main() gave SIGINT back to Python (here: --query imports jmespath): 130."""
    command = [sys.executable, "-m", "secretcache", "get", "x", "--query", "name"]
    assert _interrupted_at("jmespath", command, tmp_path) == (130, b"", b"")


@pytest.mark.parametrize("module", ["botocore", "secretcache._cli", "boto3"])
def test_sigint_under_the_console_script_is_130_and_quiet(module: str, tmp_path: Path) -> None:
    """The `secretcache` script pip installs, interrupted at each stage: 130, nothing printed."""
    script = tmp_path / "bin" / "secretcache"
    script.parent.mkdir()
    script.write_text(_LAUNCHER)
    assert _interrupted_at(module, [sys.executable, str(script), "get", "x"], tmp_path) == (130, b"", b"")


def test_other_programs_keep_their_sigint(tmp_path: Path) -> None:
    """Importing secretcache elsewhere (here, and in a `python -c` child) leaves SIGINT to Python."""
    assert secretcache.SecretCache is not None
    # Here: whatever this process started with (a CI job run in the background inherits SIGINT
    # ignored), but no handler of secretcache's. The child starts with SIGINT at its default.
    handler = signal.getsignal(signal.SIGINT)
    assert handler in (signal.default_int_handler, signal.SIG_IGN), handler
    code = "import signal, secretcache; assert signal.getsignal(signal.SIGINT) is signal.default_int_handler"
    result = subprocess.run(
        _as_in_a_terminal([sys.executable, "-c", code]), capture_output=True, timeout=60, check=False
    )
    assert (result.returncode, result.stderr) == (0, b"")
    returncode, _, err = _interrupted_at("botocore", [sys.executable, "-c", "import secretcache"], tmp_path)
    assert returncode == -signal.SIGINT
    assert b"KeyboardInterrupt" in err


@pytest.mark.parametrize(
    ("orig_argv", "module"),
    [
        (["python", "-m", "secretcache", "get"], "secretcache"),
        (["python", "-msecretcache"], "secretcache"),
        (["python", "-I", "-W", "ignore", "-X", "dev", "-Im", "secretcache.__main__"], "secretcache.__main__"),
        (["python", "-c", "-m secretcache"], None),
        (["python", "script.py", "-m", "secretcache"], None),
    ],
)
def test_the_module_python_m_runs_is_read_from_the_command_line(orig_argv: list[str], module: str | None) -> None:
    """Only `python [flags] -m secretcache` counts as the command; `-c` code or a script's arguments do not."""
    assert _startup._module_run(orig_argv) == module
