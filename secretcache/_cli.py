"""The ``secretcache`` command: ``get``, ``describe``, ``check`` and ``demo``.

Output rules every command keeps: an error is one line on standard error
(``secretcache: error: ...``), never a traceback and never a secret value; the library's log
lines and Python warnings reach standard error only with ``--verbose``; ``check`` never prints a
value. The boto3 client is built here from ``--region``, ``--profile`` and ``--endpoint-url``
(each overriding its ``AWS_*`` variable, as in the AWS CLI) and handed to the cache; the cache's
settings come from the ``SECRETCACHE_*`` variables.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

from secretcache import __version__
from secretcache._cache import DEFAULT_RETRY, SecretCache
from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretNotFoundError,
)
from secretcache._fetcher import (
    BATCH_SIZE,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    BatchFailedError,
    BatchRefusedError,
    Fetcher,
)
from secretcache._keys import check_secret_id
from secretcache._policy import RetryPolicy, settings_from_env
from secretcache._stats import Counters
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["EXIT_CODES", "main", "make_client"]

EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "batch_refused": 3,
    "unavailable": 4,
    "not_found": 5,
    "access_denied": 6,
    "cannot_decrypt": 7,
    "invalid": 8,
}
"""Exit status per outcome; ``check`` exits with the highest that applies (docs/cli.md)."""

_CHECK_DESCRIPTION = f"""\
Read each SECRET_ID with GetSecretValue and report: ok, not found, access denied,
cannot decrypt, unavailable or invalid. Then try one BatchGetSecretValue call with the
(first {BATCH_SIZE}) valid ids and report: allowed, refused (prefetch() then reads one
secret at a time), failed (outage, throttling) or skipped. One line each; never a value.
"""

_CHECK_EPILOG = """\
exit status (the highest that applies wins, so permanent problems outrank transient ones):
  0  every secret can be read; a refused BatchGetSecretValue alone does not fail the check,
     since prefetch() then reads one secret at a time (add --require-batch to make it fail)
  1  the check could not start: unknown profile, no Region, bad SECRETCACHE_* variable
  2  usage error
  3  BatchGetSecretValue refused (only with --require-batch; every secret readable)
  4  unavailable: throttling, timeouts or connection errors outlived the retries (try again)
  5  not found
  6  access denied: IAM, resource or KMS key policy, or no usable credentials
  7  cannot decrypt: KMS refused to decrypt the secret
  8  invalid id or request: empty or too long id, secret scheduled for deletion
"""

_MAIN_EPILOG = """\
exit status: 0 on success; 1 when the command fails (one line on standard error, never a
traceback or a value); 2 for usage errors; `check` has its own table (secretcache check --help).
"""


class _CliError(Exception):
    """A failure before any secret is read (configuration); printed as one error line, exit 1."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What ``check`` found for one secret id, or for the batch call."""

    subject: str
    status: str  # a key of EXIT_CODES, or "allowed"/"refused"/"failed"/"skipped" for the batch
    detail: str | None = None
    extra: tuple[tuple[str, object], ...] = ()


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


_AWS_FLAGS = (
    ("--region", "REGION", "AWS Region; overrides AWS_REGION, AWS_DEFAULT_REGION and the profile's region"),
    ("--profile", "PROFILE", "named profile of the AWS config/credentials files; overrides AWS_PROFILE"),
    ("--endpoint-url", "URL", "Secrets Manager endpoint; overrides AWS_ENDPOINT_URL (e.g. a local emulator)"),
)


def _aws_options(parser: argparse.ArgumentParser, *, in_command: bool) -> None:
    """Options accepted before the command and after it (a subcommand's copy never resets them)."""
    group = parser.add_argument_group("AWS and output options (before or after the command)")
    for flag, metavar, text in _AWS_FLAGS:
        group.add_argument(
            flag, metavar=metavar, type=_non_empty, default=argparse.SUPPRESS if in_command else None, help=text
        )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if in_command else False,
        help="also show the library's log lines (INFO and above) and Python warnings on stderr",
    )


