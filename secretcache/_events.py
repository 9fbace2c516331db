"""Secrets Manager change events turned into cache invalidations.

Secrets Manager reports changes through EventBridge: the native ``Secret Label Updated`` event
(sent when AWSCURRENT or a custom label moves; no CloudTrail needed), CloudTrail API-call events
(``CreateSecret``, ``PutSecretValue``, ``UpdateSecretVersionStage``, ``RotateSecret``,
``DeleteSecret``, ...) and rotation service events (``RotationSucceeded``, ...).
:func:`invalidate_from_event` accepts such an event as EventBridge delivers it, wrapped in an
SNS notification, in an SQS message, in a Lambda ``Records`` batch, or any nesting of those,
finds the secrets it is about and invalidates them. Unknown or malformed events, and ids the
cache would refuse (blank, with a control character, longer than 2,048 characters), are logged
at DEBUG and ignored; nothing here ever raises on bad input, however large, deep or odd. Log
lines show ids as a truncated ``repr`` and never show an event's content.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from secretcache._errors import InvalidSecretRequestError
from secretcache._keys import check_secret_id
from secretcache._logs import facts

if TYPE_CHECKING:
    from secretcache._cache import SecretCache

__all__ = ["CHANGE_EVENTS", "MAX_IDS", "invalidate_from_event", "secret_ids_from_event", "shown"]

logger = logging.getLogger("secretcache.events")

CHANGE_EVENTS = frozenset(
    {
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecret",
        "UpdateSecretVersionStage",
        "RotateSecret",
        "CancelRotateSecret",
        "DeleteSecret",
        "RestoreSecret",
        "PutResourcePolicy",
        "DeleteResourcePolicy",
        "ReplicateSecretToRegions",
        "RemoveRegionsFromReplication",
        "StopReplicationToReplica",
        "RotationSucceeded",
        "RotationFailed",
        "RotationAbandoned",
        "RotationStarted",
        "SecretVersionDeletion",
        "StartSecretVersionDelete",
        "CancelSecretVersionDelete",
        "EndSecretVersionDelete",
    }
)
"""Event names that may change what a cached secret should return.

``CreateSecret`` is one: the cache may remember that the secret was not found (backing off for up
to ``RetryPolicy.max_failure_backoff`` after repeated failed reads), and a secret created again
after a deletion is a new secret under the same name. So are ``PutResourcePolicy`` and
``DeleteResourcePolicy``: a policy that revokes access should stop the cached value being served
(the next read gets the access-denied answer), and one that grants it should end a remembered
access-denied error.
"""

_OTHER_EVENTS = frozenset(
    {
        "GetSecretValue",
        "BatchGetSecretValue",
        "DescribeSecret",
        "ListSecrets",
        "ListSecretVersionIds",
        "GetResourcePolicy",
        "ValidateResourcePolicy",
        "GetRandomPassword",
        "TagResource",
        "UntagResource",
    }
)
"""Secrets Manager's event names that change no value: named in the DEBUG line that ignores them.

