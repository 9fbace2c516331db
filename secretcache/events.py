"""Fleet-wide invalidation: Secrets Manager change events applied to caches.

:func:`invalidate_from_event` turns one event (raw EventBridge, or wrapped by SNS, SQS or a
Lambda ``Records`` batch) into :meth:`SecretCache.invalidate` calls. :class:`SqsInvalidationListener`
long-polls an SQS queue that an EventBridge rule (directly or through SNS) feeds, so every
process of a fleet drops a rotated secret within seconds instead of a TTL.
"""

from secretcache._events import CHANGE_EVENTS, MAX_IDS, invalidate_from_event, secret_ids_from_event
from secretcache._listener import SqsInvalidationListener
from secretcache._public import publish as _publish

__all__ = ["CHANGE_EVENTS", "MAX_IDS", "SqsInvalidationListener", "invalidate_from_event", "secret_ids_from_event"]

_publish(globals(), __all__)
