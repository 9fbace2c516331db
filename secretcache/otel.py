"""OpenTelemetry metrics and traces for a cache: ``instrument(cache)``.

Install the extra (``pip install 'secretcache[otel]'``, which needs ``opentelemetry-api`` only)
and configure the OpenTelemetry SDK as usual; then::

    from secretcache.otel import instrument

    uninstrument = instrument(cache)  # the global meter and tracer providers
    ...
    uninstrument()  # stops all recording

Metrics are read from the cache's own counters when the SDK collects them (observable
instruments), so a cache hit records nothing and costs nothing extra. The one synchronous
instrument is the fetch-duration histogram, recorded once per fetch. Each fetch (one Secrets
Manager request with its retries) is a ``secretcache.fetch`` span: a child of the caller's span
when a read waits for it, a trace of its own (linked to the span whose read triggered it) when it
runs in the background. botocore's spans, if you also instrument botocore, nest under it.

Secret names appear as attributes only with ``secret_names=True``; secret values never appear,
whatever the options. Exceptions are not recorded as span events (their messages name the
secret): a failed fetch sets the span status to ERROR and ``error.type`` to a short code. The
metric names, attributes and recommended alerts are in ``docs/monitoring.md``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

from secretcache import __version__
from secretcache._aio import AsyncSecretCache
from secretcache._cache import SecretCache, store_of
from secretcache._logs import error_type, facts

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
except ImportError as err:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("secretcache.otel needs opentelemetry-api: pip install 'secretcache[otel]'") from err
try:  # what the global meter provider is until one is set; private, so tolerate its absence
    from opentelemetry.metrics._internal import _ProxyMeterProvider
except ImportError:  # pragma: no cover - an opentelemetry-api that moved it

    class _ProxyMeterProvider:  # type: ignore[no-redef]
        """Stands for a proxy class this opentelemetry-api does not have: nothing is one."""


if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from secretcache._observe import Fetch

__all__ = ["instrument"]

logger = logging.getLogger("secretcache.otel")

SCOPE = "secretcache"
"""The instrumentation scope (meter and tracer name)."""

# Seconds, for calls that take milliseconds but may retry for seconds (the SDK's default
# boundaries are for milliseconds).
_INSTRUMENTED = "this cache is instrumented already; call the function instrument() returned first"

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0)


def instrument(
    cache: SecretCache | AsyncSecretCache,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    secret_names: bool = False,
) -> Callable[[], None]:
    """Export ``cache``'s metrics and trace its fetches; return the function that stops it.

    Args:
        cache: A :class:`~secretcache.SecretCache` or :class:`~secretcache.AsyncSecretCache`.
        meter_provider: Where metrics go; the global meter provider by default.
        tracer_provider: Where spans go; the global tracer provider by default.
        secret_names: Add the secret id as the application asked for it
            (``secretcache.secret.name``) to spans and fetch-duration samples. Off by default:
            a secret's name can tell an attacker what to look for.

    Returns:
        A function that removes the instrumentation (idempotent): the counters keep the cache's
        counts as they are then (so no counter goes down) and count nothing more of it, its
        entries leave the gauge, and fetches record nothing more, not even one in flight (its span
        is dropped unended, so never exported). It returns once nothing more of the cache will
        be recorded: a fetch already recording its end (its span processors included) finishes
        first, unless it is the caller's own thread. Instrumenting again later works: its live
        counts then replace the kept ones.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: The cache is instrumented already (remove that first).
        RuntimeError: The cache is closed.
    """
    target = cache.cache if isinstance(cache, AsyncSecretCache) else cache
    if not isinstance(target, SecretCache):
        raise TypeError(f"instrument() takes a SecretCache or AsyncSecretCache, not {type(cache).__name__}")
    if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
        raise TypeError(f"meter_provider must be a MeterProvider, not {type(meter_provider).__name__}")
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(f"tracer_provider must be a TracerProvider, not {type(tracer_provider).__name__}")
    if not isinstance(secret_names, bool):
        raise TypeError(f"secret_names must be a bool, not {type(secret_names).__name__}")
    store = store_of(target)
    if store.closed:
        raise RuntimeError("this SecretCache is closed")
    if store.observer is not None:  # early, before any work; checked again under the lock
        raise ValueError(_INSTRUMENTED)
    meters = meter_provider or metrics.get_meter_provider()
    instruments = _Instruments.of(meters)
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE, __version__)
    observer = _Observer(tracer, instruments, target.clock, secret_names)
    with _MEMBERS_LOCK:  # check and claim in one step: of threads instrumenting one cache, one wins
        if store.observer is not None:
            raise ValueError(_INSTRUMENTED)
        _join(target, meters)
        store.observer = observer

    def uninstrument() -> None:
        """Stop recording ``cache``'s metrics and spans (idempotent); return once nothing more is recorded."""
        observer.stop()  # first: a fetch in flight now records nothing when it ends
        with _MEMBERS_LOCK:
            if store.observer is observer:  # the first call
                _leave(target)
                store.observer = None

    return uninstrument


