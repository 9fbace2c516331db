"""A timeline of replica-Region failover during a primary outage, drawn from a real run.

Run:  pip install -e '.[bench]' matplotlib && python benchmarks/regions_timeline.py

One secret in moto's in-process Secrets Manager (no network), replicated from us-east-1 to
us-west-2 with ``ReplicateSecretToRegions``. Two processes share it, each a ``SecretCache`` with
its own us-east-1 client and its own us-west-2 client in ``replica_regions``:

* the *warm* process starts at t = 0 with three reader threads;
* a *cold* process starts at t = 4.5 s, during the outage, with one reader thread.

A botocore ``before-call`` hook on every client plays the backend: 25 ms per call in us-east-1,
45 ms in us-west-2; from t = 3 s to t = 9 s every us-east-1 call then raises
``EndpointConnectionError``. Readers call ``get_secret`` every 10 ms until t = 12 s with the real
clock. Every read (start, latency, the Region of the value or the error) and every API attempt
(Region, process, start, end, outcome, thread) is recorded; the script prints a short summary and
draws ``docs/img/regions-timeline.png``.

Cache settings: ``ttl=4``, ``replica_ttl=2``, ``refresh_ahead=0.8``, ``ttl_jitter=0`` and
``RetryPolicy(attempts=3, initial_delay=0.05, max_delay=0.2, deadline=2.0, failure_backoff=0.5,
max_failure_backoff=2.0)``. The primary's backoff windows and the cached values drawn are
computed from the recorded attempts with the cache's rules, not read from its internals; the
reads and attempts show that the cache followed them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from _recording import Attempt, Read, Recording, Span, clusters, join_reads, options, save, shorten, start_readers
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from secretcache import RetryPolicy, SecretCache

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SECRET = "bench/regions-timeline"  # noqa: S105 - a secret name
PRIMARY = "us-east-1"
REPLICA = "us-west-2"
DELAYS = {PRIMARY: 0.025, REPLICA: 0.045}
TTL = 4.0
REPLICA_TTL = 2.0
REFRESH_AHEAD = 0.8
RETRY = RetryPolicy(
    attempts=3, initial_delay=0.05, max_delay=0.2, deadline=2.0, failure_backoff=0.5, max_failure_backoff=2.0
)
WARM, COLD = "warm", "cold"
READERS = {WARM: 3, COLD: 1}
COLD_START = 4.5
READ_PAUSE = 0.01
DURATION = 12.0
OUTAGE_START = 3.0
OUTAGE_END = 9.0
BLOCKED = 0.005
SAME_FETCH_GAP = RETRY.max_delay + 0.05  # a retry or a failover follows the failed attempt within this
CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"})  # the cache's RetryPolicy is the one policy
FIGURE = "regions-timeline.png"
TIMES = (  # the durations --quick shortens
    "DELAYS", "TTL", "REPLICA_TTL", "RETRY", "COLD_START", "READ_PAUSE", "DURATION", "OUTAGE_START", "OUTAGE_END",
    "BLOCKED", "SAME_FETCH_GAP",
)  # fmt: skip

REGION_COLORS = {PRIMARY: "#1f77b4", REPLICA: "#ff7f0e", "error": "#d62728"}
MARKERS = {WARM: "o", COLD: "^"}
OUTAGE_COLOR = "#adb5bd"
BACKOFF_COLOR = "#f28482"


@dataclass(frozen=True, slots=True)
class Fetch:
    """One fetch: the attempts one thread made in a row (primary retries or probe, then replicas)."""

    attempts: tuple[Attempt, ...]

    @property
    def process(self) -> str:
        return self.attempts[0].process

    @property
    def start(self) -> float:
        return self.attempts[0].start

    @property
    def end(self) -> float:
        return self.attempts[-1].end

    @property
    def ok(self) -> bool:
        return self.attempts[-1].ok

    @property
    def region(self) -> str:
        """The Region of the last attempt: the one that answered, when the fetch succeeded."""
        return self.attempts[-1].region

    @property
    def primary(self) -> list[Attempt]:
        return [attempt for attempt in self.attempts if attempt.region == PRIMARY]

    @property
    def background(self) -> bool:
        return self.attempts[0].background


@dataclass(slots=True)
class Run:
    """Everything one run recorded."""

    reads: list[Read]
    attempts: list[Attempt]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


def run() -> Run:
    """The scenario, in moto's in-process Secrets Manager."""
    with mock_aws():
        admin = boto3.client("secretsmanager", region_name=PRIMARY)
        admin.create_secret(Name=SECRET, SecretString="password")
        admin.replicate_secret_to_regions(SecretId=SECRET, AddReplicaRegions=[{"Region": REPLICA}])
        clients = {
            (process, region): boto3.client("secretsmanager", region_name=region, config=CONFIG)
            for process in READERS
            for region in DELAYS
        }
        for client in clients.values():
            client.get_secret_value(SecretId=SECRET)  # load botocore's models before the clock starts
        recording = Recording()
        for (process, region), client in clients.items():
            recording.backend(
                client, delay=lambda region=region: DELAYS[region], fault=outage(region), region=region, process=process
            )

        def start(process: str) -> tuple[SecretCache, list[threading.Thread], list[list[Read]]]:
            cache = SecretCache(
                clients[process, PRIMARY],
                ttl=TTL,
                refresh_ahead=REFRESH_AHEAD,
                ttl_jitter=0.0,
                retry=RETRY,
                replica_regions=[clients[process, REPLICA]],
                replica_ttl=REPLICA_TTL,
            )
            threads, outputs = start_readers(
                recording,
                lambda *_: cache.get_secret(SECRET).region,
                count=READERS[process],
                pause=READ_PAUSE,
                until=DURATION,
                process=process,
            )
            return cache, threads, outputs

        processes = {WARM: start(WARM)}
        time.sleep(max(0.0, COLD_START - recording.now()))
        processes[COLD] = start(COLD)
        result = Run(reads=[], attempts=[])
        for process, (cache, threads, outputs) in processes.items():
            result.reads += join_reads(threads, outputs, timeout=DURATION + 30.0)
            stats = cache.stats()
            cache.close()
            result.stats[process] = {
                "api_calls": stats.total_api_calls,
                "failovers": stats.failovers,
                "errors": stats.errors,
                "read_errors": stats.read_errors,
                "stale_served": stats.stale_served,
                "background_refreshes": stats.background_refreshes,
            }
    result.reads.sort(key=lambda read: read.at)
    result.attempts = recording.sorted_attempts()
    return result


