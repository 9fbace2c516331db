"""HandOffLock (secretcache/db/_handoff.py): each promise of its docstrings, with real threads and counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from secretcache.db._handoff import HandOffLock, Work
from tests.conftest import WATCHDOG
from tests.watchdog import within_watchdog


def start(target: Callable[[], object]) -> Callable[[], None]:
    """Run ``target`` on a thread; the returned join fails (never hangs) if it does not end, and re-raises its error."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(WATCHDOG)
        assert not thread.is_alive(), "a deadlock or a lost wake-up"
        if errors:
            raise errors[0]

    return join


class Seam:
    """The lock's own lock, with a hook run in its first try (``acquire(blocking=False)``) or its first release."""

    def __init__(self, **hooks: Callable[[], object]) -> None:
        self._lock, self._hooks = threading.Lock(), hooks

    def acquire(self, blocking: bool = True) -> bool:
        if not blocking:
            self._hooks.pop("on_try", lambda: None)()
        return self._lock.acquire(blocking)

    def release(self) -> None:
        self._hooks.pop("on_release", lambda: None)()
        self._lock.release()


def hold(lock: HandOffLock, body: Callable[[], object] = lambda: None) -> None:
    """``with lock: body()`` on a watchdog thread (named ``watchdog``): a hang fails."""

    def holding() -> None:
        with lock:
            body()

    within_watchdog(holding)


def recorder(lock: HandOffLock, log: list[str], name: str, *, raises: bool = False) -> Work:
    """A work logging ``name``; its wake-up takes the lock itself (a deadlock if called under it)."""

    def wake() -> None:
        with lock:
            log.append(f"wake {name}")

    def work() -> list[Callable[[], None]]:
        log.append(f"{name} on {threading.current_thread().name}")
        if raises:
            raise RuntimeError(name)
        return [wake]

    return work


def test_hand_off_on_a_free_lock_does_the_work_at_once_and_wakes_after_release() -> None:
    """On a free lock the hander does the work itself and then calls its wake-up, which may take the lock."""
    lock, log = HandOffLock(), []
    within_watchdog(lambda: lock.hand_off(recorder(lock, log, "a")))
    assert log == ["a on watchdog", "wake a"]


def test_hand_off_to_another_thread_holding_the_lock_returns_and_the_holder_does_it_in_order() -> None:
    """A hander never waits for a holder, who does the work in the order handed before it lets go, then wakes."""
    lock, log = HandOffLock(), []
    held, go = threading.Event(), threading.Event()

    def holder() -> None:
        threading.current_thread().name = "holder"
        with lock:
            held.set()
            assert go.wait(WATCHDOG)
            log.append("body")
        log.append("released")

    join = start(holder)
    assert held.wait(WATCHDOG)
    within_watchdog(lambda: [lock.hand_off(recorder(lock, log, name)) for name in "abc"])
    assert log == []
    go.set()
    join()
    assert log == ["body", *(f"{name} on holder" for name in "abc"), "wake a", "wake b", "wake c", "released"]


def test_a_finally_clause_collected_inside_the_lock_hands_off_without_waiting_for_its_own_thread() -> None:
    """The GC case: a hand-off from the holding thread returns at once; the work is done before that release ends."""
    lock, log = HandOffLock(), []

    def ending() -> Iterator[None]:
        try:
            yield
        finally:
            lock.hand_off(recorder(lock, log, "end"))
            log.append("handed")

    def gc_case() -> None:
        paused = ending()
        next(paused)
        with lock:
            del paused  # the last reference: the finally clause runs here, under the lock
            log.append("body")
        log.append("released")

    within_watchdog(gc_case)
    assert log == ["handed", "body", "end on watchdog", "wake end", "released"]


