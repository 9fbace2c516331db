"""Before and after in one run: a benchmark script against two source trees, rounds interleaved.

Run:  python benchmarks/compare.py --base /path/to/base-checkout [--head .] [--rounds 3] SCRIPT [ARGS...]

The same SCRIPT (this path, whichever tree it is in) runs with ``PYTHONPATH=<base>`` and with
``PYTHONPATH=<head>`` (default: the tree holding this file), in turns: before, after, before,
after, ... ``--rounds`` times each, with the same interpreter. Before the first round each tree
is checked to be the one ``import secretcache`` loads (an editable install elsewhere would
otherwise win silently).

Output: for each side, the first round's output with every markdown table row (``| a | b |``)
replaced by the median over rounds of each numeric cell (rows matched by table and first cell);
a text cell that differs between rounds shows each value and how many rounds gave it. Then, with
more than one round, the same tables with each numeric cell's range over rounds (min-max): the
noise. Lines outside tables are from the first round. Same machine, same script, interleaved:
compare the two sides of one run, never figures across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

NUMBER = re.compile(r"^-?[\d,]*\.?\d+$")
Table = dict[tuple[int, str], list[str]]  # (table index, first cell) -> cells


def label(tree: Path) -> str:
    """The tree's commit, and whether its library differs from that commit."""
    git = ["git", "-C", str(tree)]
    commit = subprocess.run(  # noqa: S603 - git on a path given by the user
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    if commit.returncode != 0:
        return str(tree)
    dirty = subprocess.run(  # noqa: S603 - git on a path given by the user
        [*git, "status", "--porcelain", "--", "secretcache"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return commit.stdout.strip() + (" + uncommitted changes in secretcache/" if dirty else "")


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def check_import(tree: Path) -> None:
    """Fail unless ``import secretcache`` with PYTHONPATH=tree loads the tree's package."""
    code = "import secretcache; print(secretcache.__file__)"
    with tempfile.TemporaryDirectory() as elsewhere:  # python -c puts the working directory first on sys.path
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code], env=environment(tree), cwd=elsewhere, capture_output=True, text=True
        )
    loaded = Path(result.stdout.strip()).resolve()
    if result.returncode != 0 or not loaded.is_relative_to(tree):
        sys.exit(f"with PYTHONPATH={tree}, import secretcache loads {loaded or result.stderr.strip()}")


def run(script: Path, args: list[str], tree: Path, timeout: float) -> str:
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - our own interpreter running the script the user named
        [sys.executable, str(script), *args],
        env=environment(tree),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(f"  {tree}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    if result.returncode != 0:
        sys.exit(f"{script} failed with PYTHONPATH={tree}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def cells(line: str) -> list[str] | None:
    """The cells of a markdown table row; None for other lines and for separator rows."""
    text = line.strip()
    if not (text.startswith("|") and text.endswith("|")):
        return None
    parts = [part.strip() for part in text[1:-1].split("|")]
    if all(set(part) <= set("-: ") for part in parts):
        return None
    return parts


def rows(output: str) -> Table:
    found: Table = {}
    table = 0
    inside = False
    for line in output.splitlines():
        parts = cells(line)
        is_table = line.strip().startswith("|")
        if is_table and not inside:
            table += 1
        inside = is_table
        if parts:
            found[table, parts[0]] = parts
    return found


def number(cell: str) -> float | None:
    return float(cell.replace(",", "")) if NUMBER.match(cell) else None


def show(value: float, like: str) -> str:
    """``value`` with as many decimals as ``like``, thousands separated."""
    decimals = len(like.split(".")[1]) if "." in like else 0
    return f"{value:,.{decimals}f}"


def merge(samples: list[list[str]], spread: bool) -> list[str]:
    merged = [samples[0][0]]  # the row's key
    for column in list(zip(*samples, strict=False))[1:]:
        values = [number(cell) for cell in column]
        if all(value is not None for value in values) and len(values) > 0:
            present = [value for value in values if value is not None]
            if spread:
                merged.append(f"{show(min(present), column[0])} - {show(max(present), column[0])}")
            else:
                merged.append(show(statistics.median(present), column[0]))
        elif len(set(column)) == 1:
            merged.append(column[0])
        else:
            merged.append(", ".join(f"{value} x{count}" for value, count in Counter(column).most_common()))
    return merged


def render(outputs: list[str], spread: bool) -> str:
    """The first output with each table row replaced by its merge over all outputs."""
    parsed = [rows(output) for output in outputs]
    lines = []
    table = 0
    inside = False
    for line in outputs[0].splitlines():
        is_table = line.strip().startswith("|")
        if is_table and not inside:
            table += 1
        inside = is_table
        parts = cells(line)
        if parts is None:
            blank_again = not line.strip() and (not lines or not lines[-1].strip())
            if (not spread or is_table or not line.strip() or line.startswith("#")) and not blank_again:
                lines.append(line)
            continue
        key = (table, parts[0])
        samples = [found[key] for found in parsed if key in found]
        lines.append("| " + " | ".join(merge(samples, spread)) + " |")
        if len(samples) < len(outputs):
            lines[-1] += f" (in {len(samples)} of {len(outputs)} rounds)"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the tree measured as 'before'")
    parser.add_argument(
        "--head", type=Path, default=Path(__file__).resolve().parents[1], help="the 'after' tree (default: this one)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per side, interleaved (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take (default 900)")
    parser.add_argument("script", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script")
    options = parser.parse_args()
    sides = {"before": options.base.resolve(), "after": options.head.resolve()}
    for tree in sides.values():
        check_import(tree)
    script = options.script.resolve()
    rounds = max(1, min(options.rounds, 20))
    outputs: dict[str, list[str]] = {side: [] for side in sides}
    for index in range(rounds):
        print(f"round {index + 1} of {rounds}", file=sys.stderr, flush=True)
        for side, tree in sides.items():
            outputs[side].append(run(script, options.args, tree, options.timeout))
    print(f"{' '.join([script.name, *options.args])}: {rounds} rounds per side, interleaved; cells are medians\n")
    for side, tree in sides.items():
        print(f"## {side} ({label(tree)}, {tree})\n")
        print(render(outputs[side], spread=False) + "\n")
    if rounds > 1:
        print("# Noise: each numeric cell's range over the rounds (min - max)\n")
        for side, tree in sides.items():
            print(f"## {side} ({label(tree)})\n")
            print(render(outputs[side], spread=True) + "\n")


if __name__ == "__main__":
    main()
