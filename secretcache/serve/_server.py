"""``secretcache serve``'s lifecycle: token, cache, prefetch, sockets, listener, metrics, uvicorn, shutdown.

:func:`run` goes through these steps in order, and undoes what it did in reverse on every path:

1. logging on standard error (one handler on the ``secretcache`` and ``uvicorn`` loggers; secret
   ids taken out of every line unless ``--log-ids``; uvicorn's access log never on: its lines
   hold the query, hence the secret id);
2. the SSRF token (missing: one error line naming the variables, exit 1; ``--no-token``: a WARNING);
3. the sockets, bound but not listening (a port in use fails here, before any AWS call);
4. the cache, then the prefetch list (``BatchGetSecretValue``), so readiness (the port accepting
   connections) comes only once the list is loaded; failures are a WARNING and the server starts;
5. the SQS listener and the metrics endpoint, if asked for;
6. uvicorn on the pre-bound sockets in this thread's event loop; then ONE INFO line naming the
   addresses, Region and TTL, and ``READY=1`` to systemd when ``NOTIFY_SOCKET`` is set;
7. SIGTERM or SIGINT: the sockets stop accepting, in-flight requests finish (at most
   :data:`GRACE` seconds, then they are cancelled), and the process exits 0. A second SIGINT
   cancels at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn

from secretcache._cache import SecretCache
from secretcache._events import shown
from secretcache._output import printable, say
from secretcache._token import TokenError, read_token
from secretcache.serve._app import AgentApp, LimitedHttpToolsProtocol
from secretcache.serve._config import DEFAULT_BINDS, ServeConfig
from secretcache.serve._protocol import Answerer

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["GRACE", "run"]

logger = logging.getLogger("secretcache.serve")

GRACE = 2.0
"""Seconds in-flight requests get to finish after SIGTERM or SIGINT."""

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_HIDDEN = "<secret id>"


class _StartupError(Exception):
    """A step before serving failed; the message is the one error line (never a token or a value)."""


class _IdFilter(logging.Filter):
    """Takes the secret id out of each record that names one (``secret_name``), unless ids may be logged.

    The library puts the id a record is about in its ``secret_name`` field; the formatted message
    is rebuilt with every spelling of that id (as is, its ``repr``, truncated) replaced.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drop it."""
        secret_id = getattr(record, "secret_name", None)
        if isinstance(secret_id, str) and secret_id:
            message = record.getMessage()
            for spelling in (shown(secret_id), repr(secret_id), secret_id):
                message = message.replace(spelling, _HIDDEN)
            record.msg, record.args = message, None
            record.secret_name = _HIDDEN
        return True


class _LineFormatter(logging.Formatter):
    """One terminal line per record: control characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The formatted line, printable."""
        return printable(super().formatMessage(record))


@contextmanager
def _logging(config: ServeConfig) -> Iterator[None]:
    """Log the ``secretcache`` and ``uvicorn`` loggers to standard error at ``config.log_level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not config.log_ids:
        handler.addFilter(_IdFilter())
    level = _LEVELS[config.log_level]
    saved = []
    for name, wanted in (("secretcache", level), ("uvicorn", max(level, logging.WARNING) if level > 10 else level)):
        target = logging.getLogger(name)
        saved.append((target, target.level, target.propagate))
        target.addHandler(handler)
        target.setLevel(wanted)
        target.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # its lines hold the query string, hence secret ids
    try:
        yield
    finally:
        for target, old_level, propagate in saved:
            target.removeHandler(handler)
            target.setLevel(old_level)
            target.propagate = propagate


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _bind(config: ServeConfig) -> list[socket.socket]:
    """Bound, not yet listening, sockets for every address (port 0: the first one's free port on all)."""
    binds = list(config.binds)
    if not config.binds_given and binds == list(DEFAULT_BINDS) and not _has_ipv6():
        logger.debug("this host has no IPv6: not binding ::1")
        binds.remove("::1")
    sockets: list[socket.socket] = []
    port = config.port
    try:
        for address in binds:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            # IPPROTO_TCP, as asyncio's own create_server passes it: only then does asyncio set
            # TCP_NODELAY on each accepted connection. Without it a keep-alive request waits
            # for the client's delayed ACK between the response's head and body (about 40 ms).
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.set_inheritable(False)
            try:
                sock.bind((address, port))
            except OSError as err:
                shown_address = f"[{address}]" if family == socket.AF_INET6 else address
                raise _StartupError(f"cannot listen on {shown_address}:{port}: {err.strerror or err}") from None
            port = sock.getsockname()[1]
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _where(sockets: list[socket.socket]) -> str:
    names = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        names.append(f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}")
    return ", ".join(names)


