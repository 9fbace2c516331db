"""Helpers shared by the fetcher tests (``test_fetcher_*.py``)."""

from __future__ import annotations

from botocore.exceptions import ClientError


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def chain_text(error: BaseException) -> str:
    """Messages, reprs, args and attributes of ``error`` and everything chained to it."""
    parts: list[str] = []
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        pending += [exc.__cause__, exc.__context__]
    return "\n".join(parts)
