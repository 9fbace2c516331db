"""A timeline of refresh-ahead, stale serving and failure backoff, drawn from a real run.

Run:  pip install -e '.[bench]' matplotlib && python benchmarks/timeline.py

One secret in moto's in-process Secrets Manager (no network) behind a 50 ms backend: a botocore
``before-call`` hook sleeps 50 ms in every ``GetSecretValue`` and, during a simulated outage,
then raises ``EndpointConnectionError``. Four reader threads read the secret every 10 ms for
14 s with the real clock; the secret is rotated at t = 3 s and the backend is down from t = 6 s
to t = 11 s. Every read (start, latency, value or error) and every API attempt is recorded;
the script prints a short summary and draws ``docs/img/timeline.png``.

The deadlines drawn (refresh-ahead points, TTL expiry, stale limit, backoff windows) are
computed from the recorded API attempts with the cache's rules (``ttl_jitter=0``), not read
from the cache's internals; the reads show that the cache followed them. Garbage-collector
pauses longer than 5 ms are recorded too, so a stray slow read can be told apart from the
cache making a reader wait.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from _recording import Attempt, Read, Recording, Span, clusters, join_reads, options, save, shorten, start_readers
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from secretcache import RetryPolicy, SecretCache

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SECRET = "bench/timeline"  # noqa: S105 - a secret name
VALUES = {"password-v1": "v1", "password-v2": "v2"}
TTL = 2.0
REFRESH_AHEAD = 0.8
MAX_STALE = 3.0
RETRY = RetryPolicy(
    attempts=2, initial_delay=0.05, max_delay=0.1, deadline=2.0, failure_backoff=0.5, max_failure_backoff=1.0
)
BACKEND_DELAY = 0.05
READERS = 4
READ_PAUSE = 0.01
DURATION = 14.0
ROTATE_AT = 3.0
OUTAGE_START = 6.0
OUTAGE_END = 11.0
BLOCKED = 0.005
SAME_FETCH_GAP = 0.25  # a retry follows its failed attempt within max_delay; backoffs are >= 0.5 s
ENDPOINT = "https://secretsmanager.us-east-1.amazonaws.com"
FIGURE = "timeline.png"
TIMES = (  # the durations --quick shortens
    "TTL", "MAX_STALE", "RETRY", "BACKEND_DELAY", "READ_PAUSE", "DURATION", "ROTATE_AT", "OUTAGE_START", "OUTAGE_END",
    "BLOCKED", "SAME_FETCH_GAP",
)  # fmt: skip

READ_COLORS = {"v1": "#1f77b4", "v2": "#2ca02c", "error": "#d62728"}
STATE_COLORS = {"fresh": "#b7e4c7", "refresh due": "#40916c", "stale": "#f4a261", "unavailable": "#e63946"}
OUTAGE_COLOR = "#adb5bd"
AHEAD_COLOR = "#1f77b4"
ROTATION_COLOR = "#6f42c1"
BACKOFF_COLOR = "#f28482"


@dataclass(frozen=True, slots=True)
class Fetch:
    """Consecutive attempts of one kind (foreground or background): one fetch with its retries."""

    attempts: tuple[Attempt, ...]

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
    def background(self) -> bool:
        return self.attempts[0].background


@dataclass(frozen=True, slots=True)
class Run:
    """Everything one run recorded."""

    reads: list[Read]
    attempts: list[Attempt]
    gc_pauses: list[Span]
    rotated_at: float
    stats: dict[str, int]


class GcPauses:
    """A ``gc.callbacks`` hook keeping every collection longer than BLOCKED (no thread runs meanwhile)."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.pauses: list[Span] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic() - self.origin
        if phase == "start":
            self._started = now
        elif now - self._started > BLOCKED:
            label = f"gen-{info['generation']} GC, {info['collected']:,} objects freed"
            self.pauses.append(Span(self._started, now, label))


