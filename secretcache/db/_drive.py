"""The two loops that drive a recovery :func:`~secretcache.db._recovery.plan`: blocking and asyncio.

A loop's only work is to do each op the plan yields (call ``do``, or await it) and hand the
outcome back. Everything else is :class:`Drive`'s, written once for both: sending results in and
throwing errors in, noting the password of every connect (:class:`~secretcache.db._secrecy.Witness`),
closing the plan however the loop ends, and letting out the plan's result or its error, with a
:class:`~secretcache.db.RedactedConnectError` in place of an error that holds a password.
Every error a factory lets out leaves through :meth:`Drive.next`: the plan raises it, or a
``BaseException`` that is not an ``Exception`` passes (see ``_secrecy.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

from secretcache.db._recovery import Op
from secretcache.db._secrecy import RedactedConnectError, Witness

__all__ = ["Drive", "drive", "drive_async"]


class Drive:
    """One run of a plan: what goes into it next, and what comes out of it in the end.

    A context manager: leaving it closes the plan, so its ``finally`` clauses (the end of a
    claimed poll) run now even when a ``BaseException`` (``KeyboardInterrupt``, a cancellation)
    ends the loop, not whenever the plan is garbage-collected: a traceback keeps it alive as long
    as anyone holds the exception.

    Args:
        steps: The plan.
        witness: Learns the passwords of the plan's connects and checks the error that ends it.
    """

    def __init__(self, steps: Generator[Op, Any, Any], witness: Witness) -> None:
        self._steps = steps
        self._witness = witness
        self.sent: Any = None
        """What the last op returned: sent into the plan by :meth:`next`."""
        self.thrown: Exception | None = None
        """What the last op raised: thrown into the plan by :meth:`next`."""
        self._value: Any = None
        self._redacted: RedactedConnectError | None = None

    def __enter__(self) -> Drive:
        """This drive."""
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Close the plan (a no-op once it has ended)."""
        self._steps.close()

    def next(self) -> Op | None:
        """The plan's next op (its password noted), or ``None`` once the plan has ended.

        The plan's own error propagates from here untouched, unless it holds a password: then it
        is dropped and :meth:`outcome` raises a :class:`RedactedConnectError` in its place.
        """
        try:
            op = self._steps.throw(self.thrown) if self.thrown is not None else self._steps.send(self.sent)
        except StopIteration as done:
            self._value = done.value
            return None
        except Exception as error:
            self._redacted = self._witness.redacted(error)
            if self._redacted is None:
                raise  # as it is: a bare raise leaves its traceback and chain alone
            return None  # the error is dropped here; outcome() raises the one standing for it
        self.sent, self.thrown = None, None
        return self._witness.see(op)

    def outcome(self) -> Any:
        """What the plan returned, or (raised) the error standing for the one that held a password.

        Raises:
            RedactedConnectError: The plan's error held a password.
        """
        redacted, self._redacted = self._redacted, None
        if redacted is not None:
            raise redacted from None  # raised outside any except block: the original is not its __context__
        return self._value


def drive(state: Drive, do: Callable[[Op], Any]) -> Any:
    """Run a plan to its end with a blocking ``do``; return its result (see :meth:`Drive.outcome`)."""
    with state:
        while (op := state.next()) is not None:
            try:
                state.sent = do(op)
            except Exception as error:
                state.thrown = error
    return state.outcome()


async def drive_async(state: Drive, do: Callable[[Op], Awaitable[Any]]) -> Any:
    """Run a plan to its end, awaiting ``do``; return its result (see :meth:`Drive.outcome`)."""
    with state:
        while (op := state.next()) is not None:
            try:
                state.sent = await do(op)
            except Exception as error:
                state.thrown = error
    return state.outcome()
