"""Sixteen threads of random operations on one cache: no hang, only values written are read, counters add up.

Each secret is put dozens of times a second while the cache's clock runs far ahead of the real
one, so a read may be overtaken by a newer version served meanwhile during each of its fetches,
and fail as docs/concepts.md ("Monotonic reads") says; that is the only failure allowed.

The moto backend is serialised per call (``tests/threads.py``); every worker runs on a daemon
thread, so a hang fails the test instead of stalling the suite. ``SECRETCACHE_HEAVY=1`` (or the
nightly profile) runs more iterations, the compat profile (CI's other Pythons) a third of them.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, wait
from typing import Any

import pytest

from secretcache import SecretUnavailableError, SecretValue
from tests.conftest import FAST_RETRY, WATCHDOG, Calls, FakeClock, wait_until
from tests.test_cache import make_cache
from tests.test_model import HEAVY, LIGHT
from tests.threads import serialize_backend, start

THREADS = 16
ITERATIONS = 1000 if HEAVY else 100 if LIGHT else 300
OP_BOUND = 20.0  # seconds any one operation may take before the run is declared hung
STRESS_TTL = 5.0
STRESS_MAX_STALE = 5.0
STRESS_MAX_SIZE = 12
STRESS_SECRETS = ("alpha", "beta/db", "gamma", "delta")
OPERATIONS = {  # name: weight
    "read": 50,
    "read_previous": 10,
    "read_version": 6,
    "force": 8,
    "invalidate": 7,
    "put": 9,
    "put_invalidate_read": 5,
    "stats": 5,
}
OVERTAKEN = "older than a version this cache has already served"
"""A read whose three fetches were each overtaken by a newer version served meanwhile fails with this."""


class Backend:
    """The secrets of the stress test: every value ever written, and the order of puts."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.lock = threading.Lock()
        self.put_locks = {name: threading.Lock() for name in STRESS_SECRETS}
        self.written: dict[str, set[str]] = {name: set() for name in STRESS_SECRETS}
        self.order: dict[str, dict[str, int]] = {name: {} for name in STRESS_SECRETS}  # value -> put number
        self.versions: dict[str, list[tuple[str, str]]] = {name: [] for name in STRESS_SECRETS}
        self.spellings: dict[str, list[str]] = {}
        self.count = 0
        for name in STRESS_SECRETS:
            arn = admin.create_secret(Name=name, SecretString=self.new_value(name))["ARN"]
            self.spellings[name] = [name, arn, arn[:-7]]
            self.put(name)  # so AWSPREVIOUS exists from the start

    def new_value(self, name: str) -> str:
        with self.lock:
            self.count += 1
            value = f"{name}#{self.count}"
            self.written[name].add(value)  # before the put: a reader may see it at once
        return value

    def put(self, name: str) -> int:
        """Put a new AWSCURRENT value; return its put number (puts of one secret are ordered)."""
        value = self.new_value(name)
        with self.put_locks[name]:
            version_id = self.admin.put_secret_value(SecretId=name, SecretString=value)["VersionId"]
            with self.lock:
                number = self.order[name][value] = len(self.order[name])
                self.versions[name].append((version_id, value))
        return number

    def check(self, name: str, value: SecretValue | str) -> str:
        """Fail unless ``value`` is one the backend held for ``name``; return its string."""
        if isinstance(value, SecretValue):
            assert value.name == name
            assert value.arn == self.spellings[name][1]
            value = value.secret_string or ""
        with self.lock:
            assert value in self.written[name], f"{name} read {value!r}, never written"
        return value

    def number(self, name: str, value: str) -> float:
        with self.lock:  # not numbered yet: its put is still running, so it is the newest
            return self.order[name].get(value, float("inf"))

    def current(self, name: str) -> str:
        value: str = self.admin.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]
        return value


