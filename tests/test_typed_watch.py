"""``watch``: a typed holder that follows rotations, keeps the last valid version and never leaks a value."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from secretcache import AsyncSecretCache, SecretCache, SecretChange, SecretFormatError, SecretWatch
from tests.conftest import WATCHDOG, Calls, FakeClock, wait_until
from tests.conftest import inside as inside_function
from tests.leaks import assert_value_absent, leaks_in_records
from tests.test_cache import make_cache, rotate
from tests.threads import Held, refuse_thread_starts, start
from tests.watchdog import within_watchdog

SECRET = "prod/orders/db"
PASSWORD = "pw-LEAKMARK-5e0d"


class Database(BaseModel):
    model_config = ConfigDict(frozen=True)

    username: str
    password: SecretStr


def document(username: str, password: str = PASSWORD) -> str:
    return json.dumps({"username": username, "password": password})


@pytest.fixture
def cache(client: Any, admin: Any, clock: FakeClock) -> SecretCache:
    admin.create_secret(Name=SECRET, SecretString=document("v1"))
    return make_cache(client, clock)


def test_rotation_reaches_current_and_the_callback(cache: SecretCache, admin: Any, clock: FakeClock) -> None:
    """A new version the cache fetches becomes ``current`` and is passed to ``on_change`` once."""
    seen: list[Database] = []
    with cache.watch(SECRET, Database, on_change=seen.append) as watch:
        assert isinstance(watch, SecretWatch)
        assert watch.current.username == "v1"
        _, new = rotate(admin, SECRET, document("v2"))
        clock.advance(61)
        assert cache.get_secret_model(SECRET, Database).username == "v2"  # any read fetches it
        assert [item.username for item in seen] == ["v2"]
        assert watch.current is seen[0]  # frozen: the very object the cache holds
        assert watch.version_id == new
        cache.get_secret_string(SECRET)
        assert len(seen) == 1  # a hit is no change


def test_an_invalid_version_keeps_the_last_valid_one(
    cache: SecretCache, admin: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A version that fails validation is reported (log, on_error) without a value; ``current`` stays."""
    seen: list[Database] = []
    errors: list[SecretFormatError] = []
    watch = cache.watch(SECRET, Database, on_change=seen.append, on_error=errors.append)
    first_version = watch.version_id
    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        rotate(admin, SECRET, json.dumps({"username": PASSWORD}))  # no password field
        cache.refresh(SECRET)
        assert watch.current.username == "v1"
        assert watch.version_id == first_version
        assert seen == []
        assert len(errors) == 1
        assert "password (missing)" in str(errors[0])
        assert_value_absent(errors[0], PASSWORD)
        cache.refresh(SECRET)  # the same invalid version again: reported once
        assert len(errors) == 1
    assert "is not kept" in caplog.text
    assert leaks_in_records(caplog.records, PASSWORD) == []
    rotate(admin, SECRET, document("v3"))
    cache.refresh(SECRET)
    assert watch.current.username == "v3"
    assert [item.username for item in seen] == ["v3"]
    watch.close()


def test_close_stops_the_callbacks(cache: SecretCache, admin: Any) -> None:
    """After ``close()`` no callback runs and ``current`` keeps the last object."""
    seen: list[Database] = []
    watch = cache.watch(SECRET, Database, on_change=seen.append)
    watch.close()
    watch.close()  # harmless twice
    rotate(admin, SECRET, document("v2"))
    cache.refresh(SECRET)
    assert seen == []
    assert watch.closed
    assert watch.current.username == "v1"
    assert "closed" in repr(watch)


def test_reading_current_starts_a_due_refresh_without_blocking(client: Any, admin: Any, clock: FakeClock) -> None:
    """Past its TTL, ``current`` returns the held object at once and a background fetch brings the new one."""
    admin.create_secret(Name=SECRET, SecretString=document("v1"))
    calls = Calls(client)
    cache = make_cache(client, clock)
    watch = cache.watch(SECRET, Database)
    rotate(admin, SECRET, document("v2"))
    held = calls.hold()  # the fetch waits: current must not
    clock.advance(61)
    assert watch.current.username == "v1"
    held.set()
    wait_until(lambda: watch.current.username == "v2")
    assert calls["GetSecretValue"] == 2


