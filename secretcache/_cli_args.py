"""The ``secretcache`` command line: its parser, and the checks argparse cannot express.

:func:`parse` returns a namespace every command reads the same way: ``secret_id`` (``get``,
``describe``) or ``secret_ids`` (``check``) from the positional argument or ``--secret-id`` (as
``aws secretsmanager get-secret-value`` spells it); ``output`` (``"text"`` or ``"json"``, ``--json``
being ``--output json``); ``query``, a compiled JMESPath expression or ``None``. A usage error,
an unknown option included, prints the usage of the command it was given to and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from secretcache import __version__
from secretcache._check import CHECK_DESCRIPTION, CHECK_EPILOG, EXIT_CODES
from secretcache._output import OutputError, discard_stdout, flush, out, say, shown_id

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["parse"]

_MAIN_EPILOG = """\
exit status: 0 on success; 1 when the command fails (one line on standard error, never a
traceback or a value); 2 for usage errors; 74 when standard output cannot be written (closed,
full); 130 after Ctrl-C; 141 when a pipe's reader exits before everything was written (e.g.
piped into head); `check` has its own table (secretcache check --help).
"""

_AWS_FLAGS = (
    ("--region", "REGION", "AWS Region; overrides AWS_REGION, AWS_DEFAULT_REGION and the profile's region"),
    ("--profile", "PROFILE", "named profile of the AWS config/credentials files; overrides AWS_PROFILE"),
    ("--endpoint-url", "URL", "Secrets Manager endpoint; overrides AWS_ENDPOINT_URL (e.g. a local emulator)"),
)


def _print_or_exit(text: str) -> None:
    """Print ``--help`` or ``--version`` text; a failure to write is one error line and exit 74 (or 141).

    argparse itself ignores a failed write, and the text would be lost with status 0.
    """
    try:
        out(text.rstrip("\n"))
        flush()
    except OutputError as err:
        discard_stdout()
        say(f"secretcache: error: {err}")
        raise SystemExit(EXIT_CODES["output_failed"]) from None
    except BrokenPipeError:
        discard_stdout()
        raise SystemExit(EXIT_CODES["broken_pipe"]) from None


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose help goes through :func:`_print_or_exit` (its subparsers too)."""

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        """Print the help on standard output (or ``file``)."""
        if file is None or file is sys.stdout:
            _print_or_exit(self.format_help())
        else:
            super().print_help(file)


class _Version(argparse.Action):
    """``--version``: print the version through :func:`_print_or_exit`, then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        _print_or_exit(f"secretcache {__version__}")
        parser.exit()


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _jmespath(text: str) -> Any:
    """A compiled JMESPath expression (jmespath comes with botocore), or a usage error naming the problem."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(text)
    except JMESPathError as err:
        raise argparse.ArgumentTypeError(f"not a JMESPath expression: {' '.join(str(err).split())}") from None


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


def _output_options(parser: argparse.ArgumentParser, json_help: str) -> None:
    parser.add_argument("--json", action="store_true", help=json_help + " (the same as --output json)")
    parser.add_argument(
        "--output", choices=("text", "json"), help="text (the default) or json, as in the AWS CLI; with --query: json"
    )
    parser.add_argument(
        "--query",
        metavar="JMESPATH",
        type=_jmespath,
        help="print what this JMESPath expression selects from the JSON document (as in the AWS CLI)",
    )


def _read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("secret_id", metavar="SECRET_ID", nargs="?", help="secret name, full ARN or partial ARN")
    parser.add_argument("--secret-id", dest="secret_id_option", metavar="ID", help="the same, as the AWS CLI spells it")
    parser.add_argument("--version-stage", metavar="S", help="staging label to read (default AWSCURRENT)")
    parser.add_argument("--version-id", metavar="V", help="version id to read")


SERVE_DESCRIPTION = """\
Serve the secrets of this host's processes from one cache, over HTTP on loopback, with the AWS
Secrets Manager Agent's protocol: GET /secretsmanager/get?secretId=ID (or /v1/ID) with the token
in X-Aws-Parameters-Secrets-Token; GET /ping needs no token. The token is the value of the first
set of AWS_TOKEN, AWS_SESSION_TOKEN, AWS_CONTAINER_AUTHORIZATION_TOKEN (file://PATH: read from
PATH). Stops on SIGTERM or SIGINT once in-flight requests are answered (at most 2 s).
"""

SERVE_EPILOG = """\
every option can also be set by the variable named in its help; the option wins. Cache settings
not listed (TTL_OVERRIDES, RETRY_*, ...) come from their SECRETCACHE_* variables, as for every
command. Exit status: 0 after SIGTERM or SIGINT; 1 when it cannot start (one line on standard
error: no token, an address in use, a bad setting); 2 for usage errors.
"""


