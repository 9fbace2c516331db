"""Recording a real run: what ``timeline.py``, ``regions_timeline.py`` and ``bench_regions.py`` share.

A :class:`Recording` is one run's record on the monotonic clock: its origin, every API attempt a
played backend saw (:class:`Attempt`, through :meth:`Recording.backend`'s botocore hooks) and
every read a reader thread made (:class:`Read`, through :func:`start_readers`). The analysis
helpers (:func:`clusters`, :func:`percentile`, :func:`ms`) and the command line every benchmark
shares (:func:`options`: ``--quick``, ``--out``) live here too.

The benchmarks import this module by its file name (``from _recording import ...``): each runs
as a script, with its own directory first on ``sys.path``, also when ``compare.py`` runs it
against another tree.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secretcache import RetryPolicy

QUICK_FACTOR = 0.25  # --quick runs a real-time scenario on a clock this many times as long
#: Where the committed figures live; ``--out`` writes elsewhere (the runner's ``--quick`` does).
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "img"
REFRESH_THREAD = "secretcache-refresh"  # the cache's refresh pool names its threads so


@dataclass(frozen=True, slots=True)
class Span:
    """A labelled interval on the timeline (s since the origin)."""

    start: float
    end: float
    label: str


@dataclass(slots=True)
class Attempt:
    """One API call as a played backend saw it (s since the origin), and who made it.

    ``end`` is first the end of the backend's delay, then, once botocore has parsed the answer,
    the moment the cache can stamp the new value's deadlines.
    """

    start: float
    end: float
    ok: bool
    thread: str  # "name/ident": a reader's fetch handed off to "secretcache-fetch" shares the name
    region: str = ""
    process: str = ""

    @property
    def background(self) -> bool:
        """Made by the refresh pool; a reader's fetch is foreground wherever it runs."""
        return self.thread.startswith(REFRESH_THREAD)


@dataclass(frozen=True, slots=True)
class Read:
    """One read: when it started (s since the origin), how long it took (s), what it got or raised.

    ``value`` is the benchmark's label for what the read returned (a value's name, the Region
    it came from); ``error`` the type name of the exception it raised.
    """

    at: float
    latency: float
    value: str | None
    error: str | None
    process: str = ""


