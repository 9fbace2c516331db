"""Start-up cost: what ``import secretcache`` adds to a cold interpreter, next to botocore.

Run:  python benchmarks/bench_import.py [starts] [--quick]

Every sample is a fresh interpreter (``python -c ...``) timed from spawn to exit, so the figures
include what a cold AWS Lambda start pays. The three commands run interleaved, round by round, so
a noisy neighbour slows all of them alike; the report gives medians. ``python -c pass`` is the
floor (interpreter start-up); the interesting figure is ``import secretcache`` minus
``import botocore.session``, since any boto3 user already pays for the latter. Compare rows of
one run with each other, never across machines.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

STARTS = 41
COMMANDS = {
    "python -c pass": "pass",
    "import botocore.session": "import botocore.session",
    "import secretcache": "import secretcache",
    "import botocore.session, secretcache": "import botocore.session, secretcache",
}
# PYTHONPROFILEIMPORTTIME, PYTHONDEVMODE and the like would distort the timings: the children get
# the environment without any PYTHON* variable.
ENV = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


def one_start(code: str) -> float:
    """Milliseconds from spawning a fresh interpreter running ``code`` until it exits."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)  # noqa: S603 - our own interpreter
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Time ``STARTS`` interleaved rounds of every command and print medians."""
    args = sys.argv[1:]
    quick = "--quick" in args  # one start per command: checks the script works, measures nothing
    numbers = [arg for arg in args if arg != "--quick"]
    starts = 1 if quick else int(numbers[0]) if numbers else STARTS
    for code in COMMANDS.values():  # warm the OS page cache and the bytecode caches
        one_start(code)
    samples: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(starts):
        for label, code in COMMANDS.items():
            samples[label].append(one_start(code))
    medians = {label: statistics.median(values) for label, values in samples.items()}
    print(f"{starts} fresh interpreter starts each, interleaved; Python {sys.version.split()[0]}")
    print(f"{'command':<38} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for label, values in samples.items():
        print(f"{label:<38} {medians[label]:>10.1f} {min(values):>8.1f} {max(values):>8.1f}")
    floor = medians["python -c pass"]
    botocore = medians["import botocore.session"] - floor
    ours = medians["import secretcache"] - floor
    print(f"import botocore.session beyond start-up: {botocore:.1f} ms")
    print(f"import secretcache beyond start-up:      {ours:.1f} ms")
    both = medians["import botocore.session, secretcache"] - floor
    print(f"secretcache minus botocore.session:      {ours - botocore:+.1f} ms (target: at most +15 ms)")
    print(f"secretcache on top of botocore.session:  {both - botocore:+.1f} ms")


if __name__ == "__main__":
    main()