def _serve_options(parser: argparse.ArgumentParser) -> None:
    """The flags of ``serve``; each defaults to ``None`` so that its variable can stand in."""
    add = parser.add_argument
    add("--port", metavar="N", help="TCP port (SECRETCACHE_SERVE_PORT; default 2773, 0 for any free port)")
    add(
        "--bind",
        metavar="ADDR",
        action="append",
        help="IP address to listen on, repeatable (SECRETCACHE_SERVE_BIND, comma-separated; "
        "default 127.0.0.1 and ::1); a non-loopback address needs --allow-remote",
    )
    add(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow non-loopback --bind addresses; the token is then the only defence "
        "(SECRETCACHE_SERVE_ALLOW_REMOTE=1)",
    )
    add("--no-token", action="store_true", help="accept requests without a token: for tests only (no variable)")
    add(
        "--max-conn",
        metavar="N",
        help="open connections served at once; a request on one more gets 429 (SECRETCACHE_SERVE_MAX_CONN; 800)",
    )
    add(
        "--refresh-interval",
        metavar="S",
        help="least seconds between two forced refreshes (refreshNow=true) of one secret "
        "(SECRETCACHE_SERVE_REFRESH_INTERVAL; 1.0)",
    )
    add(
        "--prefetch",
        metavar="ID",
        action="append",
        help="secret loaded with BatchGetSecretValue before the server listens, repeatable "
        "(SECRETCACHE_SERVE_PREFETCH, comma-separated)",
    )
    add(
        "--sqs-queue-url",
        metavar="URL",
        help="SQS queue of Secrets Manager change events; each one invalidates its secret "
        "(SECRETCACHE_SERVE_SQS_QUEUE_URL; the SQS endpoint from AWS_ENDPOINT_URL_SQS)",
    )
    add(
        "--metrics-port",
        metavar="N",
        help="serve Prometheus metrics on 127.0.0.1:N/metrics (SECRETCACHE_SERVE_METRICS_PORT; "
        "needs pip install 'secretcache[serve,prometheus]')",
    )
    add(
        "--log-ids",
        action="store_true",
        default=None,
        help="let secret ids appear in log lines (SECRETCACHE_SERVE_LOG_IDS=1; default: never)",
    )
    add(
        "--log-level",
        metavar="LEVEL",
        help="debug, info, warning or error (SECRETCACHE_SERVE_LOG_LEVEL; info)",
    )
    add("--ttl", metavar="S", help="seconds a secret is served from the cache (SECRETCACHE_TTL; 300)")
    add("--max-size", metavar="N", help="most secret versions kept (SECRETCACHE_MAX_SIZE; 1024)")
    add(
        "--refresh-ahead",
        metavar="F",
        help="fraction of the TTL after which a read refreshes in the background, or off "
        "(SECRETCACHE_REFRESH_AHEAD; 0.8)",
    )
    add(
        "--max-stale",
        metavar="S",
        help="seconds an expired value is still served while Secrets Manager fails (SECRETCACHE_MAX_STALE; 3600)",
    )
    add(
        "--replica-regions",
        metavar="R1,R2",
        help="Regions to read replicas from when the primary fails (SECRETCACHE_REPLICA_REGIONS)",
    )


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="secretcache",
        description=(
            "Read AWS Secrets Manager secrets through secretcache. Region, credentials and endpoint "
            "come from the usual AWS environment unless --region, --profile or --endpoint-url is "
            "given; cache settings from the SECRETCACHE_* variables."
        ),
        epilog=_MAIN_EPILOG,
    )
    parser.add_argument("--version", action=_Version)
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
    get.add_argument("--key", metavar="K", help="print this key of the secret's JSON object instead")
    _output_options(
        get,
        "print name, arn, version_id, version_stages, created_date and the value as JSON "
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
    _output_options(describe, "print a JSON object instead of lines")
    describe.add_argument(
        "--show-value", action="store_true", help="include the value (binary as secret_binary_base64)"
    )
    _aws_options(describe, in_command=True)
    check = commands.add_parser(
        "check",
        help="say whether this identity can read each secret, and whether BatchGetSecretValue is allowed",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("secret_ids", metavar="SECRET_ID", nargs="*", help="secret names, full or partial ARNs")
    check.add_argument(
        "--secret-id", dest="secret_id_options", metavar="ID", action="append", default=[], help="one more id"
    )
    _output_options(check, "print one JSON document instead of lines")
    check.add_argument(
        "--require-batch",
        action="store_true",
        help="fail (exit 3, or 4 when the call failed) unless BatchGetSecretValue is allowed",
    )
    _aws_options(check, in_command=True)
    demo = commands.add_parser(
        "demo",
        help="run the whole story against an embedded local Secrets Manager "
        "(needs the demo extra: pip install -e '.[demo]' in a secretcache checkout)",
        description="Create, cache, rotate, pick up, survive an outage and report stats, all locally.",
    )
    serve = commands.add_parser(
        "serve",
        help="run one cache per host: a local HTTP server speaking the AWS Secrets Manager Agent's protocol "
        "(needs the serve extra: pip install 'secretcache[serve]')",
        description=SERVE_DESCRIPTION,
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _serve_options(serve)
    _aws_options(serve, in_command=True)
    return parser, {"get": get, "describe": describe, "check": check, "demo": demo, "serve": serve}


def _settle(args: argparse.Namespace, command: argparse.ArgumentParser) -> None:
    """One secret id (or a list), one output format: what argparse cannot check on its own."""
    if args.command == "check":
        args.secret_ids = [*args.secret_ids, *args.secret_id_options]
        if not args.secret_ids:
            command.error("the following arguments are required: SECRET_ID (or --secret-id)")
    elif args.secret_id is not None and args.secret_id_option is not None:
        command.error("give the secret id once: as SECRET_ID or as --secret-id")
    elif args.secret_id is None and args.secret_id_option is None:
        command.error("the following arguments are required: SECRET_ID (or --secret-id)")
    elif args.secret_id is None:
        args.secret_id = args.secret_id_option
    if args.json and args.output == "text":
        command.error("--json and --output text ask for different outputs")
    args.output = "json" if args.json or (args.output is None and args.query is not None) else args.output or "text"
    if getattr(args, "key", None) is not None and (args.output == "json" or args.query is not None):
        command.error("argument --key: not allowed with argument --json, --output json or --query")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; a usage error prints the usage of the command it concerns and exits 2."""
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    command = commands[args.command]
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(map(shown_id, unknown))}")
    if args.command == "serve":
        return args
    if args.command == "demo":
        if args.region or args.profile or args.endpoint_url:
            command.error(
                "demo runs against an embedded local Secrets Manager; "
                "--region, --profile and --endpoint-url do not apply"
            )
        return args
    _settle(args, command)
    return args