def outage(region: str) -> Callable[[float], Exception | None]:
    """The fault of a Region's backend: the primary fails from OUTAGE_START to OUTAGE_END."""

    def fault(start: float) -> Exception | None:
        if region == PRIMARY and OUTAGE_START <= start < OUTAGE_END:
            return EndpointConnectionError(endpoint_url=f"https://secretsmanager.{region}.amazonaws.com")
        return None

    return fault


# -- analysis ----------------------------------------------------------------------------------


def group_fetches(attempts: list[Attempt]) -> list[Fetch]:
    """Group attempts into fetches: one thread's attempts, each soon after a failed one."""
    groups: list[list[Attempt]] = []
    open_by_thread: dict[tuple[str, str], list[Attempt]] = {}
    for attempt in attempts:
        key = (attempt.process, attempt.thread)
        group = open_by_thread.get(key)
        if group is not None and not group[-1].ok and attempt.start - group[-1].end < SAME_FETCH_GAP:
            group.append(attempt)
        else:
            group = [attempt]
            groups.append(group)
            open_by_thread[key] = group
    return sorted((Fetch(tuple(group)) for group in groups), key=lambda fetch: fetch.start)


def backoffs(fetches: list[Fetch], process: str) -> list[Span]:
    """The primary's backoff windows in one process: after its n-th failed fetch in a row, backoff_after(n)."""
    spans: list[Span] = []
    failures = 0
    for fetch in fetches:
        primary = fetch.primary
        if fetch.process != process or not primary:
            continue
        if primary[-1].ok:
            failures = 0
            continue
        failures += 1
        pause = RETRY.backoff_after(failures)
        spans.append(Span(primary[-1].end, primary[-1].end + pause, f"{pause:g} s"))
    return spans


def values_held(fetches: list[Fetch], process: str) -> list[Span]:
    """What the process's cache holds: each value fetched, until the next (fresh for its lifetime)."""
    successes = [fetch for fetch in fetches if fetch.process == process and fetch.ok]
    spans: list[Span] = []
    for index, fetch in enumerate(successes):
        lifetime = TTL if fetch.region == PRIMARY else min(TTL, REPLICA_TTL)
        until = successes[index + 1].end if index + 1 < len(successes) else DURATION
        spans.append(Span(fetch.end, min(until, fetch.end + lifetime), fetch.region))
        if fetch.end + lifetime < until:
            spans.append(Span(fetch.end + lifetime, until, "expired"))
    return spans


