"""The demo's narration and its log lines appear in the order things happen."""

from __future__ import annotations

import pytest

from secretcache.__main__ import main


def _index(lines: list[str], fragment: str) -> int:
    """The index of the one line of ``lines`` holding ``fragment``."""
    found = [number for number, line in enumerate(lines) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def test_each_log_line_follows_the_narration_of_its_step(capsys: pytest.CaptureFixture[str]) -> None:
    """A warning is printed after the step that caused it is told, never ahead of it or in the previous step."""
    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    warnings = [line for line in lines if line.startswith("   [log WARNING]")]
    assert len(warnings) == 2, warnings
    serving = _index(lines, "[log WARNING] serving the cached value of secret 'demo/db-password'")
    assert _index(lines, "while the background refresh fails and is retried") < serving
    assert serving < _index(lines, "the refresh gave up after 3 attempts")
    none_left = _index(lines, "[log WARNING] fetching secret 'demo/db-password' failed and no cached value")
    assert _index(lines, "returns the last good value at once") < _index(lines, "the retries failed too") < none_left
    assert _index(lines, "an hour later the value is too old to serve") < none_left
    assert none_left < _index(lines, "   SecretUnavailableError: ") < _index(lines, "5. Secrets Manager is back.")
