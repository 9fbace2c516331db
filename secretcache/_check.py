"""``secretcache check``: can this identity read these secrets, and may it batch them?

:func:`check_secrets` reads each id through a cache the caller built and closes, then tries one
``BatchGetSecretValue`` call on the caller's client; :func:`print_report` prints the outcomes and
returns the exit status. Values are never printed nor kept: a read secret contributes its ARN and
version id, the batch call only how many secrets it returned. This module imports nothing from
:mod:`secretcache._cli`, which builds the parser (with the help texts below) and the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secretcache._batch_answer import BATCH_SIZE, BatchFailedError, BatchRefusedError
from secretcache._errors import (
    InvalidSecretRequestError,
    SecretAccessDeniedError,
    SecretCacheError,
    SecretDecryptionError,
    SecretNotFoundError,
)
from secretcache._fetcher import Fetcher
from secretcache._keys import check_secret_id
from secretcache._output import out, printable, shown_id
from secretcache._stats import Counters

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from secretcache._cache import SecretCache
    from secretcache._policy import RetryPolicy

__all__ = [
    "CHECK_DESCRIPTION",
    "CHECK_EPILOG",
    "EXIT_CODES",
    "Outcome",
    "check_secrets",
    "one_line",
    "print_report",
]

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
    "output_failed": 74,
    "broken_pipe": 141,
}
"""Exit status per outcome; ``check`` exits with the highest that applies (docs/cli.md).

``output_failed`` (74, ``EX_IOERR`` of sysexits.h) is any command's status when standard output
cannot be written (closed with ``>&-``, a full disk); ``broken_pipe`` (128 + SIGPIPE, as a shell
reports a command killed by it) when a pipe's reader exits before everything was written
(``secretcache get ID | head -c1``).
"""

CHECK_DESCRIPTION = f"""\
Read each SECRET_ID with GetSecretValue and report: ok, not found, access denied,
cannot decrypt, unavailable or invalid. Then try one BatchGetSecretValue call with the
(first {BATCH_SIZE}) valid ids and report: allowed, refused (prefetch() then reads one
secret at a time), failed (outage, throttling) or skipped. One line each; never a value.
"""

CHECK_EPILOG = """\
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
 74  the report could not be written: standard output closed or full (one line on stderr)
130  interrupted (Ctrl-C)
141  standard output was closed before the report was written (e.g. piped into head)
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``check`` found for one secret id, or for the batch call."""

    subject: str
    status: str  # a key of EXIT_CODES, or "allowed"/"refused"/"failed"/"skipped" for the batch
    detail: str | None = None
    extra: tuple[tuple[str, object], ...] = ()


def one_line(err: BaseException) -> str:
    """The error's message on one line (messages name ids and causes, never values)."""
    return " ".join(str(err).split())


_STATUS_OF = (
    (SecretNotFoundError, "not_found"),
    (SecretAccessDeniedError, "access_denied"),
    (SecretDecryptionError, "cannot_decrypt"),
    (InvalidSecretRequestError, "invalid"),
)


def _status_of(err: SecretCacheError) -> str:
    # Anything else (SecretUnavailableError, a malformed response) is worth trying again later.
    return next((status for kind, status in _STATUS_OF if isinstance(err, kind)), "unavailable")


def _check_one(cache: SecretCache, secret_id: str) -> Outcome:
    try:
        secret = cache.get_secret(secret_id)
    except SecretCacheError as err:
        return Outcome(secret_id, _status_of(err), one_line(err))
    return Outcome(secret_id, "ok", extra=(("arn", secret.arn), ("version_id", secret.version_id)))


def _check_batch(client: SecretsManagerClient, retry: RetryPolicy, secret_ids: list[str]) -> Outcome:
    """Try one ``BatchGetSecretValue`` call, classified as ``prefetch()`` would see it; values dropped."""
    ids = secret_ids[:BATCH_SIZE]
    extra: tuple[tuple[str, object], ...] = (("secret_ids", ids),)
    if not ids:
        return Outcome("BatchGetSecretValue", "skipped", "no valid secret id to try it with", extra)
    try:
        values, _errors = Fetcher(client, retry, Counters()).batch_get_secret_values(ids)
    except BatchRefusedError as err:
        detail = f"{one_line(err)}; prefetch() reads one secret at a time instead"
        return Outcome("BatchGetSecretValue", "refused", detail, extra)
    except BatchFailedError as err:
        return Outcome("BatchGetSecretValue", "failed", one_line(err), extra)
    returned = len(values)
    del values  # they hold secret values: never kept, never shown
    return Outcome("BatchGetSecretValue", "allowed", f"{returned} of {len(ids)} secret(s) returned", extra)


def check_secrets(
    cache: SecretCache, client: SecretsManagerClient, retry: RetryPolicy, secret_ids: Sequence[str]
) -> tuple[list[Outcome], Outcome]:
    """Check each distinct id through ``cache``, then one batch call on ``client``: (per id, batch).

    ``client`` should be the one ``cache`` reads with, and ``retry`` its retry policy, so that the
    batch call is made as ``prefetch()`` would make it. Ids refused by validation are ``invalid``
    without any call, and are left out of the batch call.
    """
    valid: list[str] = []
    results: list[Outcome] = []
    for secret_id in dict.fromkeys(secret_ids):
        try:
            valid.append(check_secret_id(secret_id))
        except InvalidSecretRequestError as err:  # refused before any call
            results.append(Outcome(secret_id, "invalid", one_line(err)))
            continue
        results.append(_check_one(cache, secret_id))
    return results, _check_batch(client, retry, valid)


def print_report(
    results: list[Outcome],
    batch: Outcome,
    *,
    require_batch: bool,
    show: Callable[[dict[str, object]], None] | None = None,
) -> int:
    """Print one line per outcome on standard output, or hand ``show`` the JSON document; return the exit status.

    In the lines, an id that is not a plain name or ARN is quoted and escaped (``'': invalid``),
    so that no id can forge a line or send escape sequences to the terminal.
    """
    codes = [EXIT_CODES[outcome.status] for outcome in results]
    if require_batch and batch.status in ("refused", "failed"):
        codes.append(EXIT_CODES["batch_refused" if batch.status == "refused" else "unavailable"])
    code = max(codes)
    if show is not None:
        show(_document(results, batch, code))
        return code
    for outcome in [*results, batch]:
        label = outcome.status.replace("_", " ")
        detail = f": {printable(outcome.detail)}" if outcome.detail else ""
        out(f"{shown_id(outcome.subject)}: {label}{detail}")
    return code


def _document(results: list[Outcome], batch: Outcome, code: int) -> dict[str, object]:
    def entry(outcome: Outcome, key: str) -> dict[str, object]:
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