def describe(fetch: Fetch) -> str:
    """A fetch in a few words: where it started and which Regions it called."""
    parts: list[str] = []
    for attempt in fetch.attempts:
        name = "E" if attempt.region == PRIMARY else "W"
        parts.append(name + ("" if attempt.ok else "x"))
    kind = "bg" if fetch.background else "fg"
    return f"{fetch.start:.2f} {kind} {' '.join(parts)}"


def summarize(result: Run, fetches: list[Fetch]) -> list[str]:
    reads, attempts = result.reads, result.attempts
    lines: list[str] = []
    for process in READERS:
        mine = [read for read in reads if read.process == process]
        outcomes: dict[str, int] = {}
        for read in mine:
            label = read.value or read.error or "?"
            outcomes[label] = outcomes.get(label, 0) + 1
        calls = [attempt for attempt in attempts if attempt.process == process]
        per_region = ", ".join(
            f"{region} {sum(a.region == region for a in calls)} ({sum(a.region == region and not a.ok for a in calls)} "
            "failed)"
            for region in DELAYS
        )
        slowest = max(mine, key=lambda read: read.latency)
        blocked = [read for read in mine if read.latency > BLOCKED]
        stats = result.stats[process]
        lines += [
            f"{process} process: {len(mine):,} reads by {READERS[process]} thread(s) ("
            + ", ".join(f"{label} {count:,}" for label, count in sorted(outcomes.items()))
            + f"); API calls: {per_region}; stats(): "
            + ", ".join(f"{name}={value}" for name, value in stats.items()),
            f"  max read latency {slowest.latency * 1e3:.1f} ms (t={slowest.at:.2f} s); reads blocked > "
            f"{BLOCKED * 1e3:g} ms: {len(blocked)} ("
            + ", ".join(
                f"{len(run)} at t={run[0].at:.2f} s up to {max(read.latency for read in run) * 1e3:.0f} ms"
                for run in clusters(blocked)
            )
            + ")",
            "  fetches at t (s), E = us-east-1, W = us-west-2, x = failed: "
            + ", ".join(describe(fetch) for fetch in fetches if fetch.process == process),
        ]
    for process in READERS:
        mine = [read for read in reads if read.process == process]
        first_replica = min((read.at for read in mine if read.value == REPLICA), default=float("nan"))
        back = min((read.at for read in mine if read.value == PRIMARY and read.at > OUTAGE_END), default=float("nan"))
        lines.append(
            f"outage {OUTAGE_START:g}-{OUTAGE_END:g} s, {process} process: first replica value read at "
            f"t={first_replica:.2f} s, first primary value after recovery at t={back:.2f} s"
        )
    lines.append(f"read errors: {sum(read.error is not None for read in reads)}")
    return lines


# -- drawing -----------------------------------------------------------------------------------


def draw(result: Run, fetches: list[Fetch], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(14, 9), dpi=100, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 3))
    for axes in (top, bottom):
        axes.axvspan(OUTAGE_START, OUTAGE_END, color=OUTAGE_COLOR, alpha=0.25, lw=0, zorder=0)
        axes.axvline(COLD_START, color="#6f42c1", lw=1.2, ls=":", zorder=1)
        axes.grid(axis="x", color="#dee2e6", lw=0.6)
        axes.set_xlim(-0.2, DURATION + 0.1)
    draw_reads(top, result, fetches)
    draw_calls(bottom, fetches)
    bottom.set_xlabel("seconds since start")
    bottom.set_xticks(range(int(DURATION) + 1))
    figure.suptitle(
        f"secretcache replica failover: {PRIMARY} down {OUTAGE_START:g}-{OUTAGE_END:g} s, replica {REPLICA}\n"
        f"ttl={TTL:g} s, replica_ttl={REPLICA_TTL:g} s, refresh_ahead={REFRESH_AHEAD:g}, "
        f"retry attempts={RETRY.attempts}, failure_backoff={RETRY.failure_backoff:g} s → "
        f"{RETRY.max_failure_backoff:g} s; backend {DELAYS[PRIMARY] * 1e3:g} ms ({PRIMARY}), "
        f"{DELAYS[REPLICA] * 1e3:g} ms ({REPLICA})",
        fontsize=11,
    )
    legend(figure)
    save(figure, path)


