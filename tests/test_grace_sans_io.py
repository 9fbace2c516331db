"""The rotation grace's shared poll, driven step by step through the sans-IO plan.

No thread, task or server: each caller is a ``plan`` generator sent what its I/O would return, on a
FakeClock, so the order of events is exact.
"""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

from secretcache import SecretAccessDeniedError, SecretUnavailableError
from secretcache.db import DbCredentials, classify
from secretcache.db._recovery import AwaitPoll, AwaitRefresh, Connect, Read, Recovery, Sleep, plan
from tests.conftest import FakeClock
from tests.grace import GRACE

# -- the shared poll -----------------------------------------------------------------------------


def test_callers_share_one_poll() -> None:
    """Driven step by step: of 4 callers in a grace, one sleeps and reads; the others wait and use its result."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1, v2 = (DbCredentials(username="app", password=p, version_id=p) for p in ("v1", "v2"))
    error = pymysql.err.OperationalError(1045, "Access denied")
    plans = [plan(recovery, classify) for _ in range(4)]
    assert [p.send(None) for p in plans] == [Read(None, False)] * 4
    assert [p.send(v1) for p in plans] == [Connect(v1)] * 4
    assert [p.throw(error) for p in plans] == [Read(None, True)] + [AwaitRefresh(None, 0)] * 3  # rate limit
    assert [p.send(None) for p in plans[1:]] == [Read(None, False)] * 3  # (woken: see the next test)
    assert [p.send(v1) for p in plans] == [Read("AWSPENDING", True)] + [AwaitRefresh("AWSPENDING", 0)] * 3
    assert [p.send(None) for p in plans[1:]] == [Read("AWSPENDING", False)] * 3
    owner, waiters = plans[0], plans[1:]
    assert [p.send(None) for p in plans] == [Sleep(0.25)] + [AwaitPoll(0)] * 3
    woken: list[int] = []
    for i in range(3):
        assert recovery.subscribe(0, lambda i=i: woken.append(i))
    clock.advance(0.25)
    assert owner.send(None) == Read(None, True, poll=True)
    assert owner.send(v1) == Sleep(0.25)  # nothing new: the owner polls again in 250 ms
    assert sorted(woken) == [0, 1, 2]  # its poll's end woke every waiter
    assert [p.send(None) for p in waiters] == [AwaitPoll(1)] * 3  # and they wait for the next one
    clock.advance(0.25)
    assert owner.send(None) == Read(None, True, poll=True)
    assert owner.send(v2) == Connect(v2)
    assert [p.send(None) for p in waiters] == [Connect(v2)] * 3  # the new version, without a read of their own
    for i, p in enumerate(plans):
        with pytest.raises(StopIteration) as done:
            p.send(f"connection {i}")
        assert done.value.value == f"connection {i}"
    assert recovery.preferred(v1) == v2


def test_callers_refused_during_a_forced_refresh_wait_for_it() -> None:
    """Sans-IO: callers refused while one forces AWSCURRENT wait for that refresh, then read the cache it filled."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=0)
    v1, v2 = (DbCredentials(username="app", password=p, version_id=p) for p in ("v1", "v2"))
    error = pymysql.err.OperationalError(1045, "Access denied")
    plans = [plan(recovery, classify) for _ in range(3)]
    assert [p.send(None) for p in plans] == [Read(None, False)] * 3
    assert [p.send(v1) for p in plans] == [Connect(v1)] * 3
    owner, waiters = plans[0], plans[1:]
    assert owner.throw(error) == Read(None, True)
    assert [p.throw(error) for p in waiters] == [AwaitRefresh(None, 0)] * 2
    woken: list[int] = []
    for i in range(2):
        assert recovery.subscribe_refresh(None, 0, lambda i=i: woken.append(i))
    assert owner.send(v2) == Connect(v2)  # the forced read's answer
    assert sorted(woken) == [0, 1]  # its end woke every caller waiting for it
    assert not recovery.subscribe_refresh(None, 0, lambda: None)  # and it is over
    assert [p.send(None) for p in waiters] == [Read(None, False)] * 2  # the cache, which now holds v2
    assert [p.send(v2) for p in waiters] == [Connect(v2)] * 2
    for i, p in enumerate(plans):
        with pytest.raises(StopIteration) as done:
            p.send(f"connection {i}")
        assert done.value.value == f"connection {i}"
    # Once it has ended, a caller refused within the rate limit reads the cache without waiting.
    late = plan(recovery, classify)
    assert late.send(None) == Read(None, False)
    assert late.send(v1) == Connect(v2)  # v1 was refused and v2 worked: straight to v2
    assert late.throw(error) == Read(None, False)