def _read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("secret_id", metavar="SECRET_ID", help="secret name, full ARN or partial ARN")
    parser.add_argument("--version-stage", metavar="S", help="staging label to read (default AWSCURRENT)")
    parser.add_argument("--version-id", metavar="V", help="version id to read")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secretcache",
        description=(
            "Read AWS Secrets Manager secrets through secretcache. Region, credentials and endpoint "
            "come from the usual AWS environment unless --region, --profile or --endpoint-url is "
            "given; cache settings from the SECRETCACHE_* variables."
        ),
        epilog=_MAIN_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _aws_options(parser, in_command=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = commands.add_parser(
        "get",
        help="print a secret's value (or one JSON key of it) on standard output",
        description=(
            "Print a secret's value for shell use; binary secrets are written as raw bytes. "
            "With --json, print the version as a JSON object: metadata and the value."
        ),
    )
    _read_options(get)
    shape = get.add_mutually_exclusive_group()
    shape.add_argument("--key", metavar="K", help="print this key of the secret's JSON object instead")
    shape.add_argument(
        "--json",
        action="store_true",
        help="print name, arn, version_id, version_stages, created_date and the value as JSON "
        "(secret_string, or secret_binary_base64)",
    )
    _aws_options(get, in_command=True)
    describe = commands.add_parser(
        "describe",
        help="print a secret version's metadata (the value only with --show-value)",
        description=(
            "Read a secret version (GetSecretValue, so the same permission as get) and print what "
            "the cache knows of it: name, ARN, version id, staging labels, creation date and "
            "whether the value is a string or binary. The value only with --show-value."
        ),
    )
    _read_options(describe)
    describe.add_argument("--json", action="store_true", help="print a JSON object instead of lines")
    describe.add_argument(
        "--show-value", action="store_true", help="include the value (binary as secret_binary_base64)"
    )
    _aws_options(describe, in_command=True)
    check = commands.add_parser(
        "check",
        help="say whether this identity can read each secret, and whether BatchGetSecretValue is allowed",
        description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("secret_ids", metavar="SECRET_ID", nargs="+", help="secret names, full or partial ARNs")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    check.add_argument(
        "--require-batch",
        action="store_true",
        help="fail (exit 3, or 4 when the call failed) unless BatchGetSecretValue is allowed",
    )
    _aws_options(check, in_command=True)
    commands.add_parser(
        "demo",
        help="run the whole story against an embedded local Secrets Manager (needs secretcache[demo])",
        description="Create, cache, rotate, pick up, survive an outage and report stats, all locally.",
    )
    return parser


# -- the client and the cache -------------------------------------------------------------------


def make_client(*, region: str | None, profile: str | None, endpoint_url: str | None) -> SecretsManagerClient:
    """Build the CLI's ``secretsmanager`` client: the cache's settings, the AWS CLI's overrides.

    Botocore's retries are off (the cache's ``RetryPolicy``, from ``SECRETCACHE_RETRY_*``, is the
    one policy) and the timeouts are those of the client a cache builds for itself.

    Raises:
        botocore.exceptions.ProfileNotFound: ``profile`` (or ``AWS_PROFILE``) is not configured.
        botocore.exceptions.NoRegionError: No Region from the argument, environment or profile.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="secretcache-cli",
    )
    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client("secretsmanager", endpoint_url=endpoint_url, config=config)


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
    except (BotoCoreError, ValueError) as err:  # an invalid Region name or endpoint URL
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
            print(value if isinstance(value, str) else json.dumps(value))
            return 0
        secret = _read(cache, args)
    if args.json:
        print(json.dumps(_document(secret, with_value=True), indent=2))
    elif secret.secret_string is not None:
        print(secret.secret_string)
    elif secret.secret_binary is not None:
        sys.stdout.flush()
        sys.stdout.buffer.write(secret.secret_binary)
        sys.stdout.buffer.flush()
    return 0


def _describe(args: argparse.Namespace) -> int:
    with _open(args) as (cache, _, _):
        secret = _read(cache, args)
    document = _document(secret, with_value=args.show_value)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    for name, item in document.items():
        shown = " ".join(item) if isinstance(item, list) else item
        print(f"{name}: {'' if shown is None else shown}")
    return 0


# -- check --------------------------------------------------------------------------------------

_STATUS_OF = (
    (SecretNotFoundError, "not_found"),
    (SecretAccessDeniedError, "access_denied"),
    (SecretDecryptionError, "cannot_decrypt"),
    (InvalidSecretRequestError, "invalid"),
)


def _status_of(err: SecretCacheError) -> str:
    # Anything else (SecretUnavailableError, a malformed response) is worth trying again later.
    return next((status for kind, status in _STATUS_OF if isinstance(err, kind)), "unavailable")


def _check_one(cache: SecretCache, secret_id: str) -> _Outcome:
    try:
        secret = cache.get_secret(secret_id)
    except SecretCacheError as err:
        return _Outcome(secret_id, _status_of(err), _one_line(err))
    return _Outcome(secret_id, "ok", extra=(("arn", secret.arn), ("version_id", secret.version_id)))


def _check_batch(client: SecretsManagerClient, retry: RetryPolicy, secret_ids: list[str]) -> _Outcome:
    """Try one ``BatchGetSecretValue`` call, classified as ``prefetch()`` would see it; values dropped."""
    ids = secret_ids[:BATCH_SIZE]
    extra: tuple[tuple[str, object], ...] = (("secret_ids", ids),)
    if not ids:
        return _Outcome("BatchGetSecretValue", "skipped", "no valid secret id to try it with", extra)
    try:
        values, _errors = Fetcher(client, retry, Counters()).batch_get_secret_values(ids)
    except BatchRefusedError as err:
        detail = f"{_one_line(err)}; prefetch() reads one secret at a time instead"
        return _Outcome("BatchGetSecretValue", "refused", detail, extra)
    except BatchFailedError as err:
        return _Outcome("BatchGetSecretValue", "failed", _one_line(err), extra)
    returned = len(values)
    del values  # they hold secret values: never kept, never shown
    return _Outcome("BatchGetSecretValue", "allowed", f"{returned} of {len(ids)} secret(s) returned", extra)


def _check(args: argparse.Namespace) -> int:
    secret_ids = list(dict.fromkeys(args.secret_ids))
    valid: list[str] = []
    results: list[_Outcome] = []
    with _open(args) as (cache, client, retry):
        for secret_id in secret_ids:
            try:
                valid.append(check_secret_id(secret_id))
            except InvalidSecretRequestError as err:  # refused before any call
                results.append(_Outcome(secret_id, "invalid", _one_line(err)))
                continue
            results.append(_check_one(cache, secret_id))
        batch = _check_batch(client, retry, valid)
    codes = [EXIT_CODES[outcome.status] for outcome in results]
    if args.require_batch and batch.status in ("refused", "failed"):
        codes.append(EXIT_CODES["batch_refused" if batch.status == "refused" else "unavailable"])
    code = max(codes)
    if args.json:
        print(json.dumps(_check_document(results, batch, code), indent=2))
        return code
    for outcome in [*results, batch]:
        label = outcome.status.replace("_", " ")
        print(f"{outcome.subject}: {label}" + (f": {outcome.detail}" if outcome.detail else ""))
    return code


def _check_document(results: list[_Outcome], batch: _Outcome, code: int) -> dict[str, object]:
    def entry(outcome: _Outcome, key: str) -> dict[str, object]:
        document: dict[str, object] = {key: outcome.subject, "status": outcome.status}
        if outcome.status in EXIT_CODES:
            document["exit_code"] = EXIT_CODES[outcome.status]
        document.update(outcome.extra)
        if outcome.detail is not None:
            document["error" if outcome.status not in ("allowed", "skipped") else "detail"] = outcome.detail
        return document

    return {
        "secrets": [entry(outcome, "secret_id") for outcome in results],
        "batch": entry(batch, "operation"),
        "exit_code": code,
    }


# -- main ---------------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    """The error's message on one line (messages name ids and causes, never values)."""
    return " ".join(str(err).split())


@contextmanager
def _output(verbose: bool) -> Iterator[None]:
    """Without ``verbose``: no log line or Python warning on stderr. With it: both, at INFO."""
    logger = logging.getLogger("secretcache")
    with warnings.catch_warnings():
        if not verbose:
            if not sys.warnoptions:  # -W or PYTHONWARNINGS given: the user asked for them
                warnings.simplefilter("ignore")
            yield
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"get": _get, "describe": _describe, "check": _check}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Exit status: 0 on success, 1 when a secret cannot be read or the AWS configuration is
    unusable (one line on standard error, never a traceback or a value), 2 for usage errors;
    ``check`` uses the table in :data:`EXIT_CODES` (highest applicable wins).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and (args.region or args.profile or args.endpoint_url):
        parser.error(
            "demo runs against an embedded local Secrets Manager; --region, --profile and --endpoint-url do not apply"
        )
    with _output(args.verbose):
        try:
            if args.command == "demo":
                from secretcache._demo import run_demo

                return run_demo()
            return _COMMANDS[args.command](args)
        except (SecretCacheError, _CliError) as err:
            print(f"secretcache: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_CODES["error"]
        except KeyboardInterrupt:
            return 130