def _prefetch(cache: SecretCache, config: ServeConfig) -> None:
    """Load the prefetch list; failures are one WARNING (ids only with ``--log-ids``) and never stop the start."""
    if not config.prefetch:
        return
    try:
        failed = cache.prefetch(config.prefetch)
    except Exception as err:  # an id refused before any call, or the cache closed under us
        logger.warning("prefetch of %d secrets failed (%s); starting anyway", len(config.prefetch), type(err).__name__)
        return
    if not failed:
        logger.debug("prefetched %d secrets", len(config.prefetch))
    elif config.log_ids:
        details = ", ".join(f"{shown(secret_id)} ({type(err).__name__})" for secret_id, err in failed.items())
        logger.warning("prefetch: %d of %d secrets not loaded: %s", len(failed), len(config.prefetch), details)
    else:
        kinds = sorted({type(err).__name__ for err in failed.values()})
        logger.warning(
            "prefetch: %d of %d secrets not loaded (%s; --log-ids names them)",
            len(failed),
            len(config.prefetch),
            ", ".join(kinds),
        )


def _start_listener(cache: SecretCache, config: ServeConfig, stack: ExitStack) -> None:
    if config.sqs_queue_url is None:
        return
    import boto3

    from secretcache._regions import env_region
    from secretcache.events import SqsInvalidationListener

    session = boto3.session.Session(profile_name=config.profile, region_name=config.region or env_region())
    sqs = session.client("sqs")  # its endpoint from AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, as boto3 reads them
    stack.callback(sqs.close)
    listener = SqsInvalidationListener(cache, config.sqs_queue_url, client=sqs)
    listener.start()
    stack.callback(listener.stop)


def _start_metrics(cache: SecretCache, config: ServeConfig, stack: ExitStack) -> None:
    if config.metrics_port is None:
        return
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server

        from secretcache.otel import instrument
    except ImportError:
        raise _StartupError(
            "--metrics-port needs the prometheus extra: pip install 'secretcache[serve,prometheus]'"
        ) from None
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    stack.callback(provider.shutdown)
    stack.callback(instrument(cache, meter_provider=provider))
    try:
        server, thread = start_http_server(config.metrics_port, addr="127.0.0.1")
    except OSError as err:
        raise _StartupError(f"cannot serve metrics on 127.0.0.1:{config.metrics_port}: {err.strerror or err}") from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stack.callback(stop)


def _notify_systemd() -> None:
    """Send ``READY=1`` to systemd's ``NOTIFY_SOCKET``, if set (``Type=notify`` units)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(b"READY=1")
    except OSError as err:
        logger.warning("could not notify systemd (NOTIFY_SOCKET): %s", type(err).__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to :func:`_serve` (uvicorn's own handling re-raises them after shutdown)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the caller owns SIGTERM and SIGINT."""
        yield


async def _serve(server: _Server, sockets: list[socket.socket], started: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)
        await server.startup(sockets=sockets)
        if server.should_exit:
            return
        started()
        await server.main_loop()
        await server.shutdown(sockets=sockets)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _region(cache: SecretCache) -> str:
    try:
        return str(cache.client.meta.region_name or "unknown")
    except Exception:  # only a label for the start line
        return "unknown"


def run(config: ServeConfig, client: SecretsManagerClient | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; return the exit status (0, or 1 after one error line).

    Args:
        config: The settings (see :mod:`secretcache.serve._config`).
        client: The Secrets Manager client (built from ``config``'s Region, profile and
            endpoint when ``None``). Closed on return.
    """
    with _logging(config):
        try:
            return _run(config, client)
        except _StartupError as err:
            say(f"secretcache: error: {printable(str(err))}")
            return 1


def _run(config: ServeConfig, client: SecretsManagerClient | None) -> int:
    token: str | None = None
    if config.no_token:
        logger.warning("secretcache serve: --no-token: any local process may read every secret (for tests only)")
    else:
        try:
            token = read_token().value
        except TokenError as err:
            raise _StartupError(str(err)) from None
    with ExitStack() as stack:
        sockets = _bind(config)
        for sock in sockets:
            stack.callback(sock.close)
        if client is None:
            from secretcache._cli import make_client

            client = make_client(region=config.region, profile=config.profile, endpoint_url=config.endpoint_url)
        stack.callback(client.close)
        try:
            cache = SecretCache(client, **config.cache_settings)
        except (TypeError, ValueError) as err:
            raise _StartupError(str(err)) from None
        stack.callback(cache.close)
        _prefetch(cache, config)
        _start_listener(cache, config, stack)
        _start_metrics(cache, config, stack)
        answerer = Answerer(cache, token=token, refresh_interval=config.refresh_interval)
        uvicorn_config = uvicorn.Config(
            AgentApp(answerer, max_conn=config.max_conn),
            http=LimitedHttpToolsProtocol,
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=int(GRACE),
            ws="none",
        )
        server = _Server(uvicorn_config)
        settings: dict[str, Any] = dict(config.cache_settings)
        ttl = settings.get("ttl", 300.0)

        def started() -> None:
            logger.info("secretcache serve listening on %s (Region %s, TTL %g s)", _where(sockets), _region(cache), ttl)
            _notify_systemd()

        asyncio.run(_serve(server, sockets, started))
        logger.debug("secretcache serve stopped")
    return 0