@pytest.mark.unmeasured  # randomized interleavings: run unmeasured (CONTRIBUTING.md, "Coverage")
@pytest.mark.parametrize("refresh_ahead", [None, 0.5], ids=["strict-ttl", "refresh-ahead"])
def test_sixteen_threads_of_random_operations(
    client: Any,
    admin: Any,
    calls: Calls,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    refresh_ahead: float | None,
) -> None:
    """16 threads of random operations never hang, read only values written, and keep the counters consistent."""
    caplog.set_level(logging.WARNING, logger="secretcache")
    lock = threading.Lock()
    serialize_backend(lock, client, admin)
    backend = Backend(admin)
    threads_before = set(threading.enumerate())
    cache = make_cache(
        client,
        clock,
        ttl=STRESS_TTL,
        ttl_jitter=0.2,
        refresh_ahead=refresh_ahead,
        max_stale=STRESS_MAX_STALE,
        max_size=STRESS_MAX_SIZE,  # fewer than the keys in use: eviction runs too
        retry=FAST_RETRY,
    )
    running: dict[int, tuple[float, str]] = {}
    running_lock = threading.Lock()
    stop = threading.Event()
    barrier = threading.Barrier(THREADS)

    def operate(rng: random.Random, operation: str, tally: Counter[str]) -> None:
        name = rng.choice(STRESS_SECRETS)
        secret_id = rng.choice(backend.spellings[name])
        if operation in ("read", "read_previous"):
            stage = "AWSPREVIOUS" if operation == "read_previous" else rng.choice([None, "AWSCURRENT"])
            tally["reads"] += 1
            if rng.random() < 0.5:
                backend.check(name, cache.get_secret_string(secret_id, version_stage=stage))
            else:
                value = cache.get_secret(secret_id, version_stage=stage)
                assert (stage or "AWSCURRENT") in value.version_stages
                backend.check(name, value)
            tally["reads_ok"] += 1
        elif operation == "read_version":
            with backend.lock:
                version_id, expected = rng.choice(backend.versions[name])
            tally["reads"] += 1
            value = cache.get_secret(secret_id, version_id=version_id)
            assert (value.version_id, value.secret_string) == (version_id, expected)
            tally["reads_ok"] += 1
        elif operation == "force":
            tally["reads"] += 1
            tally["forced"] += 1
            if rng.random() < 0.5:
                backend.check(name, cache.refresh(secret_id))
            else:
                backend.check(name, cache.get_secret_string(secret_id, force_refresh=True))
            tally["reads_ok"] += 1
        elif operation == "invalidate":
            cache.invalidate(None if rng.random() < 0.2 else secret_id)
        elif operation == "put":
            backend.put(name)
        elif operation == "put_invalidate_read":
            # Read-your-writes through invalidation: nothing fetched before invalidate() is served.
            mine = backend.put(name)
            cache.invalidate(secret_id)
            tally["reads"] += 1
            read = backend.check(name, cache.get_secret_string(rng.choice(backend.spellings[name])))
            assert backend.number(name, read) >= mine, f"{name}: read {read!r} older than own put #{mine}"
            tally["reads_ok"] += 1
        else:
            stats = cache.stats()
            assert stats.size <= STRESS_MAX_SIZE
            assert stats.api_calls.get("BatchGetSecretValue", 0) == 0

    def worker(index: int) -> Counter[str]:
        rng = random.Random(index)  # noqa: S311 - reproducible operation mix, not a secret
        tally: Counter[str] = Counter()
        names, weights = list(OPERATIONS), list(OPERATIONS.values())
        barrier.wait(WATCHDOG)
        for _ in range(ITERATIONS):
            if stop.is_set():
                break
            operation = rng.choices(names, weights)[0]
            with running_lock:
                running[index] = (time.monotonic(), operation)
            try:
                operate(rng, operation, tally)
            except SecretUnavailableError as err:  # the only failure allowed (module docstring)
                if OVERTAKEN not in str(err) or operation == "read_version":
                    raise
                tally["overtaken"] += 1
            finally:
                with running_lock:
                    del running[index]
        return tally

    futures = [start(functools.partial(worker, index), f"stress-{index}") for index in range(THREADS)]
    began = time.monotonic()
    try:
        while not all(future.done() for future in futures):
            done, _ = wait(futures, timeout=0.005, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                break
            clock.advance(0.5)  # only this thread moves the clock
            now = time.monotonic()
            with running_lock:
                hung = {index: op for index, (since, op) in running.items() if now - since > OP_BOUND}
            assert not hung, f"operations running longer than {OP_BOUND} s (deadlock?): {hung}"
            assert now - began < 10 * OP_BOUND, "the stress run does not finish"
    finally:
        stop.set()  # on failure, the other workers stop after their current operation
    tallies = [future.result(timeout=WATCHDOG) for future in futures]  # re-raises a worker's failure
    total = sum(tallies, Counter())
    stats = cache.stats()  # before close(): reads are over, so hits/misses/stale_served are final

    # Quiescent now: after invalidate() every spelling reads the backend's current value.
    cache.invalidate()
    for name in STRESS_SECRETS:
        for secret_id in backend.spellings[name]:
            assert cache.get_secret_string(secret_id) == backend.current(name)
    cache.close()
    refreshers = [thread for thread in set(threading.enumerate()) - threads_before if "refresh" in thread.name]
    wait_until(lambda: not any(thread.is_alive() for thread in refreshers))  # queued refreshes ran
    final = cache.stats()

    assert total["reads_ok"] + total["overtaken"] == total["reads"]
    assert total["reads_ok"] > THREADS * ITERATIONS // 2
    gsv = calls["GetSecretValue"]
    assert final.api_calls["GetSecretValue"] == gsv, "the cache and botocore disagree on GetSecretValue calls"
    assert gsv <= final.misses + final.background_refreshes  # each fetch is a waiting reader's or a refresh
    assert stats.misses >= total["forced"]  # every forced read waits for a fetch
    # The backend always answers: a fetch fails only when each of its answers was overtaken (every
    # failure logs a warning naming its error, the first of a key's episode at least).
    failures = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert all(OVERTAKEN in message for message in failures), failures
    assert (final.errors > 0) == bool(failures)
    assert final.errors > 0 or total["overtaken"] == 0
    # TTL is a bound: with no stale_while_revalidate window and a backend that always answers,
    # nothing is served past its TTL, with or without refresh-ahead, unless a fetch failed.
    assert final.stale_served == 0 or final.errors > 0
    if refresh_ahead is None:
        assert final.background_refreshes == 0
    # Each read is one hit, miss or stale serve; only a miss whose fetch failed is also served stale.
    served = stats.hits + stats.misses + stats.stale_served
    assert stats.hits + stats.misses <= total["reads"]
    # Hot-path hits on an entry replaced at that moment are lost (see the xfail test below),
    # so the lower bound allows a sliver of the hits to go missing.
    assert served >= total["reads_ok"] - max(1, stats.hits // 100), (served, total)