def test_a_callback_may_read_the_cache(cache: SecretCache, admin: Any) -> None:
    """``on_change`` runs outside the cache's lock: reading the same secret there returns the new version."""
    read_inside: list[str] = []

    def rebuild(new: Database) -> None:
        read_inside.append(cache.get_secret_model(SECRET, Database).username)
        read_inside.append(cache.get_secret_json(SECRET, "username"))

    watch = cache.watch(SECRET, Database, on_change=rebuild)
    rotate(admin, SECRET, document("v2"))
    cache.refresh(SECRET)
    assert read_inside == ["v2", "v2"]
    watch.close()


def test_a_failing_callback_is_logged_and_the_watch_goes_on(
    cache: SecretCache, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in ``on_change`` is logged; the new object is held all the same."""

    def broken(_new: Database) -> None:
        raise RuntimeError("pool rebuild failed")

    watch = cache.watch(SECRET, Database, on_change=broken)
    rotate(admin, SECRET, document("v2"))
    with caplog.at_level(logging.ERROR, logger="secretcache"):
        cache.refresh(SECRET)
    assert "watch callback" in caplog.text
    assert watch.current.username == "v2"


def test_a_version_only_an_orphaned_fetch_brought_reaches_current_once_a_read_caches_it(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """An orphaned fetch announces v2 but installs nothing, so the watch's listener finds no entry
    to take; the read that caches v2 announces no change again, and ``current`` has a refresh
    thread take it (``on_change`` never runs on the reading thread)."""
    admin.create_secret(Name=SECRET, SecretString=document("v1"))
    cache = make_cache(client, clock)
    held = Held(client, "orphan", event="before-call")
    changes: list[SecretChange] = []
    cache.on_change(changes.append)
    seen: list[Database] = []
    threads: list[str] = []

    def changed(database: Database) -> None:
        threads.append(threading.current_thread().name)
        seen.append(database)

    with cache.watch(SECRET, Database, on_change=changed) as watch:
        first = watch.version_id
        orphan = start(lambda: cache.get_secret_string(SECRET, force_refresh=True), "orphan")
        assert held.arrived.wait(WATCHDOG)  # its fetch started; Secrets Manager has not answered yet
        cache.invalidate(SECRET)  # orphans it
        assert json.loads(cache.get_secret_string(SECRET))["username"] == "v1"  # v1 cached again
        _, new = rotate(admin, SECRET, document("v2"))
        held.released.set()
        assert json.loads(orphan.result(timeout=WATCHDOG))["username"] == "v2"
        assert [change.new_version_id for change in changes] == [new]  # the orphan's change came
        assert (seen, watch.version_id) == ([], first)  # with no entry holding v2 to take
        assert json.loads(cache.get_secret_string(SECRET))["username"] == "v2"  # fetched and cached
        assert [change.new_version_id for change in changes] == [new]  # no second change for it
        assert seen == []
        assert watch.current.username in ("v1", "v2")  # returns at once; a refresh thread takes v2
        wait_until(lambda: watch.version_id == new)
        assert watch.current.username == "v2"
        assert [item.username for item in seen] == ["v2"]  # on_change, once
        assert len(threads) == 1
        assert threads[0].startswith("secretcache-refresh")


def test_current_never_runs_a_callback_on_the_reading_thread(client: Any, admin: Any, clock: FakeClock) -> None:
    """A version cached before the watch's own listener ran (a slower listener runs first) is taken
    on a refresh thread: ``current`` returns at once, and ``on_change`` runs once, elsewhere."""
    admin.create_secret(Name=SECRET, SecretString=document("v1"))
    cache = make_cache(client, clock)
    inside, release = threading.Event(), threading.Event()

    def slow(_change: SecretChange) -> None:
        inside.set()
        assert release.wait(WATCHDOG)

    cache.on_change(slow)  # called before the watch's listener, which subscribes after it
    ran: list[tuple[str, str]] = []
    watch = cache.watch(
        SECRET, Database, on_change=lambda db: ran.append((threading.current_thread().name, db.username))
    )
    rotate(admin, SECRET, document("v2"))
    fetcher = start(lambda: cache.refresh(SECRET), "fetcher")
    try:
        assert inside.wait(WATCHDOG)  # v2 is cached; the listeners run on the fetcher, the watch's not yet
        assert watch.current.username in ("v1", "v2")
        wait_until(lambda: bool(ran))
        assert ran[0][0].startswith("secretcache-refresh")
        assert watch.current.username == "v2"
    finally:
        release.set()
    fetcher.result(timeout=WATCHDOG)
    assert ran == [(ran[0][0], "v2")]  # the watch's listener, late, found v2 taken already


def test_close_returns_once_a_running_callback_has(cache: SecretCache, admin: Any) -> None:
    """``close()`` on another thread waits for the callback running: once it returns, none runs."""
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(_database: Database) -> None:
        inside.set()
        assert release.wait(WATCHDOG)
        order.append("callback returned")

    watch = cache.watch(SECRET, Database, on_change=slow)
    rotate(admin, SECRET, document("v2"))
    fetcher = start(lambda: cache.refresh(SECRET), "fetcher")
    assert inside.wait(WATCHDOG)

    def close() -> None:
        watch.close()
        order.append("close returned")

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    wait_until(lambda: not closer.is_alive() or inside_function(closer, SecretWatch.close))
    release.set()
    closer.join(WATCHDOG)
    fetcher.result(timeout=WATCHDOG)
    assert order == ["callback returned", "close returned"]


def test_a_callback_may_close_its_own_watch(cache: SecretCache, admin: Any) -> None:
    """``close()`` from the watch's own callback returns at once (no deadlock); no later version arrives."""
    seen: list[str] = []

    def changed(database: Database) -> None:
        seen.append(database.username)
        watch.close()

    watch = cache.watch(SECRET, Database, on_change=changed)
    rotate(admin, SECRET, document("v2"))
    start(lambda: cache.refresh(SECRET), "fetcher").result(timeout=WATCHDOG)
    assert watch.closed
    rotate(admin, SECRET, document("v3"))
    cache.refresh(SECRET)
    assert seen == ["v2"]
    assert watch.current.username == "v2"


class Checked(BaseModel):
    """A model whose validator has a bug: it raises ``TypeError``, quoting the value."""

    model_config = ConfigDict(frozen=True)

    username: str
    password: SecretStr

    @field_validator("username")
    @classmethod
    def buggy(cls, username: str) -> str:
        if username == "v2":
            raise TypeError(f"cannot handle {username} with password {PASSWORD}")
        return username


def test_a_validator_raising_another_error_is_a_failed_version(
    cache: SecretCache, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A validator's ``TypeError`` is a version that fails, once: ``current`` keeps the last valid
    object and never raises; reads raise ``SecretFormatError`` naming the type, never the message."""
    errors: list[SecretFormatError] = []
    watch = cache.watch(SECRET, Checked, on_error=errors.append)
    rotate(admin, SECRET, document("v2"))
    with caplog.at_level(logging.WARNING, logger="secretcache"):
        cache.refresh(SECRET)
        for _ in range(3):
            assert watch.current.username == "v1"
    assert len(errors) == 1
    assert "TypeError" in str(errors[0])
    assert_value_absent(errors[0], PASSWORD)
    with pytest.raises(SecretFormatError, match="raised TypeError") as raised:
        cache.get_secret_model(SECRET, Checked)
    assert_value_absent(raised.value, PASSWORD)
    assert leaks_in_records(caplog.records, PASSWORD) == []


class _Holder:
    """An application object whose ``repr`` shows the credentials it holds (as a dataclass's would)."""

    def __init__(self) -> None:
        self.password = ""

    def __repr__(self) -> str:
        return f"_Holder(password={self.password!r})"

    def rebuild(self, db: Database) -> None:
        self.password = db.password.get_secret_value()
        raise RuntimeError("pool rebuild failed")


def test_a_failing_callback_is_logged_by_its_name_not_its_repr(
    cache: SecretCache, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises is named by its qualified name: a bound method's ``repr`` showed the
    password its object had just been given, in the log line's message and ``args``."""
    holder = _Holder()
    with cache.watch(SECRET, Database, on_change=holder.rebuild):
        rotate(admin, SECRET, document("v2"))
        with caplog.at_level(logging.DEBUG, logger="secretcache"):
            cache.refresh(SECRET)
    assert holder.password == PASSWORD
    assert [record.getMessage() for record in caplog.records if record.exc_info] == [
        f"watch callback _Holder.rebuild failed for secret {SECRET!r}"
    ]
    assert leaks_in_records(caplog.records, PASSWORD) == []


def test_a_watch_spelled_by_arn_follows_a_change_read_by_name(client: Any, admin: Any, clock: FakeClock) -> None:
    """The change of a secret read under another spelling reaches a watch of its ARN."""
    arn = admin.create_secret(Name=SECRET, SecretString=document("v1"))["ARN"]
    cache = make_cache(client, clock)
    watch = cache.watch(arn, Database)
    cache.get_secret_string(SECRET)
    rotate(admin, SECRET, document("v2"))
    cache.refresh(SECRET)
    assert watch.current.username == "v2"


def test_a_watch_by_partial_arn_ignores_the_secret_its_arn_looks_like(
    client: Any, admin: Any, clock: FakeClock
) -> None:
    """``...:secret:app-config`` ends like a full ARN of ``app``: a rotation of ``app`` is not the
    watch's, and no value of it reaches ``on_change`` or ``current``."""
    admin.create_secret(Name="app", SecretString=document("app-v1"))
    config = admin.create_secret(Name="app-config", SecretString=document("config-v1"))["ARN"]
    cache = make_cache(client, clock)
    seen: list[str] = []
    watch = cache.watch(config[:-7], Database, on_change=lambda db: seen.append(db.username))
    cache.get_secret_string("app")
    rotate(admin, "app", document("app-v2"))
    cache.refresh("app")
    assert seen == []
    assert watch.current.username == "config-v1"
    rotate(admin, "app-config", document("config-v2"))
    cache.refresh("app-config")  # read by name: the watch of its partial ARN follows it
    assert seen == ["config-v2"]


def test_a_watch_never_makes_the_fetching_thread_wait_for_its_own_spelling(
    client: Any, admin: Any, calls: Calls, clock: FakeClock
) -> None:
    """A read by name that finds a new version returns while a fetch by the watch's ARN is held.

    The watch takes the entry the change installed: its listener, on the reader's thread, makes
    no read of its own spelling, so it never joins (and waits for) that held fetch.
    """
    arn = admin.create_secret(Name=SECRET, SecretString=document("v1"))["ARN"]
    cache = make_cache(client, clock)
    seen: list[Database] = []
    watch = cache.watch(arn, Database, on_change=seen.append)
    rotate(admin, SECRET, document("v2"))
    held, release = threading.Event(), threading.Event()

    def hold_arn(_op: str, params: dict[str, Any]) -> None:
        if params.get("SecretId") == arn:
            held.set()
            release.wait(2 * WATCHDOG)  # longer than the watchdog: a reader waiting for it fails

    calls.add_fault(hold_arn)
    by_arn = threading.Thread(target=lambda: cache.get_secret_string(arn, force_refresh=True), daemon=True)
    by_arn.start()
    try:
        assert held.wait(WATCHDOG)  # a fetch of the watch's own spelling is in flight, held
        assert within_watchdog(lambda: cache.get_secret_model(SECRET, Database, force_refresh=True)).username == "v2"
        assert [item.username for item in seen] == ["v2"]  # taken from the read by name, on its thread
        assert watch.current.username == "v2"
    finally:
        release.set()
    by_arn.join(WATCHDOG)


def test_an_invalid_first_version_raises(cache: SecretCache, admin: Any) -> None:
    """With no valid version to hold, ``watch`` raises the validation error (no value in it)."""
    admin.create_secret(Name="app/bad", SecretString=json.dumps({"username": PASSWORD}))
    with pytest.raises(SecretFormatError) as info:
        cache.watch("app/bad", Database)
    assert info.value.__context__ is None
    assert_value_absent(info.value, PASSWORD)


async def test_async_watch_follows_a_rotation(client: Any, admin: Any, clock: FakeClock) -> None:
    """``await AsyncSecretCache.watch`` holds the model; a rotation reaches it and its callback."""
    admin.create_secret(Name=SECRET, SecretString=document("v1"))
    seen: list[str] = []
    async with AsyncSecretCache(cache=make_cache(client, clock)) as cache:
        watch = await cache.watch(SECRET, Database, on_change=lambda new: seen.append(new.username))
        assert watch.current.username == "v1"
        _, newest = rotate(admin, SECRET, document("v2"))
        assert (await cache.refresh(SECRET)).version_id == newest
        # The listener runs on the fetch's thread after it woke this task: not necessarily before it resumes.
        wait_until(lambda: seen == ["v2"])
        assert watch.current.username == "v2"
        watch.close()


def test_a_listener_late_with_an_older_version_never_takes_the_watch_back(
    cache: SecretCache, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change listener that read v2 but reaches the watch after v3 was taken leaves v3: callbacks in version order."""
    seen: list[Database] = []
    watch = cache.watch(SECRET, Database, on_change=seen.append)
    take = SecretWatch._take
    paused, resume = threading.Event(), threading.Event()

    def late_take(self: SecretWatch[Any], entry: Any) -> None:
        if entry.value is not None and entry.value.secret_string == document("v2") and not paused.is_set():
            paused.set()  # this listener read v2 and is about to take it: hold it there
            assert resume.wait(WATCHDOG)
        take(self, entry)

    monkeypatch.setattr(SecretWatch, "_take", late_take)
    rotate(admin, SECRET, document("v2"))
    first = threading.Thread(target=lambda: cache.get_secret_string(SECRET, force_refresh=True), daemon=True)
    first.start()
    assert paused.wait(WATCHDOG)
    _, newest = rotate(admin, SECRET, document("v3"))
    assert cache.get_secret_model(SECRET, Database, force_refresh=True).username == "v3"  # its listener takes v3
    resume.set()
    first.join(WATCHDOG)
    assert not first.is_alive()
    assert [item.username for item in seen] == ["v3"]  # v2, older and already replaced, is never taken
    assert watch.version_id == newest
    assert watch.current.username == "v3"


def test_current_never_raises_when_no_thread_can_start(
    client: Any, admin: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Due for a refresh, then expired, while no thread can start: ``current`` keeps the held object.

    It raised the ``RuntimeError`` of ``Thread.start`` (the refresh pool's, then the fetch thread's).
    """
    admin.create_secret(Name=SECRET, SecretString=document("v1"))
    cache = make_cache(client, clock, refresh_ahead=0.8)
    watch = cache.watch(SECRET, Database)
    refuse_thread_starts(monkeypatch, "secretcache")
    rotate(admin, SECRET, document("v2"))
    clock.advance(50)  # past the refresh point (48 s): the refresh pool is asked
    assert watch.current.username == "v1"
    clock.advance(20)  # past the TTL: a fetch thread is asked
    assert watch.current.username == "v1"
    assert cache.stats().in_flight == 0
    monkeypatch.undo()
    assert watch.current.username in ("v1", "v2")  # starts the fetch, which brings v2
    wait_until(lambda: watch.current.username == "v2")


class Pinned(BaseModel):
    """A model whose ``pin`` must be a number: pydantic's ValidationError quotes the input it refused."""

    model_config = ConfigDict(frozen=True)

    username: str
    password: SecretStr
    pin: int = 0


def test_no_log_record_of_a_failing_version_or_callback_holds_the_value(
    cache: SecretCache, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Versions failing validation (pydantic's error quotes its input; a validator's own error) and
    callbacks raising are logged: no record holds the value, in its message, fields or traceback."""

    def broken(_new: object) -> None:
        raise RuntimeError("pool rebuild failed")

    with caplog.at_level(logging.DEBUG, logger="secretcache"):
        pinned = cache.watch(SECRET, Pinned, on_change=broken, on_error=broken)
        checked = cache.watch(SECRET, Checked, on_change=broken, on_error=broken)
        rotate(admin, SECRET, json.dumps({"username": "v2", "password": PASSWORD, "pin": PASSWORD}))
        cache.refresh(SECRET)  # both fail: the pin is no number, Checked's validator raises
        rotate(admin, SECRET, document("v3"))
        cache.refresh(SECRET)  # both valid: on_change raises
        assert (pinned.current.username, checked.current.username) == ("v3", "v3")
        pinned.close()
        checked.close()
    records = caplog.records
    assert sum("is not kept" in record.getMessage() for record in records) == 2
    assert sum(bool(record.exc_info) for record in records) == 4  # on_error twice, on_change twice
    assert leaks_in_records(records, PASSWORD) == []
