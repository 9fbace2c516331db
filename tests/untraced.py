"""Other libraries' own work runs with no trace function, so coverage.py's tracer skips it.

Coverage measures ``secretcache`` only, but on Python 3.11 its tracer is called for every line
of every function a measured test runs, moto's and botocore's included: a measured test took
about twice the CPU time of an unmeasured one (CONTRIBUTING.md, "Coverage"). :data:`SPANS` lists
functions of other libraries that call no test's code and no code of ``secretcache``, except the
cache's redacting log filter when a test turns botocore's debug lines on: moto handling a
request, in-process or on its HTTP server's threads; moto starting and stopping; a botocore or
boto3 session and a client being built; pytest rewriting a test module's asserts. Each runs with
the calling thread's trace function removed, and put back as it returns, when that function is
coverage.py's: a debugger's (pdb's, an IDE's) is left in place, so its breakpoints in these
libraries still stop. A client's requests
are not among them: botocore emits events to the cache and to the tests while it builds, sends
and parses one.

Nothing measured is lost: no line or branch of the whole suite's coverage data is reached only
when everything is traced (``scripts/compare-coverage`` runs both and compares them; run it
when adding a span).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import boto3.session
import botocore.client
import botocore.session
from _pytest.assertion import rewrite
from moto.core.botocore_stubber import BotocoreStubber
from moto.core.models import MockAWS
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

F = TypeVar("F", bound=Callable[..., Any])

SPANS: tuple[tuple[object, str], ...] = (
    (BotocoreStubber, "process_request"),  # moto answering an in-process request
    (DomainDispatcherApplication, "__call__"),  # moto answering on its HTTP server's threads
    (MockAWS, "start"),  # mock_aws(): registering moto's URL patterns, resetting its backends
    (MockAWS, "stop"),
    (botocore.session.Session, "__init__"),  # a session registers botocore's built-in handlers
    (boto3.session.Session, "__init__"),
    (botocore.client.ClientCreator, "create_client"),  # its events reach neither the cache nor the tests
    (rewrite, "_rewrite_test"),  # pytest parsing, rewriting and compiling a test module
)
"""The functions run untraced, as ``(owner, attribute)``; what they share is in the module's docstring."""

_installed = False


def is_coverage(tracer: object) -> bool:
    """Whether ``tracer`` (a trace function, as ``sys.gettrace`` returns it) is coverage.py's.

    Its C tracer is a ``coverage.CTracer``; its Python tracer a method of a
    ``coverage.pytracer.PyTracer``. A debugger's trace function belongs to neither.
    """
    owner = getattr(tracer, "__self__", tracer)
    return type(owner).__module__.partition(".")[0] == "coverage"


def untraced(function: F) -> F:
    """``function``, run with this thread's trace function removed if it is coverage.py's, and put back after."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = sys.gettrace()
        if tracer is None or not is_coverage(tracer):  # none, or a debugger's: breakpoints stop inside
            return function(*args, **kwargs)
        sys.settrace(None)
        try:
            return function(*args, **kwargs)
        finally:
            sys.settrace(tracer)  # coverage.py's C tracer installs itself again at the next call

    return wrapper  # type: ignore[return-value]


def install() -> None:
    """Wrap every function of :data:`SPANS` in :func:`untraced` (once per process).

    ``tests/conftest.py`` calls it unless ``SECRETCACHE_TESTS_TRACE_ALL=1`` (``scripts/compare-coverage``).
    """
    global _installed
    if _installed:
        return
    for owner, name in SPANS:
        function = getattr(owner, name, None)
        if function is not None:  # one a library renamed is left traced; test_untraced.py names it
            setattr(owner, name, untraced(function))
    _installed = True


def is_installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return _installed
