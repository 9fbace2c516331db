"""The suite's untraced spans (tests/untraced.py): coverage's tracer off inside, back after; a debugger's kept."""

from __future__ import annotations

import bdb
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import FrameType

import coverage
import pytest

from tests.conftest import WATCHDOG
from tests.untraced import SPANS, is_coverage, is_installed, untraced

_SPAN_UNDER_COVERAGE = """
import sys
import coverage
from tests.untraced import is_coverage, untraced

seen = []


def span(fail):
    seen.append(sys.gettrace())
    if fail:
        raise LookupError("inside the span")


def caller(wrapped):
    tracer = sys.gettrace()
    wrapped(False)
    after = sys.gettrace()
    try:
        wrapped(True)
    except LookupError:
        pass
    return tracer, after, sys.gettrace()


measurement = coverage.Coverage(data_file=None, config_file=False)
measurement.start()
try:
    tracer, after, after_raising = caller(untraced(span))
finally:
    measurement.stop()
print(is_coverage(tracer), seen == [None, None], after is tracer, after_raising is tracer)
"""


@pytest.mark.parametrize("core", ["ctrace", "pytrace"])
def test_a_span_runs_without_coverages_tracer_and_puts_it_back_even_when_it_raises(core: str) -> None:
    """Both of coverage.py's tracers (C and Python) are off inside a span, and are back after it.

    In a Python of its own: in this process, pytest-cov's tracer (stopped for an ``unmeasured``
    test) is still held by the test's frames, and under pytest-xdist took a tracer set there off again.
    """
    environment = {**os.environ, "COVERAGE_CORE": core, "PYTHONPATH": str(Path(__file__).parents[1])}
    run = subprocess.run(
        [sys.executable, "-c", _SPAN_UNDER_COVERAGE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=WATCHDOG,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    # the tracer is coverage.py's; none inside the span; the same one after it, and after it raised
    assert run.stdout.split() == ["True", "True", "True", "True"]


@pytest.mark.unmeasured  # the debugger replaces the trace function, coverage.py's included
def test_a_debuggers_breakpoint_inside_a_span_stops() -> None:
    """A debugger's trace function (bdb, which pdb and IDEs build on) is left in place: its breakpoint stops."""

    def span(value: int) -> int:
        return value * 2  # the breakpoint's line

    class Recorder(bdb.Bdb):
        def __init__(self) -> None:
            super().__init__()
            self.stops: list[tuple[str, int]] = []

        def user_line(self, frame: FrameType) -> None:
            self.stops.append((frame.f_code.co_name, frame.f_lineno))
            self.set_continue()  # on to the next breakpoint, as pdb's "continue" does

    line = span.__code__.co_firstlineno + 1
    debugger = Recorder()
    assert debugger.set_break(__file__, line) is None  # None: the breakpoint was set
    before = sys.gettrace()
    try:
        assert debugger.runcall(untraced(span), 21) == 42
    finally:
        sys.settrace(before)
    assert ("span", line) in debugger.stops
    assert not is_coverage(debugger.trace_dispatch)


def test_without_a_trace_function_a_span_just_runs() -> None:
    before = sys.gettrace()
    sys.settrace(None)
    try:
        assert untraced(lambda value: value * 2)(21) == 42
        assert sys.gettrace() is None
    finally:
        sys.settrace(before)


@pytest.mark.unmeasured  # runs a coverage measurement of its own
def test_coverage_measures_the_lines_after_a_span_and_none_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """coverage.py's C tracer, removed for a span and put back, measures the rest of the caller and of its callers."""
    source = tmp_path / "probe.py"
    source.write_text(
        textwrap.dedent(
            """\
            def inside():
                return 1


            def measured(span):
                total = span()
                total += 1
                return total


            def caller(span):
                result = measured(span)
                result += 1
                return result
            """
        )
    )
    monkeypatch.setenv("COVERAGE_CORE", "ctrace")  # the tracer CI measures with (Python 3.11)
    spec = importlib.util.spec_from_file_location(f"untraced_probe_{id(source)}", source)
    assert spec is not None
    assert spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    measurement = coverage.Coverage(data_file=None, config_file=False, branch=True, include=[str(source)])
    measurement.start()
    try:
        assert probe.caller(untraced(probe.inside)) == 3
    finally:
        measurement.stop()
    lines = set(measurement.get_data().lines(str(source)) or ())
    assert 2 not in lines  # inside the span
    assert {6, 7, 8, 12, 13, 14} <= lines  # after it, in the function that called it and in its caller


def test_every_span_names_a_function_that_exists_and_is_wrapped() -> None:
    """A span a library renamed or removed is left traced by ``install``, and named here."""
    missing = [(owner, name) for owner, name in SPANS if not callable(getattr(owner, name, None))]
    assert missing == []
    if is_installed():  # not under SECRETCACHE_TESTS_TRACE_ALL=1 (scripts/compare-coverage)
        wrapper = untraced(lambda: None).__code__  # every span's function runs this code first
        assert [(owner, name) for owner, name in SPANS if getattr(owner, name).__code__ is not wrapper] == []
