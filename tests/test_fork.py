"""Fork safety: a forked child (gunicorn --preload, multiprocessing) gets a working cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REGION

# Runs in its own process: forks while another thread holds the cache lock and a fetch is in
# flight, then reads from the child over real HTTP.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import boto3
    from secretcache import SecretCache

    endpoint = sys.argv[1]
    given = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=endpoint)
    cache = SecretCache(given, ttl=300, refresh_ahead=0.5)
    built = SecretCache(ttl=300)  # builds its own client from AWS_ENDPOINT_URL
    assert cache.get_secret_string("fork/db") == "pw-1"
    assert built.get_secret_string("fork/db") == "pw-1"
    assert len(given._endpoint.http_session._manager.pools) == 1  # a pooled connection exists

    # A thread holds the cache lock and another waits in a fetch when the process forks.
    held, release = threading.Event(), threading.Event()

    def hold_lock():
        with cache._store._lock:
            held.set()
            release.wait()

    slow_started = threading.Event()

    def slow(**_):
        slow_started.set()
        release.wait()

    given.meta.events.register("before-call.secretsmanager.GetSecretValue", slow)
    threading.Thread(target=lambda: cache.get_secret_string("fork/other"), daemon=True).start()
    assert slow_started.wait(10)  # a fetch is in flight...
    given.meta.events.unregister("before-call.secretsmanager.GetSecretValue", slow)
    threading.Thread(target=hold_lock, daemon=True).start()
    assert held.wait(10)  # ...and another thread holds the lock

    pid = os.fork()
    if pid == 0:
        report = {
            "pools_after_fork": len(given._endpoint.http_session._manager.pools),
            "built_client_dropped": built._fetcher._client.peek() is None,
            "flights_inherited": cache.stats().in_flight,
            "lock_free": cache._store._lock.acquire(timeout=5) and (cache._store._lock.release() or True),
            "warm_hit": cache.get_secret_string("fork/db"),
            "other": cache.get_secret_string("fork/other"),
            "refreshed": cache.refresh("fork/db").secret_string,
            "built_read": built.get_secret_string("fork/db", force_refresh=True),
        }
        # refresh-ahead works in the child: its worker threads are the child's own
        cache2 = SecretCache(given, ttl=0.2, refresh_ahead=0.5)
        cache2.get_secret_string("fork/db")
        time.sleep(0.15)
        cache2.get_secret_string("fork/db")
        deadline = time.monotonic() + 10
        while cache2.stats().background_refreshes < 1 or cache2.stats().refreshes < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        report["child_background_refreshes"] = cache2.stats().refreshes
        print(json.dumps(report), flush=True)
        os._exit(0)
    release.set()
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_reads_with_fresh_locks_and_connections(moto_server: str, tmp_path: Path) -> None:
    """The child is not stuck on a lock or a fetch held at fork time, and opens its own connections."""
    admin: Any = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    admin.create_secret(Name="fork/db", SecretString="pw-1")
    admin.create_secret(Name="fork/other", SecretString="other")
    script = tmp_path / "fork_child.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server}
    result = subprocess.run(
        [sys.executable, str(script), moto_server], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "pools_after_fork": 0,
        "built_client_dropped": True,
        "flights_inherited": 0,
        "lock_free": True,
        "warm_hit": "pw-1",
        "other": "other",
        "refreshed": "pw-1",
        "built_read": "pw-1",
        "child_background_refreshes": 1,
    }


# Forks while a watch's on_change runs on another thread (holding the watch's lock), then has the
# child take a new version through that watch.
WATCH_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    import boto3
    from pydantic import BaseModel
    from secretcache import SecretCache

    class Database(BaseModel):
        username: str

    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=sys.argv[1])
    cache = SecretCache(client, ttl=300)
    parent = os.getpid()
    inside, release = threading.Event(), threading.Event()

    def slow(database):
        if os.getpid() == parent:
            inside.set()
            release.wait()

    watch = cache.watch("fork/watched", Database, on_change=slow)
    client.put_secret_value(SecretId="fork/watched", SecretString=json.dumps({"username": "v2"}))
    threading.Thread(target=lambda: cache.refresh("fork/watched"), daemon=True).start()
    assert inside.wait(10)  # the callback runs, holding the watch's lock
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a hung child ends by itself (SIGALRM), failing the test
        client.put_secret_value(SecretId="fork/watched", SecretString=json.dumps({"username": "v3"}))
        cache.refresh("fork/watched")  # the watch's listener takes v3 here
        print(json.dumps({"current": watch.current.username}), flush=True)
        os._exit(0)
    release.set()
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_takes_new_versions_through_a_watch_whose_callback_ran_at_the_fork(
    moto_server: str, tmp_path: Path
) -> None:
    """A watch's lock, held at the fork by a callback on another thread, is the child's own there."""
    admin: Any = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server)
    admin.create_secret(Name="fork/watched", SecretString=json.dumps({"username": "v1"}))
    script = tmp_path / "fork_watch.py"
    script.write_text(WATCH_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), moto_server], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"current": "v3"}


# Forks while a background refresh runs (held), then has the child read past the refresh point:
# the refresh is the child's to run again, in the background, before the TTL.
REFRESH_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    import boto3
    from moto import mock_aws
    from secretcache import SecretCache

    class Clock:
        now = 1000.0

        def __call__(self):
            return self.now

    clock = Clock()
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="fork/db", SecretString="pw-1")
        cache = SecretCache(client, ttl=60, ttl_jitter=0, refresh_ahead=0.5, clock=clock)
        assert cache.get_secret_string("fork/db") == "pw-1"
        parent, started, release = os.getpid(), threading.Event(), threading.Event()

        def slow(**_):
            if os.getpid() == parent and threading.current_thread().name.startswith("secretcache-refresh"):
                started.set()
                release.wait(20)

        client.meta.events.register("before-call.secretsmanager.GetSecretValue", slow)
        clock.now += 31  # past the refresh point (30 s): a background refresh starts, and is held
        assert cache.get_secret_string("fork/db") == "pw-1"
        assert started.wait(10)
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)  # a hung child ends by itself (SIGALRM), failing the test
            client.put_secret_value(SecretId="fork/db", SecretString="pw-2")
            misses = cache.stats().misses
            clock.now += 20  # 51 s: past the refresh point, before the TTL
            at_once = cache.get_secret_string("fork/db")
            deadline = time.monotonic() + 10  # a refresh that never starts fails the test, not the run
            while cache.stats().refreshes < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            report = {"at_once": at_once, "after": cache.get_secret_string("fork/db")}
            report["foreground_misses"] = cache.stats().misses - misses
            print(json.dumps(report), flush=True)
            os._exit(0)
        release.set()
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_background_refresh_in_flight_at_the_fork_runs_again_in_the_child_before_the_ttl(tmp_path: Path) -> None:
    """A child forked during a background refresh refreshes in the background past the refresh point, not at the TTL."""
    script = tmp_path / "fork_refresh.py"
    script.write_text(REFRESH_SCRIPT)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    command = [sys.executable, str(script)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "at_once": "pw-1",
        "after": "pw-2",
        "foreground_misses": 0,
    }