def draw_reads(axes: Axes, result: Run, fetches: list[Fetch]) -> None:
    for process, marker in MARKERS.items():
        for label, color in REGION_COLORS.items():
            chosen = [read for read in result.reads if read.process == process and (read.value or "error") == label]
            for slow in (False, True):
                shown = [read for read in chosen if (read.latency > BLOCKED) == slow]
                axes.scatter(
                    [read.at for read in shown],
                    [read.latency * 1e3 for read in shown],
                    s=(45 if slow else 7) * (1.3 if process == COLD else 1),
                    color=color,
                    marker=marker,
                    alpha=0.9 if slow else 0.5,
                    lw=0.6 if slow else 0,
                    edgecolors="black" if slow else "none",
                    zorder=4 if slow else 3,
                )
    for run in clusters([read for read in result.reads if read.latency > BLOCKED]):
        worst = max(read.latency for read in run) * 1e3
        text = f"{len(run)} reads\n{worst:.0f} ms" if len(run) > 1 else f"{worst:.0f} ms"
        axes.annotate(text, (run[-1].at, worst), xytext=(7, 0), textcoords="offset points", fontsize=8, va="center")
    axes.axhline(BLOCKED * 1e3, color="#495057", lw=0.8, ls=":", zorder=2)
    axes.text(-0.15, BLOCKED * 1e3 * 1.15, f"{BLOCKED * 1e3:g} ms", va="bottom", fontsize=8, color="#495057")
    axes.set_yscale("log")
    axes.set_ylim(5e-4, 1e5)
    axes.set_ylabel("read latency (ms, log scale)")
    for at, height, text, *align in notes(result, fetches):
        axes.annotate(
            text,
            (at, height),
            xytext=(-3 if align else 3, 0),
            ha=align[0] if align else "left",
            multialignment="left",
            textcoords="offset points",
            fontsize=8.5,
            va="bottom",
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#adb5bd", "alpha": 0.95},
            zorder=6,
        )


def notes(result: Run, fetches: list[Fetch]) -> list[tuple[float, float, str] | tuple[float, float, str, str]]:
    """Labelled events on the latency panel, at two heights (left-aligned unless said)."""
    high, low = 3000.0, 8.0  # boxes above the waits, and between the 5 ms line and the waits
    warm = [fetch for fetch in fetches if fetch.process == WARM]
    events: list[tuple[float, float, str] | tuple[float, float, str, str]] = [
        (0.0, high, f"cold start:\nreaders wait for\n1 fetch ({PRIMARY})")
    ]
    failed = [fetch for fetch in warm if fetch.primary and not fetch.primary[-1].ok]
    if failed:
        first = failed[0]
        kind = "refresh-ahead" if first.background else "a read"
        events.append(
            (
                first.start,
                low,
                f"outage: {kind} pays\n{len(first.primary)} {PRIMARY} attempts,\nthen reads {REPLICA}",
            )
        )
    direct = [fetch for fetch in warm if fetch.ok and not fetch.primary and fetch.start > OUTAGE_START]
    if direct:
        events.append(
            (direct[0].start, high, f"in backoff: straight\nto {REPLICA}; replica\nvalue lives {REPLICA_TTL:g} s")
        )
    probes = [fetch for fetch in failed[1:] if len(fetch.primary) == 1]
    if probes:
        events.append((probes[0].start, low, f"backoff over: 1 probe\nof {PRIMARY} fails,\nthen {REPLICA}"))
    cold = [read for read in result.reads if read.process == COLD]
    if cold:
        events.append(
            (
                COLD_START,
                high,
                f"cold process starts\nin the outage: first\nread {cold[0].latency * 1e3:.0f} ms, gets {cold[0].value}",
            )
        )
    recovered = [fetch for fetch in warm if fetch.primary and fetch.primary[-1].ok and fetch.start > OUTAGE_END]
    if recovered:
        events.append((recovered[0].start, low, f"probe answers:\nvalues from\n{PRIMARY} again"))
    late = [fetch for fetch in fetches if fetch.process == COLD and fetch.ok and fetch.region == PRIMARY]
    spans = backoffs(fetches, COLD)
    if late and late[0].start > OUTAGE_END and spans:
        events.append(
            (
                late[0].start,
                high,
                f"cold process: backoff to\n{spans[-1].end:.1f} s, so {REPLICA}\n"
                f"until its probe at {late[0].start:.1f} s",
                "right",
            )
        )
    return events


