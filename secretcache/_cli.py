"""The ``secretcache`` command: ``get``, ``describe``, ``check``, ``demo`` and ``serve``.

Output rules every command keeps: an error is one line on standard error
(``secretcache: error: ...``), never a traceback and never a secret value; the library's log
lines and Python warnings reach standard error only with ``--verbose``; ``check`` never prints a
value. The boto3 client is built here from ``--region``, ``--profile`` and ``--endpoint-url``
(each overriding its ``AWS_*`` variable, as in the AWS CLI) and handed to the cache; the cache's
settings come from the ``SECRETCACHE_*`` variables. ``check``'s probes and report live in
:mod:`secretcache._check`, the demo in :mod:`secretcache._demo` and the server in
:mod:`secretcache.serve` (imported by ``serve`` alone); none imports this module at import time.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

from secretcache._cache import DEFAULT_RETRY, SecretCache
from secretcache._check import EXIT_CODES, check_secrets, one_line, print_report
from secretcache._cli_args import parse
from secretcache._client import CONNECT_TIMEOUT, READ_TIMEOUT
from secretcache._entry import READ_FAILS
from secretcache._errors import SecretCacheError
from secretcache._output import (
    OutputError,
    QueryError,
    discard_stdout,
    flush,
    out,
    out_bytes,
    printable,
    render,
    say,
)
from secretcache._policy import RetryPolicy, settings_from_env
from secretcache._regions import env_region
from secretcache._startup import release
from secretcache._value import SecretValue

if TYPE_CHECKING:
    import argparse

    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["EXIT_CODES", "main", "make_client"]


class _CliError(Exception):
    """A failure before any secret is read (configuration); printed as one error line, exit 1."""


# -- the client and the cache -------------------------------------------------------------------


def make_client(*, region: str | None, profile: str | None, endpoint_url: str | None) -> SecretsManagerClient:
    """Build the CLI's ``secretsmanager`` client: the cache's settings, the AWS CLI's overrides.

    Botocore's retries are off (the cache's ``RetryPolicy``, from ``SECRETCACHE_RETRY_*``, is the
    one policy) and the timeouts are those of the client a cache builds for itself.

    Raises:
        botocore.exceptions.ProfileNotFound: ``profile`` (or ``AWS_PROFILE``) is not configured.
        botocore.exceptions.NoRegionError: No Region from the argument, environment or profile.
        ValueError: The endpoint URL (``endpoint_url`` or ``AWS_ENDPOINT_URL``) is invalid, its port
            out of range, say.
        OSError: A credential provider resolved at the build could not read its file or run its
            program (``credential_process``, a web identity token file).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="secretcache-cli",
    )
    # AWS_REGION wins over AWS_DEFAULT_REGION and the profile, as in the AWS CLI v2 (botocore
    # reads it only inside Lambda).
    session = boto3.session.Session(profile_name=profile, region_name=region or env_region())
    client = session.client("secretsmanager", endpoint_url=endpoint_url, config=config)
    try:  # botocore takes a port out of range and fails on the first call, with a traceback
        urlsplit(client.meta.endpoint_url).port  # noqa: B018 - reading it is the check
    except ValueError:
        client.close()
        raise
    return client


def _client(args: argparse.Namespace) -> SecretsManagerClient:
    """:func:`make_client` with its failures turned into messages that name the flags to use."""
    try:
        return make_client(region=args.region, profile=args.profile, endpoint_url=args.endpoint_url)
    except ProfileNotFound as err:
        name = err.kwargs.get("profile", args.profile)
        raise _CliError(
            f"the AWS profile {name!r} is not configured: check --profile or AWS_PROFILE, "
            "and AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE"
        ) from None
    except NoRegionError:
        raise _CliError("no AWS Region: pass --region or set AWS_REGION (or configure a profile)") from None
    except (BotoCoreError, ValueError, OSError) as err:
        # An invalid Region name or endpoint URL; a credential provider that reads a file or runs
        # a program at the build (a missing credential_process, web identity token file).
        raise _CliError(f"cannot set up the Secrets Manager client: {err}") from None


def _settings() -> dict[str, Any]:
    try:
        return settings_from_env(os.environ, "SECRETCACHE_")
    except ValueError as err:
        raise _CliError(str(err)) from None


@contextmanager
def _open(args: argparse.Namespace) -> Iterator[tuple[SecretCache, SecretsManagerClient, RetryPolicy]]:
    """A cache over the CLI's client, configured from ``SECRETCACHE_*``; both closed on exit."""
    settings = _settings()
    client = _client(args)
    try:
        try:
            cache = SecretCache(client, **settings)
        except ValueError as err:  # settings valid one by one, not together
            raise _CliError(str(err)) from None
        with cache:
            yield cache, client, settings.get("retry", DEFAULT_RETRY)
    finally:
        client.close()


# -- get and describe ---------------------------------------------------------------------------


def _document(secret: SecretValue, *, with_value: bool) -> dict[str, object]:
    document: dict[str, object] = {
        "name": secret.name,
        "arn": secret.arn,
        "version_id": secret.version_id,
        "version_stages": list(secret.version_stages),
        "created_date": secret.created_date.isoformat() if secret.created_date is not None else None,
        "value_type": "string" if secret.secret_string is not None else "binary",
    }
    if with_value and secret.secret_string is not None:
        document["secret_string"] = secret.secret_string
    elif with_value and secret.secret_binary is not None:
        document["secret_binary_base64"] = base64.b64encode(secret.secret_binary).decode("ascii")
    return document


