"""A bound on calls that could deadlock: a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tests.conftest import WATCHDOG

_T = TypeVar("_T")


def spawn(call: Callable[[], Any], name: str = "watchdog") -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` on a daemon thread (a hung one cannot stall the suite); its result or error lands in the dict."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread, outcome: dict[str, Any]) -> Any:
    """What ``thread`` (from :func:`spawn`) returned or raised; fail if it still runs after the watchdog."""
    thread.join(WATCHDOG)
    if thread.is_alive():
        raise AssertionError(f"no return within {WATCHDOG} s: a deadlock, a lost wake-up or an unbounded wait")
    return outcome["error"] if "error" in outcome else outcome["value"]


def within_watchdog(call: Callable[[], _T]) -> _T:
    """Run ``call`` on a daemon thread; fail (never hang, not even at exit) if it does not return in time."""
    thread, outcome = spawn(call)
    result = finished(thread, outcome)
    if "error" in outcome:
        raise result
    return result  # type: ignore[no-any-return]
