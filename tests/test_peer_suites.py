"""scripts/peer-suites judges the adapter: its report parsing, its expected-failure check and its recipe guard.

The full run (which downloads the official library's sources) is CI's; these tests run offline.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "peer_suites.py"


@pytest.fixture(scope="module")
def peer_suites() -> ModuleType:
    """The logic of scripts/peer-suites, imported without running anything."""
    spec = importlib.util.spec_from_file_location("peer_suites", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_suites"] = module
    spec.loader.exec_module(module)
    return module


def test_a_junit_report_is_read_per_test_and_per_unimportable_module(peer_suites: ModuleType, tmp_path: Path) -> None:
    """Passed, failed (with its first line) and a module that cannot import are keyed as the expected lists key them."""
    unit = tmp_path / "test" / "unit"
    unit.mkdir(parents=True)
    (unit / "test_ok.py").write_text(
        "import unittest\n\nclass TestA(unittest.TestCase):\n"
        "    def test_pass(self):\n        pass\n\n"
        "    def test_fail(self):\n        raise AssertionError('first line\\nsecond line')\n"
    )
    (unit / "test_broken.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "x.ini").write_text("[pytest]\n")
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "test/unit", "-c", "x.ini", "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "-p", "no:asyncio", "--continue-on-collection-errors", "-o", "addopts=",
         f"--junitxml={report}"],
        cwd=tmp_path, check=False, capture_output=True,
    )  # fmt: skip
    outcomes = peer_suites.outcomes_of(report)
    assert outcomes["test_ok.py::TestA::test_pass"] == ("passed", "")
    assert outcomes["test_ok.py::TestA::test_fail"][0] == "failed"
    assert "first line" in outcomes["test_ok.py::TestA::test_fail"][1]
    assert "second line" not in outcomes["test_ok.py::TestA::test_fail"][1]
    assert outcomes["test_broken.py"][0] == "failed"


def test_only_listed_failures_are_accepted(peer_suites: ModuleType) -> None:
    """An unlisted failure and a listed test that passes are both problems; a listed module covers its tests."""
    expected = {"test_a.py::T::test_x": "why", "test_m.py": "internals"}
    assert peer_suites.check({"test_a.py::T::test_x": ("failed", ""), "test_m.py": ("failed", "")}, expected) == []
    assert peer_suites.check({"test_a.py::T::test_y": ("failed", "")}, expected) == [
        "unexpected failed: test_a.py::T::test_y"
    ]
    assert peer_suites.check({"test_a.py::T::test_x": ("passed", "")}, expected) == [
        "passes now, remove it from the expected failures and docs/migrating.md: test_a.py::T::test_x"
    ]


def test_every_expected_failure_is_in_the_migrating_guide(peer_suites: ModuleType) -> None:
    """Each test the script lists as failing is named in docs/migrating.md's table."""
    guide = (SCRIPT.parent.parent / "docs" / "migrating.md").read_text()
    for key in peer_suites.EXPECTED:
        assert key.rsplit("::", 1)[-1] in guide, key


def test_the_recipe_refuses_peer_sources_it_does_not_match(peer_suites: ModuleType, tmp_path: Path) -> None:
    """If the peer's stubs change shape, applying the recipe fails loudly instead of running unchanged tests."""
    (tmp_path / "src" / "test" / "unit").mkdir(parents=True)
    (tmp_path / "src" / "test" / "unit" / "test_x.py").write_text("def test_nothing():\n    pass\n")
    with pytest.raises(SystemExit, match="recipe matched"):
        peer_suites.apply_recipe(tmp_path / "src", tmp_path / "out")