def rotate(admin: Any, old_version: str) -> None:
    """Rotate like a rotation Lambda: store v2 as AWSPENDING, then move AWSCURRENT to it."""
    pending = admin.put_secret_value(SecretId=SECRET, SecretString="password-v2", VersionStages=["AWSPENDING"])
    admin.update_secret_version_stage(
        SecretId=SECRET,
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending["VersionId"],
        RemoveFromVersionId=old_version,
    )


def run() -> Run:
    """The scenario, in moto's in-process Secrets Manager."""
    with mock_aws():
        admin = boto3.client("secretsmanager", region_name="us-east-1")
        old_version = admin.create_secret(Name=SECRET, SecretString="password-v1")["VersionId"]
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.get_secret_value(SecretId=SECRET)  # load botocore's models before the clock starts
        cache = SecretCache(
            client, ttl=TTL, refresh_ahead=REFRESH_AHEAD, max_stale=MAX_STALE, ttl_jitter=0.0, retry=RETRY
        )
        gc.collect()
        recording = Recording()

        def outage(start: float) -> Exception | None:
            down = OUTAGE_START <= start < OUTAGE_END
            return EndpointConnectionError(endpoint_url=ENDPOINT) if down else None

        recording.backend(client, delay=lambda: BACKEND_DELAY, fault=outage, operation="GetSecretValue")
        pauses = GcPauses(recording.origin)
        gc.callbacks.append(pauses)
        try:
            threads, outputs = start_readers(
                recording,
                lambda *_: VALUES.get(cache.get_secret_string(SECRET), "other"),
                count=READERS,
                pause=READ_PAUSE,
                until=DURATION,
            )
            time.sleep(max(0.0, ROTATE_AT - recording.now()))
            rotated_at = recording.now()
            rotate(admin, old_version)
            reads = join_reads(threads, outputs, timeout=DURATION + 5.0)
        finally:
            gc.callbacks.remove(pauses)
        stats = cache.stats()
        cache.close()
    return Run(
        reads=reads,
        attempts=recording.sorted_attempts(),
        gc_pauses=pauses.pauses,
        rotated_at=rotated_at,
        stats={
            "api_calls": stats.total_api_calls,
            "background_refreshes": stats.background_refreshes,
            "errors": stats.errors,
            "stale_served": stats.stale_served,
        },
    )


# -- analysis ----------------------------------------------------------------------------------


def group_fetches(attempts: list[Attempt]) -> list[Fetch]:
    """Group attempts into fetches: a retry follows a failed attempt of the same kind quickly."""
    groups: list[list[Attempt]] = []
    for attempt in attempts:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and not last.ok
            and last.background == attempt.background
            and attempt.start - last.end < SAME_FETCH_GAP
            and len(groups[-1]) < RETRY.attempts
        ):
            groups[-1].append(attempt)
        else:
            groups.append([attempt])
    return [Fetch(tuple(group)) for group in groups]


def value_states(fetches: list[Fetch]) -> list[Span]:
    """What the cache holds over time, from the deadlines each successful fetch sets."""
    successes = [fetch.end for fetch in fetches if fetch.ok]
    spans: list[Span] = []
    for index, at in enumerate(successes):
        until = successes[index + 1] if index + 1 < len(successes) else DURATION
        bounds = (
            (at, at + TTL * REFRESH_AHEAD, "fresh"),
            (at + TTL * REFRESH_AHEAD, at + TTL, "refresh due"),
            (at + TTL, at + TTL + MAX_STALE, "stale"),
            (at + TTL + MAX_STALE, until, "unavailable"),
        )
        spans.extend(Span(start, min(end, until), label) for start, end, label in bounds if start < until)
    return spans


def backoffs(fetches: list[Fetch]) -> list[Span]:
    """Failure backoff windows: after the n-th consecutive failed fetch, no fetch for backoff_after(n)."""
    spans: list[Span] = []
    failures = 0
    for fetch in fetches:
        if fetch.ok:
            failures = 0
            continue
        failures += 1
        pause = RETRY.backoff_after(failures)
        spans.append(Span(fetch.end, fetch.end + pause, f"{pause:g} s"))
    return spans


