"""The SSRF token shared by ``secretcache serve`` and its clients, read as the AWS Agent reads it.

Standard library only: :mod:`secretcache.agent` and ``secretcache serve`` both read it, without the
``serve`` extra.

The token is the value of the first of ``AWS_TOKEN``, ``AWS_SESSION_TOKEN`` and
``AWS_CONTAINER_AUTHORIZATION_TOKEN`` that is set; a value ``file://PATH`` means the contents of
that file, whitespace trimmed (aws-secretsmanager-agent ``aws_secretsmanager_agent/src/utils.rs``,
``get_token``; the variable list is its ``config.rs`` default ``ssrf_env_variables``). Unlike the
Agent, a variable set to the empty string counts as not set (the Agent would accept an empty
token), and a token file that is empty, longer than :data:`MAX_TOKEN_BYTES` or not UTF-8 is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_TOKEN_BYTES", "TOKEN_VARIABLES", "ServeConfigError", "Token", "TokenError", "read_token"]

TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
"""The variables searched for the token, first set wins (the Agent's default ``ssrf_env_variables``)."""

MAX_TOKEN_BYTES = 4096
"""Longest token file read; no HTTP server accepts a header much longer (and ``/dev/zero`` never ends)."""

_FILE = "file://"


class ServeConfigError(ValueError):
    """``secretcache serve`` (or a client of it) is configured wrongly; the message says what to change.

    Also a :class:`ValueError`. Messages never hold a token.
    """


class TokenError(ServeConfigError):
    """No SSRF token could be read: no variable is set, or its ``file://`` path cannot be read.

    The message names the variables (and the path, never its contents).
    """


@dataclass(frozen=True)
class Token:
    """An SSRF token and where it came from. Immutable; its ``repr`` never shows the value.

    Attributes:
        value: The token itself (compare it in constant time, :func:`hmac.compare_digest`).
        variable: The environment variable it was found through.
        path: The file it was read from (``file://PATH``), or ``None`` when the variable held it.
    """

    value: str = field(repr=False)
    variable: str
    path: str | None = None


def read_token(environ: Mapping[str, str] | None = None) -> Token:
    """Read the SSRF token from the first set of :data:`TOKEN_VARIABLES` (``os.environ`` by default).

    A value ``file://PATH`` is replaced by the contents of ``PATH`` with surrounding whitespace
    trimmed; any other value is the token as it stands.

    Raises:
        TokenError: None of the variables is set (the message names them), or the file cannot
            be read, is empty, is not UTF-8 text or is longer than :data:`MAX_TOKEN_BYTES`.
    """
    env = os.environ if environ is None else environ
    for variable in TOKEN_VARIABLES:
        raw = env.get(variable)
        if raw:
            if not raw.startswith(_FILE):
                return Token(raw, variable)
            path = raw[len(_FILE) :]
            return Token(_read_file(variable, path), variable, path)
    raise TokenError(
        "no SSRF token: set one of " + ", ".join(TOKEN_VARIABLES) + " (a value file://PATH reads the token from PATH)"
    )


def _read_file(variable: str, path: str) -> str:
    """The token held in ``path`` (named by ``variable``), trimmed; errors name the path, never its contents."""
    where = f"{variable}=file://{path}"
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_TOKEN_BYTES + 1)
    except OSError as err:
        raise TokenError(f"cannot read the SSRF token file ({where}): {err.strerror or type(err).__name__}") from None
    if len(data) > MAX_TOKEN_BYTES:
        raise TokenError(f"the SSRF token file ({where}) is longer than {MAX_TOKEN_BYTES} bytes")
    try:
        token: str | None = data.decode("utf-8").strip()
    except UnicodeDecodeError:  # its args hold the file's bytes: raised outside, so it is not the context
        token = None
    if token is None:
        raise TokenError(f"the SSRF token file ({where}) is not UTF-8 text")
    if not token:
        raise TokenError(f"the SSRF token file ({where}) is empty")
    return token