class _Instruments:
    """The instruments made with one meter provider; each reports every cache that reaches its SDK.

    OpenTelemetry's SDK keeps the first instrument registered under a name in a meter and drops
    the callbacks of later ones. Instruments made through the API's proxy provider (the global
    one before the application sets its SDK provider) become the SDK's once it is set, so two sets
    can land in one SDK meter, and only the first set's callbacks run. Every set's callbacks
    therefore report all the caches whose provider resolves, at collection time, to the provider
    their own set resolves to: whichever set the SDK kept, the sum is every cache's.
    """

    @classmethod
    def of(cls, provider: metrics.MeterProvider) -> _Instruments:
        """The instruments of ``provider`` (resolved through the global proxy), created on first use."""
        provider = _resolved(provider)
        with _REGISTRY_LOCK:
            found = _REGISTRY.get(provider)
            if found is None:
                found = _REGISTRY[provider] = cls(provider)
            return found

    def __init__(self, provider: metrics.MeterProvider) -> None:
        self._provider = weakref.ref(provider)  # a strong one would keep the registry's weak key alive
        meter = provider.get_meter(SCOPE, __version__)
        observed = (
            ("secretcache.reads", self._reads, "{read}", "Reads, by what they returned."),
            ("secretcache.api_calls", self._api_calls, "{call}", "Secrets Manager calls, retries included."),
            ("secretcache.evictions", self._evictions, "{entry}", "Entries evicted to stay within max_size."),
            ("secretcache.stale_served", self._stale_served, "{read}", "Reads answered with a value past its TTL."),
            ("secretcache.changes", self._changes, "{version}", "New secret versions seen."),
            ("secretcache.failovers", self._failovers, "{fetch}", "Fetches answered by a replica Region."),
        )
        for name, callback, unit, description in observed:
            meter.create_observable_counter(name, [callback], unit=unit, description=description)
        meter.create_observable_gauge(
            "secretcache.entries", [self._entries], unit="{entry}", description="Entries held by the cache."
        )
        self.duration = meter.create_histogram(
            "secretcache.fetch.duration",
            unit="s",
            description="Time a fetch took, retries included.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )

    def _counted(self, name: str) -> Iterable[Observation]:
        """The counter ``name``: every instrumented cache's count now, plus the retired ones' last.

        Read under the members' lock, so an ``uninstrument()`` moves a cache's counts from live to
        retired entirely before or entirely after this read: the sum never goes down.
        """
        provider = self._provider()
        if provider is None:
            return ()
        target = _resolved(provider)
        totals: Counter[_Series] = Counter()
        found = False
        with _MEMBERS_LOCK:
            _retire_closed()
            for source, retired in _RETIRED.items():
                if _resolved(source) is target:
                    totals.update(retired)
                    found = True
            for cache, source in _MEMBERS:
                if _resolved(source) is target:
                    totals.update(_counts(cache))
                    found = True
        return (
            [Observation(count, dict(attributes)) for (metric, attributes), count in totals.items() if metric == name]
            if found
            else ()
        )

    # -- callbacks, run by the SDK at collection time ------------------------------------------------

    def _reads(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._counted("secretcache.reads")

    def _api_calls(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._counted("secretcache.api_calls")

    def _evictions(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._counted("secretcache.evictions")

    def _stale_served(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._counted("secretcache.stale_served")

    def _changes(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._counted("secretcache.changes")

    def _failovers(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._counted("secretcache.failovers")

    def _entries(self, options: CallbackOptions) -> Iterable[Observation]:
        """The gauge: the entries of the caches instrumented now (a retired cache's leave it)."""
        provider = self._provider()
        if provider is None:
            return ()
        target = _resolved(provider)
        caches = [cache for cache, source in _MEMBERS if _resolved(source) is target]
        return [Observation(sum(store_of(cache).hits_size_flying()[1] for cache in caches))] if caches else ()


_Series: TypeAlias = tuple[str, tuple[tuple[str, "AttributeValue"], ...]]
"""A counter's data point: the metric's name and the point's attributes."""


def _counts(cache: SecretCache) -> Counter[_Series]:
    """Every counter of ``cache`` now, by metric and attributes (what the observable counters report)."""
    store = store_of(cache)
    stats = cache.stats()
    counts: Counter[_Series] = Counter()
    for result, count in store.counters.reads(stats.hits).items():
        counts["secretcache.reads", (("secretcache.result", result),)] = count
    ok, errors = store.counters.api_outcomes()
    for operation, count in ok.items():
        counts["secretcache.api_calls", (("aws.operation", operation), ("secretcache.outcome", "ok"))] += count
    for (operation, kind), count in errors.items():
        attributes = (("aws.operation", operation), ("secretcache.outcome", "error"), ("error.type", kind))
        counts["secretcache.api_calls", attributes] += count
    counts["secretcache.evictions", ()] = stats.evictions
    counts["secretcache.stale_served", ()] = stats.stale_served
    counts["secretcache.changes", ()] = stats.changes
    counts["secretcache.failovers", ()] = stats.failovers
    return counts


_REGISTRY: weakref.WeakKeyDictionary[metrics.MeterProvider, _Instruments] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()
_MEMBERS_LOCK = threading.Lock()
"""Guards ``_MEMBERS``, ``_RETIRED``, ``_SHARES`` and each store's ``observer`` as instrument() sets it.

Held for dict and attribute work and reading the caches' counters only, never while calling into
OpenTelemetry: the SDK holds its own lock while it runs the callbacks, which take this one.
"""
_MEMBERS: tuple[tuple[SecretCache, metrics.MeterProvider], ...] = ()
"""Every instrumented cache with the provider it was instrumented with; replaced, never mutated."""
_RETIRED: weakref.WeakKeyDictionary[metrics.MeterProvider, Counter[_Series]] = weakref.WeakKeyDictionary()
"""By provider: the counts, at uninstrument(), of the caches no longer instrumented with it.

The counters keep reporting them, so removing a cache never makes a sum go down (a monotonic
counter that drops reads as a reset in Prometheus and as a negative delta).
"""
_SHARES: weakref.WeakKeyDictionary[SecretCache, list[tuple[metrics.MeterProvider, Counter[_Series]]]] = (
    weakref.WeakKeyDictionary()
)
"""Each retired cache's parts of ``_RETIRED``, one per provider it was retired from.

A part is taken back out when the cache is instrumented again with that provider; the parts of
other providers stay (instrumented with P, then Q, then P again, P's part must not be counted
beside its live counts, and Q keeps its own).
"""


def _join(cache: SecretCache, provider: metrics.MeterProvider) -> None:
    """Count ``cache`` with ``provider``'s metrics (under ``_MEMBERS_LOCK``).

    If the cache was retired from the same metrics, its retired counts make way for its live ones,
    which are at least as large.
    """
    global _MEMBERS
    _retire_closed()
    target = _resolved(provider)
    kept = []
    for source, counts in _SHARES.pop(cache, []):
        if _resolved(source) is not target:
            kept.append((source, counts))
            continue
        retired = _RETIRED.get(source)
        if retired is not None:
            retired.subtract(counts)
    if kept:
        _SHARES[cache] = kept
    _MEMBERS = (*_MEMBERS, (cache, provider))


def _leave(cache: SecretCache) -> None:
    """Stop counting ``cache`` live; its counts now stay in the sums as they are (under ``_MEMBERS_LOCK``)."""
    global _MEMBERS
    for member, source in _MEMBERS:
        if member is cache:
            last = _counts(cache)
            _RETIRED.setdefault(source, Counter()).update(last)
            _SHARES.setdefault(cache, []).append((source, last))
    _MEMBERS = tuple(member for member in _MEMBERS if member[0] is not cache)


def _retire_closed() -> None:
    """Retire the closed caches still instrumented, as :func:`_leave` does (under ``_MEMBERS_LOCK``).

    A closed cache holds no entry and starts no fetch, so its counts stay in the sums as they are
    at that collection (a fetch still finishing then, started before ``close()``, is not
    exported: there is no later moment to stop counting at); kept as a member, it would stay
    alive for as long as the process (nothing else removes it unless ``uninstrument()`` is called).
    """
    for member, _ in _MEMBERS:
        if store_of(member).closed:
            _leave(member)


def _resolved(provider: metrics.MeterProvider) -> metrics.MeterProvider:
    """The provider that collects what is recorded through ``provider``.

    The API's proxy provider (what the global provider is until the application sets one)
    forwards to whatever is set globally later; any other provider is its own.
    """
    if isinstance(provider, _ProxyMeterProvider):
        return metrics.get_meter_provider()
    return provider


class _Observer:
    """Wraps each fetch of one cache in a span and records its duration (:class:`secretcache._observe.Observer`).

    Once :meth:`stop` is called (``uninstrument()``), it starts no span, and a fetch in flight
    ends without recording its duration or ending its span: an unended span is never exported.
    The caller's context is restored all the same.

    A fetch that ends decides whether to record, and says it is recording, in one step under
    ``_state``; :meth:`stop` sets ``_stopped`` under it and then waits until no other thread is
    recording. So when ``stop()`` returns, every fetch has either recorded everything or will
    record nothing. No lock is held while recording (the SDK runs span processors and exporters
    then): ``stop()`` waits on a condition, which releases the lock.
    """

    def __init__(
        self, tracer: trace.Tracer, instruments: _Instruments, clock: Callable[[], float], secret_names: bool
    ) -> None:
        self._tracer = tracer
        self._instruments = instruments
        self._clock = clock
        self._secret_names = secret_names
        self._state = threading.Condition(threading.Lock())
        self._stopped = False
        self._recording: Counter[int] = Counter()  # thread ident -> fetch ends it is recording now

    def stop(self) -> None:
        """Record nothing more; return once no other thread is recording a fetch's end. Idempotent.

        A thread recording a fetch's end (a span processor calling ``uninstrument()``) is not
        waited for: it would wait for itself.
        """
        me = threading.get_ident()
        with self._state:
            self._stopped = True
            self._state.wait_for(lambda: all(ident == me for ident in self._recording))

    def origin(self) -> object:
        """The span whose read queued a background refresh, to link the refresh's span to."""
        span_context = trace.get_current_span().get_span_context()
        return span_context if span_context.is_valid else None

    @contextmanager
    def observe(self, fetch: Fetch) -> Iterator[None]:
        """Around one fetch: a current span, then a duration sample. Never lets telemetry fail a fetch."""
        started = self._clock()
        span, token = self._start(fetch)
        failure: str | None = None
        try:
            yield
        except BaseException as err:
            failure = error_type(err)
            raise
        finally:
            self._finish(fetch, span, token, self._clock() - started, failure)

    def _start(self, fetch: Fetch) -> tuple[trace.Span | None, Token[Context] | None]:
        """Start the fetch's span and make it current; ``(None, None)`` if stopped or the SDK fails."""
        if self._stopped:  # read without the lock: a span started just after stop() is dropped by _finish
            return None, None
        attributes: dict[str, AttributeValue] = {"aws.operation": fetch.operation, "secretcache.refresh": fetch.refresh}
        if fetch.version_stage is not None:
            attributes["secretcache.version_stage"] = fetch.version_stage
        if self._secret_names:
            if _batch(fetch):  # a list, however many secrets the batch holds
                attributes["secretcache.secret.names"] = list(fetch.secret_ids)
            else:
                attributes["secretcache.secret.name"] = fetch.secret_ids[0]
        links: list[Link] = []
        parent = None
        if fetch.refresh == "background":  # not on the reader's path: a trace of its own
            parent = context.Context()
            if isinstance(fetch.origin, SpanContext):
                links.append(Link(fetch.origin))
        try:
            span = self._tracer.start_span(
                "secretcache.fetch", context=parent, kind=SpanKind.INTERNAL, attributes=attributes, links=links
            )
            return span, context.attach(trace.set_span_in_context(span))
        except Exception as err:  # a span processor failing must not fail the fetch
            _failed("start a span", err)
            return None, None

    def _finish(
        self, fetch: Fetch, span: trace.Span | None, token: Token[Context] | None, seconds: float, failure: str | None
    ) -> None:
        """Record the duration, restore the caller's context, end the span: each whatever the others raise.

        Records nothing once stopped, decided in one step with :meth:`stop` (see the class).
        """
        me = threading.get_ident()
        recording = False
        try:
            with self._state:
                if not self._stopped:
                    self._recording[me] += 1
                    recording = True
            if not recording:  # uninstrumented during the fetch: only the context is restored
                if token is not None:
                    _detach(token)
                return
            try:
                self._record(fetch, seconds, failure)  # while the fetch's span is current: an exemplar points at it
            finally:
                try:
                    if token is not None:
                        _detach(token)
                finally:
                    if span is not None:
                        _end(span, fetch, failure)
        finally:
            if recording:
                with self._state:
                    self._recording[me] -= 1
                    if not self._recording[me]:
                        del self._recording[me]
                    self._state.notify_all()

    def _record(self, fetch: Fetch, seconds: float, failure: str | None) -> None:
        try:
            sample: dict[str, AttributeValue] = {
                "aws.operation": fetch.operation,
                "secretcache.outcome": "ok" if failure is None else "error",
                "secretcache.refresh": fetch.refresh,
            }
            if failure is not None:
                sample["error.type"] = failure
            if fetch.replica is not None:
                sample["secretcache.replica.region"] = fetch.replica
            if self._secret_names and not _batch(fetch):
                sample["secretcache.secret.name"] = fetch.secret_ids[0]
            self._instruments.duration.record(max(0.0, seconds), sample)
        except Exception as err:
            _failed("record a fetch's duration", err)


def _batch(fetch: Fetch) -> bool:
    """Whether ``fetch`` is a ``BatchGetSecretValue`` call (its span names its secrets as a list, its duration none)."""
    return fetch.operation == "BatchGetSecretValue"


def _detach(token: Token[Context]) -> None:
    try:
        context.detach(token)
    except Exception as err:  # the API logs and swallows its own failures; this is for a broken one
        _failed("restore the caller's context", err)


def _end(span: trace.Span, fetch: Fetch, failure: str | None) -> None:
    """End ``span`` with its status and ``error.type`` on failure (never the exception), whatever raises."""
    try:
        span.set_attribute("secretcache.attempts", fetch.attempts)
        if fetch.replica is not None:
            span.set_attribute("secretcache.replica.region", fetch.replica)
        if failure is not None:
            span.set_attribute("error.type", failure)
            span.set_status(Status(StatusCode.ERROR, failure))  # the code only: a message names the secret
    except Exception as err:
        _failed("describe a fetch's span", err)
    finally:
        try:
            span.end()
        except Exception as err:
            _failed("end a fetch's span", err)


def _failed(what: str, error: Exception) -> None:
    logger.warning("OpenTelemetry failed to %s: %s", what, type(error).__name__, extra=facts("otel", error=error))