def summarize(result: Run, fetches: list[Fetch]) -> list[str]:
    reads, attempts = result.reads, result.attempts
    cold_end = next(fetch.end for fetch in fetches if fetch.ok)
    slowest = max((read for read in reads if read.at >= cold_end), key=lambda read: read.latency)
    cold = max(read.latency for read in reads if read.at < cold_end)
    blocked = [read for read in reads if read.latency > BLOCKED]
    outcomes: dict[str, int] = {}
    for read in reads:
        label = read.value or read.error or "?"
        outcomes[label] = outcomes.get(label, 0) + 1
    first_v2 = min((read.at for read in reads if read.value == "v2"), default=float("nan"))
    held = [fetch.end for fetch in fetches if fetch.ok and fetch.end < OUTAGE_START]
    expiry = held[-1] + TTL if held else float("nan")
    stale = [read.at for read in reads if read.value and expiry <= read.at < expiry + MAX_STALE]
    errors = [read.at for read in reads if read.error]
    failed = sum(not attempt.ok for attempt in attempts)
    stats = result.stats
    lines = [
        f"reads: {len(reads):,} by {READERS} threads over {DURATION:g} s ("
        + ", ".join(f"{label} {count:,}" for label, count in sorted(outcomes.items()))
        + ")",
        f"max read latency outside cold start: {slowest.latency * 1e3:.1f} ms (read at t={slowest.at:.2f} s); "
        f"cold start: {cold * 1e3:.1f} ms",
        f"reads blocked > {BLOCKED * 1e3:g} ms: {len(blocked)} ("
        + ", ".join(
            f"{len(run)} at t={run[0].at:.2f} s taking up to {max(read.latency for read in run) * 1e3:.0f} ms"
            for run in clusters(blocked)
        )
        + ")",
        f"API calls: {len(attempts)} GetSecretValue attempts ({len(attempts) - failed} ok, {failed} failed) "
        f"in {len(fetches)} fetches ({sum(fetch.background for fetch in fetches)} in the background); "
        f"stats(): api_calls={stats['api_calls']}, background_refreshes={stats['background_refreshes']}, "
        f"errors={stats['errors']}, stale_served={stats['stale_served']:,}",
        f"rotation at t={result.rotated_at:.2f} s, first v2 read at t={first_v2:.2f} s; "
        f"stale value served: {len(stale):,} reads from t={min(stale, default=float('nan')):.2f} s "
        f"to t={max(stale, default=float('nan')):.2f} s; SecretUnavailableError "
        f"from t={min(errors, default=float('nan')):.2f} s to t={max(errors, default=float('nan')):.2f} s",
    ]
    lines.append(
        "fetches at t (s): "
        + ", ".join(
            f"{fetch.start:.2f} {'bg' if fetch.background else 'fg'} "
            + ("ok" if fetch.ok else f"failed x{len(fetch.attempts)}")
            for fetch in fetches
        )
    )
    if result.gc_pauses:
        lines.append(
            f"GC pauses > {BLOCKED * 1e3:g} ms: "
            + ", ".join(f"{(p.end - p.start) * 1e3:.0f} ms at t={p.start:.2f} s ({p.label})" for p in result.gc_pauses)
        )
    return lines


# -- drawing -----------------------------------------------------------------------------------


