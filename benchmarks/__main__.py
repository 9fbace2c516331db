"""One entry point for every benchmark: ``python -m benchmarks run [NAME ...] [--quick]``.

Run from the repository root (``pip install -e '.[bench]'`` first)::

    python -m benchmarks list                      # the benchmarks and what each measures
    python -m benchmarks run                       # all of them, full size (many minutes; redraws docs/img)
    python -m benchmarks run bench_cache timeline  # some of them
    python -m benchmarks run --quick               # all of them, tiny: checks that each still works (CI)
    python -m benchmarks run compare --base ../base -- benchmarks/bench_outage.py --seconds 3

Each benchmark runs as its own script (``python benchmarks/NAME.py``) in a child process, with
this checkout first on ``PYTHONPATH``, one after the other (they time things: never side by
side). ``--quick`` passes ``--quick`` to each (tiny iteration counts, short runs; the figures
measure nothing) and draws the figures into a temporary directory, never over the committed ones
in ``docs/img``; ``compare`` then compares this checkout with itself over two rounds of
``bench_db.py --quick``. ``bench_db`` times real logins too: with ``PGHOST`` unset, the runner
starts a throwaway PostgreSQL server with ``tests/servers.py``; when PostgreSQL is not installed
it says so and times only the no-I/O rows, except under ``CI=true``, where that is an error.

Exit status: 0 when every benchmark run exited 0, 1 otherwise (a summary lists them).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS = (
    "bench_cache",
    "bench_db",
    "bench_import",
    "bench_outage",
    "bench_refresh",
    "bench_regions",
    "bench_serve",
    "bench_serve_stacks",
    "compare",
    "fleet_model",
    "regions_timeline",
    "timeline",
)
FIGURES = ("regions_timeline", "timeline")  # the scripts that draw into docs/img (``--out`` elsewhere)
QUICK_TIMEOUT = 600.0  # seconds one quick benchmark may take before it counts as failed


def summary(name: str) -> str:
    """The first line of a benchmark's docstring."""
    doc = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text(encoding="utf-8"))) or ""
    return doc.split("\n")[0]


@contextlib.contextmanager
def database(env: dict[str, str]) -> Iterator[None]:
    """``PG*`` variables in ``env`` naming a throwaway PostgreSQL server, unless ``PGHOST`` is set already.

    Without PostgreSQL installed: a printed reason and no variables, or, under ``CI=true``, an error.
    """
    if env.get("PGHOST"):
        yield
        return
    sys.path.insert(0, str(ROOT))
    try:
        import pytest

        from tests.servers import postgres
    except ImportError as err:  # tests/servers.py needs the test extra
        if env.get("CI") == "true":
            raise
        print(f"bench_db: no real logins: {err} (install '.[dev]', or set PGHOST)", flush=True)
        yield
        return
    finally:
        sys.path.remove(str(ROOT))
    try:
        with postgres() as server:
            env.update(
                PGHOST=server.host,
                PGPORT=str(server.port),
                PGUSER=server.admin_user,
                PGPASSWORD=server.admin_password,
                PGDATABASE=server.dbname,
            )
            yield
            return
    except pytest.skip.Exception as skipped:  # not installed, outside CI (under CI: pytest.fail, an error)
        print(f"bench_db: no real logins: {skipped.msg}", flush=True)
    yield


def command(name: str, *, quick: bool, out: Path | None, base: Path | None, extra: list[str]) -> list[str] | str:
    """The child's command line, or why the benchmark cannot run as asked."""
    script = [sys.executable, str(HERE / f"{name}.py")]
    if name == "compare":
        if quick:
            return [*script, "--base", str(base or ROOT), "--rounds", "2", "benchmarks/bench_db.py", "--quick"]
        if base is None or not extra:
            return "needs --base TREE and, after --, the script to compare (see benchmarks/compare.py)"
        return [*script, "--base", str(base), *extra]
    args = ["--quick"] if quick else []
    if name in FIGURES and out is not None:
        args += ["--out", str(out)]
    return [*script, *args, *(extra if not quick else [])]


def run(names: list[str], *, quick: bool, out: Path | None, base: Path | None, extra: list[str]) -> int:
    """Run ``names`` one after the other; print a summary; 0 when all exited 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    results: list[tuple[str, str, float]] = []
    for name in names:
        argv = command(name, quick=quick, out=out, base=base, extra=extra)
        if isinstance(argv, str):
            print(f"\n== {name}: not run: {argv}", flush=True)
            results.append((name, "not run", 0.0))
            continue
        print(f"\n== {name}{' (quick)' if quick else ''}: {summary(name)}", flush=True)
        started = time.monotonic()
        child_env = dict(env)
        with database(child_env) if name == "bench_db" else contextlib.nullcontext():
            try:
                code = subprocess.run(  # noqa: S603 - our own interpreter and scripts
                    argv, cwd=ROOT, env=child_env, check=False, timeout=QUICK_TIMEOUT if quick else None
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
        elapsed = time.monotonic() - started
        results.append((name, "ok" if code == 0 else f"FAILED (exit {code})", elapsed))
    print(f"\n{'benchmark':<18} {'result':<20} {'seconds':>8}")
    for name, result, elapsed in results:
        print(f"{name:<18} {result:<20} {elapsed:>8.1f}")
    print(f"{'total':<18} {'':<20} {sum(elapsed for *_, elapsed in results):>8.1f}")
    return 0 if all(result in {"ok", "not run"} for _, result, _ in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the benchmarks and what each measures")
    runner = commands.add_parser("run", help="run benchmarks (all when none is named)")
    runner.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)}")
    runner.add_argument("--quick", action="store_true", help="tiny runs that check every benchmark works (CI)")
    runner.add_argument("--out", type=Path, help="where the timelines draw (default docs/img; --quick: a temp dir)")
    runner.add_argument("--base", type=Path, help="compare: the tree measured as 'before'")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, extra = argv[:cut], argv[cut + 1 :]  # after --: passed to the script (compare: the script and its args)
    options = parser.parse_args(argv)
    if options.command == "list":
        for name in BENCHMARKS:
            print(f"{name:<18} {summary(name)}")
        return 0
    unknown = sorted(set(options.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = options.names or list(BENCHMARKS)
    if options.quick:
        print("--quick: every benchmark, tiny; this checks that each runs, its figures measure nothing", flush=True)
        with tempfile.TemporaryDirectory(prefix="secretcache-bench-") as temporary:
            return run(names, quick=True, out=options.out or Path(temporary), base=options.base, extra=extra)
    if not options.names and options.base is None:
        names.remove("compare")  # it needs a tree to compare with; say so rather than fail
        print("compare is left out: it needs --base TREE and a script after -- (see benchmarks/compare.py)")
    return run(names, quick=False, out=options.out, base=options.base, extra=extra)


if __name__ == "__main__":
    sys.exit(main())
