"""A bound on calls that could deadlock: a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tests.conftest import WATCHDOG

_T = TypeVar("_T")


def within_watchdog(call: Callable[[], _T]) -> _T:
    """Run ``call`` on a daemon thread; fail (never hang, not even at exit) if it does not return in time."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, name="watchdog", daemon=True)
    thread.start()
    thread.join(WATCHDOG)
    if thread.is_alive():
        raise AssertionError(f"no return within {WATCHDOG} s: a deadlock or a lost wake-up")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
