"""The SSRF token of the AWS Secrets Manager Agent protocol, read the way the Agent reads it.

Stack-free (standard library only), so that :mod:`secretcache.agent` can read the token without
the ``serve`` extra. The first of :data:`TOKEN_VARIABLES` present in the environment holds the
token, or ``file://PATH`` naming a file that holds it (read, surrounding whitespace trimmed), as
the Agent's ``get_token`` does (``aws_secretsmanager_agent/src/utils.rs``). In Lambda the
Parameters and Secrets extension's token is ``AWS_SESSION_TOKEN``, so the default finds it.

The token is never logged, and no error raised here holds it: a file's contents never reach a
message, and a file name is shown only when it is the variable's whole value after ``file://``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["TOKEN_VARIABLES", "TokenFileError", "read_token"]

TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
"""Where the token is looked for, in order: the Agent's default ``ssrf_env_variables``."""

_FILE_PREFIX = "file://"


class TokenFileError(ValueError):
    """The token variable names a file (``file://PATH``) that cannot be read."""


def read_token(environ: Mapping[str, str] = os.environ) -> str | None:
    """The token: the value of the first of :data:`TOKEN_VARIABLES` set in ``environ``.

    A value ``file://PATH`` is replaced by the contents of ``PATH``, whitespace trimmed (a plain
    value is used as is, as the Agent does). A variable set to the empty string counts as set,
    as for the Agent: an empty token.

    Returns:
        The token, or ``None`` when none of the variables is set.

    Raises:
        TokenFileError: The variable names a file that cannot be read or is not UTF-8 text (the
            message names the variable and the path, never the contents).
    """
    for name in TOKEN_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        if not value.startswith(_FILE_PREFIX):
            return value
        path = value[len(_FILE_PREFIX) :]
        problem = None
        try:
            with open(path, encoding="utf-8") as file:
                return file.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            problem = f"{type(err).__name__}: {err.strerror}" if isinstance(err, OSError) else "not UTF-8 text"
        # Raised outside the except block: a decode error holds the file's bytes.
        raise TokenFileError(f"cannot read the token file {path!r} that {name} names ({problem})")
    return None
