"""Command line: ``secretcache get`` prints a secret for shell use; ``secretcache demo`` tells the story.

Run ``python -m secretcache --help`` (or the ``secretcache`` console script).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from secretcache import __version__
from secretcache._cache import SecretCache
from secretcache._errors import SecretCacheError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secretcache",
        description="Read AWS Secrets Manager secrets through secretcache.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = commands.add_parser(
        "get",
        help="print a secret's value (or one JSON key of it) on standard output",
        description=(
            "Print a secret's value for shell use. Region, credentials and endpoint come from the "
            "usual AWS environment (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, ...). Binary secrets "
            "are written as raw bytes."
        ),
    )
    get.add_argument("secret_id", metavar="SECRET_ID", help="secret name, full ARN or partial ARN")
    get.add_argument("--version-stage", metavar="S", help="staging label to read (default AWSCURRENT)")
    get.add_argument("--version-id", metavar="V", help="version id to read")
    get.add_argument("--key", metavar="K", help="print this key of the secret's JSON object instead")
    commands.add_parser(
        "demo",
        help="run the whole story against an embedded local Secrets Manager (needs secretcache[demo])",
        description="Create, cache, rotate, pick up, survive an outage and report stats, all locally.",
    )
    return parser


def _get(args: argparse.Namespace) -> int:
    with SecretCache(ttl=0) as cache:
        if args.key is not None:
            value = cache.get_secret_json(
                args.secret_id, args.key, version_stage=args.version_stage, version_id=args.version_id
            )
            print(value if isinstance(value, str) else json.dumps(value))
            return 0
        secret = cache.get_secret(args.secret_id, version_stage=args.version_stage, version_id=args.version_id)
    if secret.secret_string is not None:
        print(secret.secret_string)
    elif secret.secret_binary is not None:
        sys.stdout.flush()
        sys.stdout.buffer.write(secret.secret_binary)
        sys.stdout.buffer.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Exit status: 0 on success, 1 when the secret cannot be read (a one-line message on standard
    error, never a traceback or a value), 2 for usage errors.
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from secretcache._demo import run_demo

            return run_demo()
        return _get(args)
    except SecretCacheError as err:
        print(f"secretcache: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    sys.exit(main())