def test_a_holder_sees_the_work_handed_off_before_it_took_the_lock() -> None:
    """A hander paused between leaving its work and trying the lock: the next ``with lock:`` does it on entry."""
    lock, log = HandOffLock(), []
    trying, go = threading.Event(), threading.Event()
    lock._lock = Seam(on_try=lambda: (trying.set(), go.wait(WATCHDOG)))  # type: ignore[assignment]
    join = start(lambda: lock.hand_off(recorder(lock, log, "a")))
    assert trying.wait(WATCHDOG)
    seen: list[list[str]] = []
    hold(lock, lambda: seen.append(list(log)))
    go.set()
    join()
    assert seen == [["a on watchdog"]]
    assert log == ["a on watchdog", "wake a"]


def test_work_handed_off_as_the_holder_lets_go_is_still_done() -> None:
    """Work handed off after the holder's last pass, while it still holds the lock, is done after it lets go."""
    lock, log = HandOffLock(), []
    lock._lock = Seam(on_release=lambda: lock.hand_off(recorder(lock, log, "late")))  # type: ignore[assignment]
    hold(lock)
    assert log == ["late on watchdog", "wake late"]


def test_race_every_work_handed_off_is_done_once_in_order_and_seen_by_its_hander() -> None:
    """Handers and takers under a barrier: each work is done once, under the lock alone, in order, and woken."""
    handers, takers, rounds = 4, 3, 300
    lock, barrier = HandOffLock(), threading.Barrier(handers + takers, timeout=WATCHDOG)
    done: list[tuple[int, int]] = []  # under the lock
    woken: list[tuple[int, int]] = []  # after its release (appends are atomic)
    inside = [0]  # works and ``with`` bodies running now: never more than one

    def alone() -> None:
        inside[0] += 1
        time.sleep(0)  # lets another thread run here: one that should not (no timing is asserted)
        assert inside[0] == 1
        inside[0] -= 1

    def work(key: tuple[int, int]) -> Work:
        def do() -> list[Callable[[], None]]:
            alone()
            done.append(key)
            return [lambda: woken.append(key)]

        return do

    def hander(who: int) -> None:
        barrier.wait()
        for seq in range(rounds):
            lock.hand_off(work((who, seq)))
            if seq % 50 == 49:
                with lock:
                    alone()
                    assert [key for key in done if key[0] == who] == [(who, n) for n in range(seq + 1)]

    def taker() -> None:
        barrier.wait()
        for _ in range(rounds):
            with lock:
                alone()

    joins = [start(lambda who=who: hander(who)) for who in range(handers)]
    joins += [start(taker) for _ in range(takers)]
    for join in joins:
        join()
    expected = [(who, seq) for who in range(handers) for seq in range(rounds)]
    assert sorted(done) == expected
    assert sorted(woken) == expected
    assert not lock._left


def test_a_raising_work_leaves_the_lock_free_and_stops_no_other_work_nor_wake_up() -> None:
    """The holder gets the first work's error once it let go, did the works after it and called every wake-up."""
    lock, log = HandOffLock(), []
    works = [recorder(lock, log, name, raises=name in "bd") for name in "abcd"]
    with pytest.raises(RuntimeError, match=r"^b$"):
        hold(lock, lambda: [lock.hand_off(work) for work in works])
    assert log == [f"{name} on watchdog" for name in "abcd"] + ["wake a", "wake c"]
    with pytest.raises(RuntimeError, match=r"^e$"):
        within_watchdog(lambda: lock.hand_off(recorder(lock, log, "e", raises=True)))
    within_watchdog(lambda: lock.hand_off(recorder(lock, log, "f")))
    assert log[-3:] == ["e on watchdog", "f on watchdog", "wake f"]


def test_a_raising_wake_up_skips_no_other_wake_up_nor_work_handed_off_meanwhile() -> None:
    """The first wake-up's error is raised after the others were called and the work handed off as it let go done."""
    lock, log = HandOffLock(), []

    def broken() -> None:
        raise RuntimeError("wake")

    lock._lock = Seam(on_release=lambda: lock.hand_off(recorder(lock, log, "late")))  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match=r"^wake$"):
        hold(lock, lambda: lock.hand_off(lambda: [broken, lambda: log.append("woken"), broken]))
    assert log == ["woken", "late on watchdog", "wake late"]