def _read(cache: SecretCache, args: argparse.Namespace) -> SecretValue:
    return cache.get_secret(args.secret_id, version_stage=args.version_stage, version_id=args.version_id)


def _get(args: argparse.Namespace) -> int:
    with _open(args) as (cache, _, _):
        if args.key is not None:
            value = cache.get_secret_json(
                args.secret_id, args.key, version_stage=args.version_stage, version_id=args.version_id
            )
            out(value if isinstance(value, str) else json.dumps(value))
            return 0
        secret = _read(cache, args)
    if args.output == "json":
        out(render(_document(secret, with_value=True), query=args.query))
    elif args.query is not None:  # --output text: what the query selects, as text
        out(render(_document(secret, with_value=True), query=args.query, as_text=True))
    elif secret.secret_string is not None:
        out(secret.secret_string)
    elif secret.secret_binary is not None:
        out_bytes(secret.secret_binary)
    return 0


def _describe(args: argparse.Namespace) -> int:
    with _open(args) as (cache, _, _):
        secret = _read(cache, args)
    document = _document(secret, with_value=args.show_value)
    if args.output == "json" or args.query is not None:
        out(render(document, query=args.query, as_text=args.output == "text"))
        return 0
    for name, item in document.items():
        shown = " ".join(item) if isinstance(item, list) else item
        out(printable(f"{name}: {'' if shown is None else shown}"))
    return 0


def _check(args: argparse.Namespace) -> int:
    with _open(args) as (cache, client, retry):
        results, batch = check_secrets(cache, client, retry, args.secret_ids)

    def show(document: dict[str, object]) -> None:
        out(render(document, query=args.query, as_text=args.output == "text"))

    as_document = args.output == "json" or args.query is not None
    return print_report(results, batch, require_batch=args.require_batch, show=show if as_document else None)


# -- main ---------------------------------------------------------------------------------------


class _LineFormatter(logging.Formatter):
    """One terminal line per record: control characters escaped (a traceback stays as it is)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _not_the_error(record: logging.LogRecord) -> bool:
    """Leave out the warning that a read fails: its error is the command's error line (or report line)."""
    return record.msg != READ_FAILS


@contextmanager
def _output(verbose: bool) -> Iterator[None]:
    """Without ``verbose``: no log line or Python warning on stderr. With it: both, at INFO.

    Each error is shown once: the warning that a read failed is left out, as the error line or
    the report line that follows says the same.
    """
    logger = logging.getLogger("secretcache")
    with warnings.catch_warnings():
        if not verbose:
            if not sys.warnoptions:  # -W or PYTHONWARNINGS given: the user asked for them
                warnings.simplefilter("ignore")
            yield
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter("%(name)s: %(levelname)s: %(message)s"))
        handler.addFilter(_not_the_error)
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"get": _get, "describe": _describe, "check": _check}


SERVE_EXTRA = "secretcache serve needs the serve extra: pip install 'secretcache[serve]'"


def _serve(args: argparse.Namespace) -> int:
    """``serve``: check the settings, build the client, then hand over to the server (imported only now)."""
    try:
        from secretcache.serve._server import run
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] in ("uvicorn", "httptools"):
            raise _CliError(SERVE_EXTRA) from None
        raise
    from secretcache._token import ServeConfigError
    from secretcache.serve._config import load_config

    try:
        config = load_config(vars(args), os.environ)
    except ServeConfigError as err:
        raise _CliError(str(err)) from None
    client = _client(args)
    return run(config, client)


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        from secretcache._demo import run_demo

        return run_demo()
    return _COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Exit status: 0 on success, 1 when a secret cannot be read or the AWS configuration is
    unusable (one line on standard error, never a traceback or a value), 2 for usage errors (a
    ``--query`` that fails on the document too: one line, never the value),
    74 when standard output cannot be written (closed, full, an I/O error: one line on standard
    error), 130 after Ctrl-C, 141 (128 + SIGPIPE) when standard output is closed before everything was written (a pipe's
    reader exited: ``secretcache get ID | head -c1``), silently; ``check`` uses the table in
    :data:`EXIT_CODES` (highest applicable wins).
    """
    try:
        release()  # a Ctrl-C from here on closes what the command opened, then exits 130
        return _main(parse(argv))
    except KeyboardInterrupt:  # while the arguments are parsed, or the output set up or taken down
        return 130


def _main(args: argparse.Namespace) -> int:
    """Run the parsed command; each failure is its one error line and exit status (Ctrl-C: :func:`main`)."""
    if sys.stdout is None:  # started with standard output closed (`>&-`): read nothing
        say("secretcache: error: standard output is closed: there is nowhere to write to")
        return EXIT_CODES["output_failed"]
    with _output(args.verbose and args.command != "serve"):  # serve sets up its own log lines
        try:
            code = _run(args)
            flush()  # a closed pipe or a full disk fails here, not in the interpreter's flush at exit
        except (SecretCacheError, _CliError) as err:
            say(f"secretcache: error: {printable(one_line(err))}")
            return EXIT_CODES["error"]
        except QueryError as err:  # a bad --query found on the document: a usage error, as one found parsing
            say(f"secretcache: error: {printable(str(err))}")
            return EXIT_CODES["usage"]
        except OutputError as err:
            discard_stdout()
            say(f"secretcache: error: {err}")
            return EXIT_CODES["output_failed"]
        except BrokenPipeError:
            discard_stdout()
            return EXIT_CODES["broken_pipe"]
        return code