def draw_calls(axes: Axes, fetches: list[Fetch]) -> None:
    rows: dict[str, float] = {}
    for base, process in ((4.0, WARM), (0.0, COLD)):
        rows[f"{process}: {PRIMARY}\ncalls"] = base + 3
        rows[f"{process}: {REPLICA}\ncalls"] = base + 2
        rows[f"{process}: {PRIMARY}\nbackoff"] = base + 1
        rows[f"{process}: value held"] = base
        for span in backoffs(fetches, process):
            axes.broken_barh([(span.start, span.end - span.start)], (base + 0.75, 0.5), color=BACKOFF_COLOR, lw=0)
            axes.text((span.start + span.end) / 2, base + 1, span.label, ha="center", va="center", fontsize=8)
        for span in values_held(fetches, process):
            color = REGION_COLORS.get(span.label, "#e9ecef")
            axes.broken_barh(
                [(span.start, span.end - span.start)], (base - 0.3, 0.6), color=color, alpha=0.6, ec="white", lw=1.5
            )
        for fetch in fetches:
            if fetch.process != process:
                continue
            for attempt in fetch.attempts:
                row = base + (3 if attempt.region == PRIMARY else 2)
                axes.plot([attempt.start, attempt.end], [row, row], color="#495057", lw=2, zorder=3)
                color = "#2ca02c" if attempt.ok else "#d62728"
                axes.plot(
                    attempt.start,
                    row,
                    marker="o" if attempt.ok else "X",
                    ms=9,
                    color=color,
                    mfc="white" if attempt.background else color,
                    mec=color if attempt.background else "black",
                    mew=1.5 if attempt.background else 0.5,
                    ls="",
                    zorder=4,
                )
    axes.axhline(3.5, color="#495057", lw=0.8)
    axes.set_yticks(list(rows.values()), list(rows), fontsize=8.5)
    axes.set_ylim(-0.6, 7.6)
    axes.set_ylabel("API calls per Region")


def legend(figure: Figure) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def dot(
        color: str, label: str, *, size: float = 6, edge: str = "none", marker: str = "o", face: str = ""
    ) -> Line2D:
        return Line2D([], [], marker=marker, ms=size, color=color, mec=edge, mfc=face or color, ls="", label=label)

    handles = [
        dot(REGION_COLORS[PRIMARY], f"read got a value from {PRIMARY} (primary)"),
        dot(REGION_COLORS[REPLICA], f"read got a value from {REPLICA} (replica)"),
        dot(REGION_COLORS["error"], "read raised"),
        dot("white", f"read took > {BLOCKED * 1e3:g} ms (waited for a fetch)", size=8, edge="black"),
        dot("#6c757d", "warm process (from t = 0, 3 readers)", marker=MARKERS[WARM]),
        dot("#6c757d", f"cold process (from t = {COLD_START:g} s, 1 reader)", marker=MARKERS[COLD]),
        Line2D([], [], color="#6f42c1", ls=":", label="cold process starts"),
        Patch(color=OUTAGE_COLOR, alpha=0.5, label=f"{PRIMARY} down (EndpointConnectionError)"),
        dot("#2ca02c", "API attempt ok", size=8, edge="black"),
        dot("#d62728", "API attempt failed", size=8, edge="black", marker="X"),
        dot("#2ca02c", "hollow: background (refresh-ahead) attempt", size=8, edge="#2ca02c", face="white"),
        Patch(color=BACKOFF_COLOR, label=f"{PRIMARY} backoff: fetches go straight to {REPLICA}"),
        Patch(color=REGION_COLORS[PRIMARY], alpha=0.6, label=f"value held from {PRIMARY} (fresh {TTL:g} s)"),
        Patch(color=REGION_COLORS[REPLICA], alpha=0.6, label=f"value held from {REPLICA} (fresh {REPLICA_TTL:g} s)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8.5, frameon=False)


def main() -> None:
    args = options(__doc__, figure=True)
    if args.quick:  # the same scenario on a clock four times as fast
        shorten(globals(), TIMES)
    logging.basicConfig(format="log from %(threadName)s: %(levelname)s %(message)s", level=logging.INFO)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    result = run()
    fetches = group_fetches(result.attempts)
    for line in summarize(result, fetches):
        print(line)
    draw(result, fetches, args.out / FIGURE)


if __name__ == "__main__":
    main()