def draw(result: Run, fetches: list[Fetch], path: Path) -> None:
    from matplotlib.figure import Figure  # imported here: its objects would lengthen the run's GC pauses

    figure = Figure(figsize=(14, 8), dpi=100, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    successes = [fetch for fetch in fetches if fetch.ok]
    for axes in (top, bottom):
        axes.axvspan(OUTAGE_START, OUTAGE_END, color=OUTAGE_COLOR, alpha=0.25, lw=0, zorder=0)
        axes.axvline(result.rotated_at, color=ROTATION_COLOR, lw=1.5, zorder=1)
        for fetch in successes:
            axes.axvline(fetch.end + TTL * REFRESH_AHEAD, color=AHEAD_COLOR, lw=1, ls="--", alpha=0.7, zorder=1)
        axes.grid(axis="x", color="#dee2e6", lw=0.6)
        axes.set_xlim(-0.2, DURATION + 0.1)
    draw_reads(top, result, fetches)
    draw_fetches(bottom, fetches)
    bottom.set_xlabel("seconds since start")
    bottom.set_xticks(range(int(DURATION) + 1))
    figure.suptitle(
        f"secretcache timeline: ttl={TTL:g} s, refresh_ahead={REFRESH_AHEAD:g}, max_stale={MAX_STALE:g} s, "
        f"failure_backoff={RETRY.failure_backoff:g} s → max_failure_backoff={RETRY.max_failure_backoff:g} s; "
        f"{READERS} readers every {READ_PAUSE * 1e3:g} ms, {BACKEND_DELAY * 1e3:g} ms backend",
        fontsize=12,
    )
    legend(figure, bool(result.gc_pauses))
    save(figure, path)


def draw_reads(axes: Axes, result: Run, fetches: list[Fetch]) -> None:
    for pause in result.gc_pauses:
        axes.axvspan(pause.start, pause.end, color="black", alpha=0.35, lw=0, zorder=1)
    for label, color in READ_COLORS.items():
        chosen = [read for read in result.reads if (read.value or "error") == label]
        for slow in (False, True):
            shown = [read for read in chosen if (read.latency > BLOCKED) == slow]
            axes.scatter(
                [read.at for read in shown],
                [read.latency * 1e3 for read in shown],
                s=40 if slow else 5,
                color=color,
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
    for at, height, text in notes(result, fetches):
        axes.annotate(
            text,
            (at, height),
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=8.5,
            va="bottom",
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#adb5bd", "alpha": 0.95},
            zorder=6,
        )
    held = [fetch.end for fetch in fetches if fetch.ok and fetch.end < OUTAGE_START]
    if held:
        axes.axvline(held[-1] + TTL, color="#e76f51", lw=1.5, ls="-.", zorder=2)
        axes.axvline(held[-1] + TTL + MAX_STALE, color="#d62728", lw=1.5, ls="-.", zorder=2)


def notes(result: Run, fetches: list[Fetch]) -> list[tuple[float, float, str]]:
    """Labelled events on the latency panel, alternating between two heights."""
    high, low = 6000.0, 400.0
    events: list[tuple[float, float, str]] = [(0.0, high, "cold start:\n4 readers wait\nfor 1 fetch")]
    successes = [fetch for fetch in fetches if fetch.ok]
    if len(successes) > 1:
        events.append(
            (successes[0].end + TTL * REFRESH_AHEAD, low, "refresh-ahead:\n1 background\nfetch, no read waits")
        )
    events.append((result.rotated_at, high, "rotation:\nAWSCURRENT → v2"))
    failures = [fetch for fetch in fetches if not fetch.ok]
    held = [fetch.end for fetch in successes if fetch.end < OUTAGE_START]
    if failures and held:
        expiry = held[-1] + TTL
        events += [
            (failures[0].start, high, f"refresh fails:\nbackoff {RETRY.failure_backoff:g} s,\nvalue still fresh"),
            (expiry, low, "TTL expiry: stale value\nserved only while\nfetching fails"),
            (expiry + MAX_STALE, high, "ttl + max_stale:\nreads raise\nSecretUnavailableError"),
        ]
        foreground = [fetch for fetch in failures if not fetch.background]
        stale = [fetch for fetch in foreground if expiry <= fetch.start < expiry + MAX_STALE]
        if stale:
            at = stale[1 if len(stale) > 1 else 0].start
            events.append((at, high, "past the TTL: readers\nwait for 1 failed\nattempt, get v2"))
        gone = [fetch for fetch in foreground if fetch.start >= expiry + MAX_STALE]
        if gone:
            events.append((gone[0].start, low, "backoff over, no value:\nreaders wait for a\nfetch, which fails"))
    recovered = [fetch for fetch in successes if fetch.start > OUTAGE_END]
    if recovered:
        events.append((recovered[0].start, high, "recovery: readers\nwait for 1 fetch"))
    return events


def draw_fetches(axes: Axes, fetches: list[Fetch]) -> None:
    rows = {"foreground\nattempts": 0, "background\nattempts": 1, "failure\nbackoff": 2, "cached\nvalue": 3}
    for state in value_states(fetches):
        axes.broken_barh(
            [(state.start, state.end - state.start)], (2.65, 0.7), color=STATE_COLORS[state.label], lw=0, zorder=2
        )
    for span in backoffs(fetches):
        axes.broken_barh([(span.start, span.end - span.start)], (1.7, 0.6), color=BACKOFF_COLOR, lw=0, zorder=2)
        axes.text((span.start + span.end) / 2, 2.0, span.label, ha="center", va="center", fontsize=8.5, zorder=3)
    for fetch in fetches:
        row = 1 if fetch.background else 0
        for attempt in fetch.attempts:
            axes.plot([attempt.start, attempt.end], [row, row], color="#495057", lw=2, zorder=3)
            axes.plot(
                attempt.start,
                row,
                marker="o" if attempt.ok else "X",
                ms=9,
                color="#2ca02c" if attempt.ok else "#d62728",
                mec="black",
                mew=0.5,
                ls="",
                zorder=4,
            )
    axes.set_yticks(list(rows.values()), list(rows))
    axes.set_ylim(-0.5, 3.5)
    axes.set_ylabel("GetSecretValue")


def legend(figure: Figure, gc_pauses: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def dot(color: str, label: str, *, size: float = 6, edge: str = "none", marker: str = "o") -> Line2D:
        return Line2D([], [], marker=marker, ms=size, color=color, mec=edge, ls="", label=label)

    handles = [
        dot(READ_COLORS["v1"], "read returned v1"),
        dot(READ_COLORS["v2"], "read returned v2"),
        dot(READ_COLORS["error"], "read raised SecretUnavailableError"),
        dot("white", f"read took > {BLOCKED * 1e3:g} ms (blocked)", size=8, edge="black"),
        Line2D(
            [], [], color=AHEAD_COLOR, ls="--", label=f"refresh-ahead point: {REFRESH_AHEAD:g} of the ttl after a fetch"
        ),
        Line2D([], [], color="#e76f51", ls="-.", label="TTL expiry of the last value before the outage"),
        Line2D([], [], color="#d62728", ls="-.", label="its TTL + max_stale: stale limit"),
        Line2D([], [], color=ROTATION_COLOR, label="rotation (AWSCURRENT moved to v2)"),
        Patch(color=OUTAGE_COLOR, alpha=0.5, label="backend down (EndpointConnectionError)"),
        dot("#2ca02c", "API attempt ok", size=8, edge="black"),
        dot("#d62728", "API attempt failed", size=8, edge="black", marker="X"),
        Patch(color=BACKOFF_COLOR, label="failure backoff: no API call"),
        *(Patch(color=color, label=f"cached value: {label}") for label, color in STATE_COLORS.items()),
    ]
    if gc_pauses:
        handles.append(Patch(color="black", alpha=0.35, label=f"Python GC pause > {BLOCKED * 1e3:g} ms"))
    figure.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8.5, frameon=False)


def main() -> None:
    args = options(__doc__, figure=True)
    if args.quick:  # the same scenario on a clock four times as fast
        shorten(globals(), TIMES)
    logging.basicConfig(format="log from %(threadName)s: %(levelname)s %(message)s", level=logging.WARNING)
    result = run()
    fetches = group_fetches(result.attempts)
    for line in summarize(result, fetches):
        print(line)
    draw(result, fetches, args.out / FIGURE)


if __name__ == "__main__":
    main()