class Recording:
    """One run's record: an origin on the monotonic clock and every attempt, appended thread-safely."""

    def __init__(self) -> None:
        self.origin = time.monotonic()
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the origin."""
        return time.monotonic() - self.origin

    def restart(self) -> None:
        """Move the origin to now and forget the attempts so far (after a warm-up)."""
        with self._lock:
            self.origin = time.monotonic()
            self.attempts.clear()

    def sorted_attempts(self, region: str | None = None) -> list[Attempt]:
        """The attempts by start (of one Region when given)."""
        with self._lock:
            chosen = [a for a in self.attempts if region is None or a.region == region]
        return sorted(chosen, key=lambda attempt: attempt.start)

    def backend(
        self,
        client: Any,
        *,
        delay: Callable[[], float],
        fault: Callable[[float], Exception | None],
        region: str = "",
        process: str = "",
        operation: str = "",
    ) -> None:
        """Play a backend on ``client`` with botocore hooks, recording every attempt.

        Each call first sleeps ``delay()`` seconds, then raises ``fault(start)`` when that is an
        exception (``start``: s since the origin when the call began). ``operation`` narrows the
        hooks to one operation (``"GetSecretValue"``); by default every Secrets Manager call.
        """
        current = threading.local()
        event = f"secretsmanager.{operation}" if operation else "secretsmanager"

        def before_call(**_: Any) -> None:
            start = self.now()
            time.sleep(delay())
            error = fault(start)
            thread = threading.current_thread()
            attempt = Attempt(start, self.now(), error is None, f"{thread.name}/{thread.ident}", region, process)
            with self._lock:
                self.attempts.append(attempt)
            current.attempt = attempt
            if error is not None:
                raise error

        def after_call(**_: Any) -> None:
            current.attempt.end = self.now()

        client.meta.events.register(f"before-call.{event}", before_call)
        client.meta.events.register(f"after-call.{event}", after_call)


def start_readers(
    recording: Recording,
    read: Callable[[int, int], str],
    *,
    count: int,
    pause: float,
    until: float,
    process: str = "",
) -> tuple[list[threading.Thread], list[list[Read]]]:
    """Start ``count`` reader threads, each calling ``read(index, n)`` every ``pause`` s until ``until`` s.

    ``index`` is the reader's (0 to ``count - 1``), ``n`` its read's; ``until`` is in s since the origin.

    Every read is recorded, its exception too (by type name, never hidden). Each reader stops
    after ``until / pause + 1`` reads at most, a hard bound on top of the deadline. Returns the
    threads and each one's list of reads (filled as they run).
    """
    bound = int(until / pause) + 1

    def loop(index: int, out: list[Read]) -> None:
        for n in range(bound):
            at = recording.now()
            if at >= until:
                return
            started = time.perf_counter()
            value: str | None = None
            error: str | None = None
            try:
                value = read(index, n)
            except Exception as err:  # recorded, drawn and counted, never hidden
                error = type(err).__name__
            out.append(Read(at, time.perf_counter() - started, value, error, process))
            time.sleep(pause)

    outputs: list[list[Read]] = [[] for _ in range(count)]
    prefix = f"{process}-reader" if process else "reader"
    threads = [
        threading.Thread(target=loop, args=(index, out), name=f"{prefix}-{index}", daemon=True)
        for index, out in enumerate(outputs)
    ]
    for thread in threads:
        thread.start()
    return threads, outputs


def join_reads(threads: list[threading.Thread], outputs: list[list[Read]], timeout: float) -> list[Read]:
    """Wait for the readers (``timeout`` s each at most); every read, by start."""
    for thread in threads:
        thread.join(timeout=timeout)
    return sorted((read for out in outputs for read in out), key=lambda read: read.at)


def clusters(reads: list[Read], gap: float = 0.3) -> list[list[Read]]:
    """Runs of reads (sorted by start) that started less than ``gap`` apart."""
    runs: list[list[Read]] = []
    for read in reads:
        if runs and read.at - runs[-1][-1].at < gap:
            runs[-1].append(read)
        else:
            runs.append([read])
    return runs


def percentile(ordered: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of the sorted ``ordered`` lie (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    """Milliseconds, with three decimals below 1 ms."""
    value = seconds * 1e3
    return f"{value:.3f}" if value < 1 else f"{value:.1f}"


def options(doc: str | None, *, figure: bool = False, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every benchmark shares: ``--quick`` and, for one that draws, ``--out DIR``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run that only checks the benchmark works")
    if figure:
        parser.add_argument("--out", type=Path, default=FIGURES, help=f"directory for the figure (default {FIGURES})")
    return parser.parse_args(argv)


def shorten(namespace: dict[str, Any], names: Iterable[str], factor: float = QUICK_FACTOR) -> None:
    """Scale the durations ``names`` names in ``namespace`` (a script's globals) by ``factor``, for ``--quick``.

    A number, the values of a dict of numbers, or a :class:`RetryPolicy`'s durations (its
    attempts stay). The scenario keeps its shape on a shorter clock; the code that records,
    analyses and draws it runs as in the full run.
    """
    for name in names:
        value = namespace[name]
        if isinstance(value, RetryPolicy):
            durations = ("initial_delay", "max_delay", "deadline", "failure_backoff", "max_failure_backoff")
            namespace[name] = dataclasses.replace(value, **{key: getattr(value, key) * factor for key in durations})
        elif isinstance(value, dict):
            namespace[name] = {key: item * factor for key, item in value.items()}
        else:
            namespace[name] = value * factor


def save(figure: Any, path: Path) -> None:
    """Write ``figure`` to ``path`` (creating its directory) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"wrote {shown}")
