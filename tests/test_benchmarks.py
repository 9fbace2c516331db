"""The benchmarks keep working: the entry point, the shared recording module, and quick runs of the cheap ones.

``.ci/run`` runs ``python -m benchmarks run --quick`` for all of them; here the cheap ones run
in the suite, so a benchmark broken by a change fails the tests that change runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load(name: str) -> ModuleType:
    """A module of ``benchmarks/`` loaded by path (the scripts import each other by file name)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def entry_point(*args: str, timeout: float = 280) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_every_benchmark_script_is_known_to_the_entry_point():
    """Every script in benchmarks/ (but the shared modules) is one the entry point runs, and it lists them all."""
    scripts = sorted(path.stem for path in BENCHMARKS.glob("*.py") if not path.stem.startswith("_"))
    assert sorted(load("__main__").BENCHMARKS) == scripts
    listed = entry_point("list", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == scripts


def test_unknown_benchmark_is_refused_with_the_names():
    """Naming a benchmark that does not exist fails at once and lists the ones that do."""
    result = entry_point("run", "--quick", "bench_nothing", timeout=60)
    assert result.returncode == 2
    assert "no benchmark named bench_nothing" in result.stderr
    assert "bench_cache" in result.stderr


def test_quick_commands_never_draw_over_the_committed_figures(tmp_path: Path):
    """Quick mode passes --quick to all, has the timelines draw into the given directory, compares this tree."""
    runner = load("__main__")
    for name in runner.BENCHMARKS:
        argv = runner.command(name, quick=True, out=tmp_path, base=None, extra=["--ignored"])
        assert isinstance(argv, list), name
        assert "--quick" in argv, name
        assert "--ignored" not in argv, name
        if name in runner.FIGURES:
            assert argv[argv.index("--out") + 1] == str(tmp_path)
    compare = runner.command("compare", quick=True, out=tmp_path, base=None, extra=[])
    assert compare[compare.index("--base") + 1] == str(ROOT)


def test_full_compare_needs_a_base_and_a_script():
    """Outside quick mode, compare without --base or a script is not run, and says why."""
    runner = load("__main__")
    assert "needs --base" in runner.command("compare", quick=False, out=None, base=None, extra=[])
    argv = runner.command("compare", quick=False, out=None, base=Path("/base"), extra=["benchmarks/bench_db.py"])
    assert argv[-3:] == ["--base", "/base", "benchmarks/bench_db.py"]


def test_the_timelines_share_the_recording_module():
    """timeline.py, regions_timeline.py and bench_regions.py import their recording from benchmarks/_recording.py."""
    for name in ("timeline", "regions_timeline", "bench_regions"):
        source = (BENCHMARKS / f"{name}.py").read_text(encoding="utf-8")
        assert "from _recording import" in source, name
        assert "class Backend" not in source, name
        assert "def reader(" not in source, name


def test_recording_backend_records_attempts_and_raises_the_fault():
    """A played backend records each call with its outcome, Region and thread, and raises its fault."""
    recording = load("_recording")
    with mock_aws():
        admin = boto3.client("secretsmanager", region_name="us-east-1")
        admin.create_secret(Name="bench/x", SecretString="v")
        client = boto3.client("secretsmanager", region_name="us-east-1")
        run = recording.Recording()
        failing = [False, True]

        def fault(_start: float) -> Exception | None:
            return EndpointConnectionError(endpoint_url="https://x") if failing.pop(0) else None

        run.backend(client, delay=lambda: 0.0, fault=fault, region="us-east-1", process="p")
        assert client.get_secret_value(SecretId="bench/x")["SecretString"] == "v"
        with pytest.raises(EndpointConnectionError):
            client.get_secret_value(SecretId="bench/x")
    attempts = run.sorted_attempts()
    assert [attempt.ok for attempt in attempts] == [True, False]
    assert {(attempt.region, attempt.process) for attempt in attempts} == {("us-east-1", "p")}
    assert all(attempt.thread.startswith(threading.current_thread().name) for attempt in attempts)
    assert not any(attempt.background for attempt in attempts)
    assert all(0 <= attempt.start <= attempt.end for attempt in attempts)
    assert run.sorted_attempts("us-west-2") == []
    run.restart()
    assert run.sorted_attempts() == []


def test_readers_record_values_and_errors_until_the_deadline():
    """Reader threads record every read, an exception by its type name, and stop at the deadline."""
    recording = load("_recording")
    run = recording.Recording()

    def read(index: int, n: int) -> str:
        if n == 1:
            raise KeyError("x")
        return f"r{index}"

    threads, outputs = recording.start_readers(run, read, count=2, pause=0.01, until=1.0, process="p")
    reads = recording.join_reads(threads, outputs, timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert {read.value for read in reads} == {"r0", "r1", None}
    assert [read.error for read in reads if read.value is None] == ["KeyError", "KeyError"]
    assert all(read.process == "p" and 0 <= read.at < 1.0 for read in reads)
    assert reads == sorted(reads, key=lambda read: read.at)
    assert len(reads) <= 2 * (int(1.0 / 0.01) + 1)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["fleet_model", "bench_import"])
def test_quick_run_of_a_cheap_benchmark_succeeds(name: str):
    """``python -m benchmarks run --quick NAME`` exits 0 and reports the benchmark ok.

    Two cheap ones show the entry point works; ``.ci/run`` runs every benchmark through it.
    """
    result = entry_point("run", "--quick", name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = [line.split() for line in result.stdout.splitlines() if line.startswith(name)]
    assert summary[-1][:2] == [name, "ok"], result.stdout[-2000:]