def test_failed_reads_in_the_recovery_leave_the_login_error() -> None:
    """Sans-IO: the refresh and the AWSPENDING read both fail; the plan raises the driver's error, not theirs."""
    recovery = Recovery(FakeClock(), min_refresh_interval=5.0, rotation_grace=0)
    v1 = DbCredentials(username="app", password="v1", version_id="v1")
    error = pymysql.err.OperationalError(1045, "Access denied")
    steps = plan(recovery, classify)
    assert steps.send(None) == Read(None, False)
    assert steps.send(v1) == Connect(v1)
    assert steps.throw(error) == Read(None, True)
    assert steps.throw(SecretUnavailableError("throttled", secret_id="db")) == Read("AWSPENDING", True)
    with pytest.raises(pymysql.err.OperationalError) as raised:
        steps.throw(SecretAccessDeniedError("denied", secret_id="db"))
    assert raised.value is error


def test_an_unknown_failure_gets_one_refresh_and_no_grace() -> None:
    """Sans-IO: a failure that only may be about credentials gets the refresh of AWSCURRENT, then the error."""
    import psycopg

    recovery = Recovery(FakeClock(), min_refresh_interval=5.0, rotation_grace=GRACE)
    v1 = DbCredentials(username="app", password="v1", version_id="v1")
    error = psycopg.OperationalError("FATAL:  Es sind bereits zu viele Verbindungen offen")
    steps = plan(recovery, classify)
    assert steps.send(None) == Read(None, False)
    assert steps.send(v1) == Connect(v1)
    assert steps.throw(error) == Read(None, True)
    with pytest.raises(psycopg.OperationalError) as raised:
        steps.send(v1)  # no AWSPENDING, no Sleep of a grace
    assert raised.value is error


def fail_into_grace(steps: Any, cached: DbCredentials, error: Exception) -> Any:
    """Drive a plan through a refused login, the refresh (``cached`` again) and no AWSPENDING."""
    assert steps.send(None) == Read(None, False)
    assert steps.send(cached) == Connect(cached)
    assert isinstance(steps.throw(error), Read)
    assert isinstance(steps.send(cached), Read)  # AWSPENDING
    return steps.send(None)


def test_a_late_caller_uses_what_a_poll_found() -> None:
    """Sans-IO: a caller that read before a poll found a new version takes it at once; an old find is not reused."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1, v2, v3 = (DbCredentials(username="app", password=p, version_id=p) for p in ("v1", "v2", "v3"))
    error = pymysql.err.OperationalError(1045, "Access denied")
    owner, late = plan(recovery, classify), plan(recovery, classify)
    assert late.send(None) == Read(None, False)  # it reads and connects before the poll below ends
    assert late.send(v1) == Connect(v1)
    assert fail_into_grace(owner, v1, error) == Sleep(0.25)
    clock.advance(0.25)
    assert owner.send(None) == Read(None, True, poll=True)
    assert owner.send(v2) == Connect(v2)
    with pytest.raises(StopIteration):
        owner.send("connection")  # a success: the grace is over
    assert late.throw(error) == Read(None, False)
    assert late.send(v1) == Read("AWSPENDING", False)  # its refresh read came before the poll's
    assert late.send(None) == Connect(v2)  # no poll of its own: the version the poll found
    with pytest.raises(StopIteration):
        late.send("connection")
    # Much later v3 is refused: a caller starting now does not retry v2 (found by an old poll), it polls.
    fresh = plan(recovery, classify)
    assert fail_into_grace(fresh, v3, error) == Sleep(0.25)


def test_interrupted_owner_hands_the_poll_on() -> None:
    """Sans-IO: a caller closed in the grace's sleep ends its poll, so a waiting caller takes the next."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1 = DbCredentials(username="app", password="v1", version_id="v1")
    error = pymysql.err.OperationalError(1045, "Access denied")
    plans = [plan(recovery, classify) for _ in range(2)]
    assert [fail_into_grace(p, v1, error) for p in plans] == [Sleep(0.25), AwaitPoll(0)]
    plans[0].close()
    assert not recovery.subscribe(0, lambda: None)  # that poll is over
    assert plans[1].send(None) == Sleep(0.25)


@pytest.mark.parametrize("left_by", ["server down", "closed"])
def test_a_grace_left_without_running_out_is_not_spent(left_by: str) -> None:
    """Sans-IO: a caller that leaves its grace by another error or closed ends it: a later refusal gets a grace."""
    clock = FakeClock()
    recovery = Recovery(clock, min_refresh_interval=5.0, rotation_grace=GRACE)
    v1, v2 = (DbCredentials(username="app", password=p, version_id=p) for p in ("v1", "v2"))
    error = pymysql.err.OperationalError(1045, "Access denied")
    first = plan(recovery, classify)
    assert fail_into_grace(first, v1, error) == Sleep(0.25)
    if left_by == "closed":  # a cancelled task, a KeyboardInterrupt: the factory closes the plan
        first.close()
    else:
        clock.advance(0.25)
        assert first.send(None) == Read(None, True, poll=True)
        assert first.send(v2) == Connect(v2)
        with pytest.raises(pymysql.err.OperationalError):
            first.throw(pymysql.err.OperationalError(2003, "Can't connect to MySQL server"))
    clock.advance(600)  # long after that grace would have ended
    assert fail_into_grace(plan(recovery, classify), v2, error) == Sleep(0.25)
