"""The seams machine of ``tests/test_model_seams.py`` over a cache that builds its own client.

``SecretCache()`` with no client builds a boto3 client on its first fetch, and botocore logs
"Found credentials in environment variables." at INFO on ``botocore.credentials`` while it
does. Here a handler on that logger reads another secret through the cache, on the building
thread: from a scripted read, a prefetch, a refresh thread or an asyncio fetch thread, whichever
fetches first. Its read builds a client of its own (the first built is kept) and its second
record, from that nested build, re-reads the secret it is fetching, which fails fast. Every
other rule, listener and check of the seams machine runs unchanged, under the watchdog.

The cache's calls are counted on the client it builds: the machine's :class:`Calls` hook is
added to botocore's ``BUILTIN_HANDLERS`` for the example, the list every new botocore session
registers its handlers from (as moto registers its own), so every client built meanwhile
reports its calls through botocore's ``before-call`` event.
"""

from __future__ import annotations

import logging
from typing import Any

import botocore.handlers
import pytest
from hypothesis.stateful import invariant

from secretcache import SecretCache, SecretUnavailableError
from tests.test_model import SECRETS, ModelKey, machine_settings, shared_clients
from tests.test_model_seams import NEXT, MachineHandler, SeamsMachine

FETCHED_UP_THE_STACK = "being fetched further up this thread's stack"


class ReadingCredentialsHandler(MachineHandler):
    """A handler of botocore's credentials log that reads another secret through the cache."""

    machine: OwnClientMachine

    def emit(self, record: logging.LogRecord) -> None:
        """Read the secret after the one being read (a failure is recorded for the machine)."""
        self.machine._hook(self.machine._read_while_building)


class OwnClientMachine(SeamsMachine):
    """The seams machine with ``SecretCache()`` building its client, read from botocore's log of the build."""

    def __init__(self) -> None:
        self.observer: tuple[str, Any] | None = None
        self.records = 0  # records the credentials handler got: one per client built
        self.refused = 0  # reads in it of a secret its own thread was fetching
        super().__init__()
        self.credentials_log = logging.getLogger("botocore.credentials")
        self.credentials_level = self.credentials_log.level
        self.credentials_handler = ReadingCredentialsHandler(self)
        self.credentials_log.setLevel(logging.INFO)
        self.credentials_log.addHandler(self.credentials_handler)

    def _make_cache(self, client: Any) -> SecretCache:
        """The seams machine's cache, without a client: it builds its own; its calls are counted there."""
        self.observer = ("before-call.secretsmanager.*", self.calls._before_call)
        botocore.handlers.BUILTIN_HANDLERS.append(self.observer)
        return super()._make_cache(None)

    def teardown(self) -> None:
        """Close, then unhook the call counter from the shared client it was built on.

        The base machine unhooks it from ``cache.client``, which is the shared client there but
        the cache's own here (whose hook goes with it); asking a stuck cache for its client could
        also wait forever.
        """
        try:
            self._close()
        finally:
            shared_clients()[1].meta.events.unregister("before-call.secretsmanager.*", self.calls._before_call)
            self.mock.stop()

    def _close(self) -> None:
        """Detach the credentials handler and the call counter, then close as the seams machine does."""
        self.credentials_log.removeHandler(self.credentials_handler)
        self.credentials_log.setLevel(self.credentials_level)
        if self.observer is not None:
            botocore.handlers.BUILTIN_HANDLERS.remove(self.observer)
        super()._close()

    def _read_while_building(self) -> None:
        """In the handler: read the secret after the one the scripted read asks for (by name).

        A read of a secret this very thread is fetching (the handler's own read, re-entered from
        the nested build it started, or a secret of the prefetch that is building) fails fast
        with ``SecretUnavailableError`` and counts as one miss; any other failure fails the example.
        """
        with self.lock:
            self.records += 1
        reading = self.reading
        other = NEXT[self.owner[reading[1]]] if reading is not None else SECRETS[0]
        key: ModelKey = ("stage", other, "AWSCURRENT")
        try:
            self._side_read(key, lambda: self.cache.get_secret(other))
        except SecretUnavailableError as err:
            if FETCHED_UP_THE_STACK not in str(err):
                raise
            with self.lock:
                self.tally["one"] += 1  # Store.begin counted the miss before giving up
                self.refused += 1

    @invariant()
    def the_handler_read_while_the_client_was_built(self) -> None:
        """Once the cache has made a call, it has built its client, and the handler read during the build."""
        if self.calls.total:
            assert self.records >= 1, "the cache made calls, but botocore never logged building its client"
            assert self.refused <= self.records


# A failure takes a while to shrink (each example replays against moto); let it finish and print.
@pytest.mark.unmeasured  # randomized: run unmeasured (CONTRIBUTING.md, "Coverage")
@pytest.mark.timeout(600)
class TestOwnClientSeamsAgainstModel(OwnClientMachine.TestCase):  # type: ignore[misc,valid-type]
    """A log handler reading the cache while it builds its own client keeps every promise of the seams machine."""

    # a variant of the seams machine, which runs 30 examples
    settings = machine_settings(examples=8, heavy_examples=40, steps=20, heavy_steps=30)