Any other name an ignored event carries is logged by its length only: it is the event's content,
which may be anything (a poison message's field holding a value, say).
"""

_MAX_DEPTH = 4  # SQS > SNS > EventBridge is three levels; more is not an event we know
MAX_IDS = 20
"""Most secret ids taken from one event; a real one names one secret (the rest are ignored, logged at DEBUG)."""
_SHOWN = 120  # characters of an id shown in a log line


def shown(secret_id: str) -> str:
    """``secret_id`` fit for a log line: a ``repr`` (control characters escaped), truncated."""
    if len(secret_id) <= _SHOWN:
        return repr(secret_id)
    return f"{secret_id[:_SHOWN]!r}... ({len(secret_id)} characters)"


def secret_ids_from_event(event: Any) -> list[str]:
    """The secret ids (names or ARNs) a Secrets Manager change event is about; ``[]`` if none.

    Accepts what :func:`invalidate_from_event` accepts. Ids the cache would refuse (blank or
    whitespace, with a control character, longer than 2,048 characters) are left out with a
    DEBUG log giving their length; the other ids of the event are kept. At most :data:`MAX_IDS`
    ids come from one event, and from one message (a record of a Lambda batch) however it
    packs them. Never raises for bad input.
    """
    found: list[str] = []
    for message in _messages(event):
        ids = [secret_id for document in _unwrap(message, 0) for secret_id in _ids_of(document)]
        found.extend(_at_most(ids, "a message"))
    return [secret_id for secret_id in dict.fromkeys(found) if _usable(secret_id)]


def _messages(event: Any) -> list[Any]:
    """A Lambda ``Records`` batch's records one by one (each one SQS message or SNS notification), else ``[event]``.

    A message yields at most :data:`MAX_IDS` ids however its body packs them (a ``Records`` list
    of its own, say), as a message the SQS listener receives does; a batch of many messages
    yields each one's.
    """
    document = _parse(event)
    records = document.get("Records") if isinstance(document, Mapping) else None
    if not isinstance(records, list):
        return [document]
    return [{"Records": [record]} for record in records]


def _at_most(ids: list[str], what: str) -> list[str]:
    """The first :data:`MAX_IDS` of ``ids``; the rest ignored with one DEBUG line (poison: a flood of invalidations)."""
    if len(ids) > MAX_IDS:
        logger.debug(
            "ignoring %d secret ids of %s beyond the first %d", len(ids) - MAX_IDS, what, MAX_IDS, extra=facts("event")
        )
        del ids[MAX_IDS:]
    return ids


def invalidate_from_event(cache: SecretCache, event: Any) -> list[str]:
    """Invalidate every secret a change event is about, in ``cache``; return their ids.

    Accepts a raw EventBridge event, an SNS notification or SQS message carrying one (as a dict
    or a JSON string), or a Lambda ``Records`` batch of those. Ids the cache would refuse are
    skipped (see :func:`secret_ids_from_event`) and the event's other ids are still invalidated.
    Never raises for bad input: malformed, unknown, oversized or deeply nested events
    invalidate nothing and are logged at DEBUG without their content.

    Returns:
        The ids invalidated, in the order the event names them, without duplicates.
    """
    ids = secret_ids_from_event(event)
    for secret_id in ids:
        cache.invalidate(secret_id)
    for secret_id in ids:  # one record per secret, so each carries its own ``secret_name``
        logger.info(
            "invalidated %s after a change event", shown(secret_id), extra=facts("event", secret_name=secret_id)
        )
    return ids


def _usable(secret_id: str) -> bool:
    """Whether the cache accepts ``secret_id``; a refused one is logged by its length only."""
    try:
        check_secret_id(secret_id)
    except (TypeError, InvalidSecretRequestError) as err:  # the id is not logged, not even as a field
        logger.debug(
            "ignoring a secret id of %d characters in a change event: not a usable id",
            len(secret_id),
            extra=facts("event", error=err),
        )
        return False
    return True


def _parse(document: Any) -> Any:
    if isinstance(document, (str, bytes)):
        try:
            return json.loads(document)
        except (ValueError, RecursionError) as err:  # poison input: never crash the listener
            logger.debug("ignoring a message that is not JSON or nested too deeply", extra=facts("event", error=err))
            return None
    return document


def _unwrap(document: Any, depth: int) -> list[Mapping[str, Any]]:
    """The EventBridge events inside SQS/SNS/Lambda wrappers, however nested."""
    document = _parse(document)
    if not isinstance(document, Mapping) or depth > _MAX_DEPTH:
        if document is not None:
            logger.debug("ignoring an event that is not a JSON object", extra=facts("event"))
        return []
    records = document.get("Records")
    if isinstance(records, list):
        events: list[Mapping[str, Any]] = []
        for record in records:
            if not isinstance(record, Mapping):
                continue
            sns = record.get("Sns")
            inner = record.get("body", sns.get("Message") if isinstance(sns, Mapping) else None)
            events.extend(_unwrap(inner, depth + 1))
        return events
    if document.get("Type") == "Notification" and "Message" in document:  # an SNS notification
        return _unwrap(document["Message"], depth + 1)
    if "detail" in document:
        return [document]
    logger.debug("ignoring an event of unknown shape", extra=facts("event"))
    return []


def _ids_of(event: Mapping[str, Any]) -> list[str]:
    if event.get("source") not in (None, "aws.secretsmanager"):
        return []
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        return []
    name = detail.get("eventName")
    if name is not None and not isinstance(name, str):  # never hash or format an arbitrary object
        logger.debug(
            "ignoring a Secrets Manager event whose eventName is a %s", type(name).__name__, extra=facts("event")
        )
        return []
    if name is not None and name not in CHANGE_EVENTS:
        named = name if name in _OTHER_EVENTS else f"(a name of {len(name)} characters)"
        logger.debug("ignoring Secrets Manager event %s: it changes no secret value", named, extra=facts("event"))
        return []
    ids: list[str] = []
    for container, keys in (
        (detail.get("requestParameters"), ("secretId", "SecretId", "name")),
        (detail.get("responseElements"), ("arn", "aRN", "ARN")),
        (detail.get("additionalEventData"), ("SecretId", "secretId")),
        (detail, ("secretId", "SecretId", "secretArn", "SecretArn")),
    ):
        if isinstance(container, Mapping):
            ids.extend(value for key in keys if isinstance(value := container.get(key), str) and value)
    resources = event.get("resources")
    if not ids and isinstance(resources, list):  # the native Secret Label Updated event
        ids.extend(arn for arn in resources if isinstance(arn, str) and ":secretsmanager:" in arn)
    if not ids and event.get("detail-type") == "Secret Label Updated" and isinstance(detail.get("name"), str):
        ids.append(detail["name"])
    return _at_most(ids, "an event")  # poison: a flood of invalidations and log lines would hold up the poll loop
