"""The only code that talks to Secrets Manager: calls, retries, Region failover and call counting.

What it leans on, one module per concept: :mod:`secretcache._client` (the client a cache builds,
and how long one call may take), :mod:`secretcache._error_map` (which botocore failures are
transient and the typed error each becomes), :mod:`secretcache._retrying` (tenacity on the
cache's clock and sleep), :mod:`secretcache._response` (an answer's checks and its
:class:`SecretValue`) and :mod:`secretcache._regions` (where a fetch goes when the primary
Region fails).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError, CredentialRetrievalError
from botocore.parsers import ResponseParserError

from secretcache._attempts import (
    ATTEMPT,
    PARSE_ERRORS,
    provider_of,
    raised_parsing,
    raised_reading_credentials,
    watch_attempts,
)
from secretcache._batch_answer import BATCH_SIZE, BatchRefusedError, call_failure, read_answer
from secretcache._client import build_client, call_seconds
from secretcache._error_map import hide_body, is_transient, map_error
from secretcache._errors import InvalidSecretRequestError, SecretCacheError
from secretcache._keys import DEFAULT_STAGE
from secretcache._lazy import ClientUnusableError, Lazy, reading_credentials
from secretcache._logs import error_type
from secretcache._policy import RetryPolicy
from secretcache._regions import Regions, check_primary, region_of
from secretcache._response import MalformedResponseError, check_batch, check_fields, to_secret_value
from secretcache._retrying import retrying
from secretcache._stats import Counters
from secretcache._value import SecretValue

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import BatchGetSecretValueResponseTypeDef, GetSecretValueResponseTypeDef

    from secretcache._observe import Fetch

__all__ = ["REFRESH_NOW", "Fetcher", "in_region"]

REFRESH_NOW = "_secretcache_refresh_now"
"""The attribute by which a client declares that its ``get_secret_value`` takes ``RefreshNow=True``.

A forced read (``force_refresh=True``, ``refresh()``) passes ``RefreshNow=True`` to a client
whose attribute of this name is ``True`` (:class:`secretcache.agent.AgentClient`, which sends it
as the Agent protocol's ``refreshNow=true`` so the server refreshes too); never to any other
client (a boto3 client would refuse the unknown parameter).
"""

_T = TypeVar("_T")


class ReplicaFailedError(Exception):
    """No replica answered while the primary Region is backing off (an outage, not a verdict)."""


# What a call can fail with that map_error turns into a typed error.
_CALL_ERRORS = (
    BotoCoreError,
    ClientError,
    ResponseParserError,
    MalformedResponseError,
    ReplicaFailedError,
    ClientUnusableError,
)


class Fetcher:
    """Calls Secrets Manager for a cache, with retries, error mapping and call counting.

    Thread-safe: boto3 clients are, a client built on first use is built with no lock held
    (:mod:`secretcache._lazy`), and no other state changes after construction. Retry waits go
    through ``sleep`` and deadlines are measured on ``clock`` (default ``time.monotonic``).
    """

    def __init__(
        self,
        client: SecretsManagerClient | None,
        retry: RetryPolicy,
        counters: Counters,
        *,
        sleep: Callable[[float], None] = time.sleep,
        regions: Regions | None = None,
        clock: Callable[[], float] | None = None,
        send_current_stage: bool = True,
    ) -> None:
        if not isinstance(send_current_stage, bool):
            raise TypeError(f"send_current_stage must be a bool, not {type(send_current_stage).__name__}")
        self._send_current_stage = send_current_stage
        replicas = regions.replicas if regions is not None else ()
        for given in (client, *(replica.peek() for replica in replicas)):
            watch_attempts(given)  # now, before any thread of the cache uses it (a built one: as it is built)
        self._client: Lazy[SecretsManagerClient] = Lazy(client, self._build, wait=retry.deadline)
        self._counters = counters
        self._retry = retry
        self._sleep = sleep
        self._clock: Callable[[], float] = clock or time.monotonic
        self.regions = regions
        """The replica Regions a transient failure of the primary fails over to, if any."""

    @property
    def client(self) -> SecretsManagerClient:
        """The client, built on first use when none was given (no lock held meanwhile).

        Raises:
            ClientUnusableError: Another thread's build outlasted the retry deadline, or builds
                nest too deep on this thread (:mod:`secretcache._lazy`).
            Exception: What building the client raised (botocore's ``NoRegionError``, say).
        """
        return self._client.get()

    def attempt_seconds(self) -> float:
        """Longest one attempt in the primary Region and one in each replica Region wait on the network.

        The sum of each client's connect and read timeouts (:func:`call_seconds`): its own
        configuration's for a client given, those :func:`build_client` sets for one not built yet.
        """
        replicas = self.regions.replicas if self.regions is not None else ()
        return call_seconds(self._client.peek()) + sum(call_seconds(replica.peek()) for replica in replicas)

    def _build(self) -> SecretsManagerClient:
        """Build the cache's own client, refusing it (before any call) if a replica Region is its Region."""
        client = watch_attempts(reading_credentials(build_client))
        if self.regions is not None:
            try:
                check_primary(region_of(client), self.regions.replicas, "the Region of the client the cache built")
            except ValueError as err:
                raise ClientUnusableError(str(err), InvalidSecretRequestError) from None
        return client

    def fetch_value(
        self, secret_id: str, version_stage: str | None, version_id: str | None, fetch: Fetch | None = None
    ) -> SecretValue:
        """Fetch one version of a secret; AWSCURRENT when neither stage nor version id is given.

        ``VersionStage`` is sent whenever no version id is asked for, so the label is never left
        for the service to default, unless the cache was built with ``send_current_stage=False``:
        then a read of AWSCURRENT sends only ``SecretId``, as plain boto3 code does. ``fetch``,
        when given, counts the attempts; when it is a forced refresh, a client declaring
        :data:`REFRESH_NOW` is also passed ``RefreshNow=True``.

        Raises:
            SecretCacheError: The typed error matching the failure, the botocore error chained.
        """
        kwargs: dict[str, Any] = {}
        if version_id is not None:
            kwargs["VersionId"] = version_id
        if version_stage is not None or (version_id is None and self._send_current_stage):
            kwargs["VersionStage"] = version_stage or DEFAULT_STAGE

        missing = None
        if version_id is not None:
            missing = f"has no version {version_id}"
        elif version_stage is not None and version_stage != DEFAULT_STAGE:
            missing = f"has no version labelled {version_stage}"
        calls: list[None] = []
        forced = fetch is not None and fetch.refresh == "forced"

        def attempt(client: SecretsManagerClient, region: str | None) -> GetSecretValueResponseTypeDef:
            calls.append(None)
            sent = secret_id if region is None else in_region(secret_id, region)
            call: Callable[..., GetSecretValueResponseTypeDef] = client.get_secret_value
            if forced and getattr(client, REFRESH_NOW, False) is True:
                call = functools.partial(call, RefreshNow=True)
            response = self._send(client, "GetSecretValue", fetch, lambda: call(SecretId=sent, **kwargs))
            check_fields(response, "GetSecretValue")
            return response

        # With both VersionId and VersionStage, Secrets Manager refuses a pair that disagrees.
        try:
            response, replica = self._across_regions("GetSecretValue", attempt, fetch)
        except _CALL_ERRORS as err:
            raise map_error(err, "GetSecretValue", secret_id, attempts=len(calls), missing=missing) from err
        return self._value(response, secret_id, "GetSecretValue", replica)

    def batch_get_secret_values(
        self, secret_ids: list[str], fetch: Fetch | None = None
    ) -> tuple[list[SecretValue], dict[str, SecretCacheError]]:
        """Fetch AWSCURRENT of up to :data:`BATCH_SIZE` secrets in one call (``fetch`` counts attempts).

        Returns the values found (match them to the requested ids by name or ARN) and the
        typed error of each id the service reported an error for, or whose value came back
        with the wrong type (:class:`SecretFormatError`).

        Raises:
            BatchRefusedError: The batch operation itself is denied or invalid, no credentials
                or no region are configured, or the client does not know the operation.
            BatchFailedError: The call failed as a whole, after retries for transient errors;
                its ``errors`` holds one typed error per requested id.
        """
        assert 0 < len(secret_ids) <= BATCH_SIZE

        def attempt(client: SecretsManagerClient, region: str | None) -> BatchGetSecretValueResponseTypeDef:
            # A botocore older than the operation builds a client without the method.
            if not hasattr(client, "batch_get_secret_value"):
                raise BatchRefusedError("this botocore does not know BatchGetSecretValue")
            sent = secret_ids if region is None else [in_region(secret_id, region) for secret_id in secret_ids]
            response = self._send(
                client, "BatchGetSecretValue", fetch, lambda: client.batch_get_secret_value(SecretIdList=sent)
            )
            check_batch(response)
            return response

        try:
            response, replica = self._across_regions("BatchGetSecretValue", attempt, fetch)
        except _CALL_ERRORS as err:
            raise call_failure(err, secret_ids) from err
        sent = secret_ids if replica is None else [in_region(secret_id, replica) for secret_id in secret_ids]
        value_of = functools.partial(self._value, operation="BatchGetSecretValue", replica=replica)
        return read_answer(response, secret_ids, sent, replica, value_of)

    def reset_after_fork(self) -> None:
        """In a forked child: never reuse the parent's connections.

        A client the cache built is dropped and rebuilt on first use. A client the caller gave
        is kept (rebuilding it would lose its credentials and event hooks) but its connection
        pool is emptied, so the child opens its own connections.
        """
        self._client.reset_after_fork()
        if self.regions is not None:
            self.regions.reset_after_fork()

    def close(self) -> None:
        """Close the connections of the clients the cache built (primary, replicas); given ones are the caller's."""
        self._client.close()
        if self.regions is not None:
            self.regions.close()

    def _send(self, client: Any, operation: str, fetch: Fetch | None, call: Callable[[], _T]) -> _T:
        """Make one call with ``client``, counting it and the fetch's attempt, then its outcome.

        The call is counted as it starts, its outcome as it ends: ok, or failed by error type,
        whatever ended it (an interrupt is a ``KeyboardInterrupt`` error). While it runs,
        botocore's ``needs-retry`` events of the client reach ``fetch`` (through the handler
        :func:`~secretcache._attempts.watch_attempts` registered as the client came into the cache).
        """
        self._counters.api_call(operation)
        outer = getattr(ATTEMPT, "fetch", None)  # a log handler may read the cache from inside a call
        if fetch is not None:
            fetch.attempts += 1
        ATTEMPT.fetch = fetch
        unparsed: str | None = None
        hidden: ClientError | None = None
        try:
            result = call()
        except ClientError as err:
            self._counters.api_error(operation, error_type(err))
            hidden = hide_body(err) if isinstance(client, BaseClient) else None
            if hidden is None:
                raise
        except PARSE_ERRORS as err:
            if not raised_parsing(err):
                self._counters.api_error(operation, error_type(err))
                raise
            kind = type(err)
            unparsed = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        except OSError as err:
            if not raised_reading_credentials(err):
                self._counters.api_error(operation, error_type(err))
                raise
            # botocore lets a provider's own error through: a web identity token file or a
            # credential_process program that is missing. No usable credentials, as botocore's own
            # CredentialRetrievalError says for a provider that fails otherwise.
            refused = CredentialRetrievalError(provider=provider_of(err), error_msg=f"{type(err).__name__}: {err}")
            self._counters.api_error(operation, error_type(refused))
            raise refused from err
        except BaseException as err:  # an interrupt ends the call too: it must not stay in flight
            self._counters.api_error(operation, error_type(err))
            raise
        finally:
            ATTEMPT.fetch = outer
        if hidden is not None:  # raised past the except block, so botocore's error is not its __context__
            raise hidden
        if unparsed is not None:
            # Raised here, past the except block: botocore's error may hold the answer (a
            # UnicodeEncodeError holding a SecretBinary, chained as its __context__), so nothing
            # of it is chained.
            broken = MalformedResponseError(f"{operation} returned a response botocore could not parse ({unparsed})")
            self._counters.api_error(operation, error_type(broken))
            raise broken
        self._counters.api_ok(operation)
        return result

    def _across_regions(
        self, operation: str, attempt: Callable[[SecretsManagerClient, str | None], _T], fetch: Fetch | None
    ) -> tuple[_T, str | None]:
        """Run ``attempt(client, region)`` on the primary, then on the replicas if it fails transiently.

        Without replicas: the primary under the retry policy. With replicas: the primary with
        its retries within half the deadline (one probe while an outage episode goes on, none
        while its backoff lasts), then each replica in order within what is left of the
        deadline: once an attempt was made, none starts at or past the deadline, so a primary
        attempt that hangs that long leaves no replica attempt. An attempt that outlasted its
        client's timeouts (the process was stopped: a Lambda freeze) spends none of it, in its
        own Region or in those after it. ``region`` is ``None`` for the
        primary: ids are sent as given; for a replica, ARNs are rewritten to its Region.

        Returns:
            The result, and the replica Region that gave it (``None`` for the primary).

        Raises:
            Exception: The raw error to map: a definite error of the primary at once, else the
                primary's last transient error when no replica answered either.
        """
        regions = self.regions
        if regions is None:
            client = self.client
            return self._retrying(lambda: attempt(client, None), fetch, client, [0.0]), None
        started = self._clock()
        deadline = self._retry.deadline
        lost = [0.0]  # seconds of attempts that outlasted their client's timeouts: the process was stopped
        failure: Exception | None = None
        primary = self.client
        use_primary, with_retries = regions.primary_first()
        if use_primary:
            last_start = [regions.now()]  # of the primary's latest attempt: its failure may be old news

            def on_primary() -> _T:
                last_start[0] = regions.now()
                return attempt(primary, None)

            try:
                once = None if with_retries else 1
                result = self._retrying(on_primary, fetch, primary, lost, attempts=once, deadline=deadline / 2)
            except _CALL_ERRORS as err:
                if not is_transient(err):  # a definite answer: the primary is up, and no replica is asked
                    regions.primary_answered(region_of(primary), operation)
                    raise
                failure = err
                regions.primary_failed(region_of(primary), err, operation, last_start[0])
            except BaseException:
                regions.abandoned()
                raise
            else:
                regions.primary_answered(region_of(primary), operation)
                return result, None
        for replica in regions.replicas:
            left = deadline - (self._clock() - started - lost[0])
            if left <= 0 and (use_primary or failure is not None):  # the fetch's first attempt always starts
                break
            try:
                call = functools.partial(attempt, replica.client, replica.region)
                result = self._retrying(call, fetch, replica.client, lost, deadline=max(left, 0.0))
            except _CALL_ERRORS as err:
                if failure is None and not is_transient(err) and not isinstance(err, ClientUnusableError):
                    # The primary is backing off: a replica's definite answer (the secret is not
                    # replicated there, say) is no verdict on the secret.
                    verdict = err
                    err = ReplicaFailedError(
                        f"the primary Region is failing and replica {replica.region} answered {error_type(verdict)}"
                    )
                    err.__cause__ = verdict
                failure = failure or err  # the primary's error is the one to report
                continue
            if fetch is not None:
                fetch.replica = replica.region
            return result, replica.region
        assert failure is not None
        raise failure

    def _value(self, response: Any, secret_id: str, operation: str, replica: str | None) -> SecretValue:
        """The value of a response, read from the primary or from ``replica``.

        A replica's value carries the primary's ARN (the secret's identity, so a rotation is
        noticed once across Regions) and says where it was read from.
        """
        value = to_secret_value(response, secret_id, operation)
        primary = region_of(self.client)
        if replica is None:
            return value if primary is None else dataclasses.replace(value, region=primary)
        arn = value.arn if primary is None else in_region(value.arn, primary)
        return dataclasses.replace(value, arn=arn, region=replica)

    def _retrying(
        self,
        attempt: Callable[[], _T],
        fetch: Fetch | None,
        client: object,
        lost: list[float],
        *,
        attempts: int | None = None,
        deadline: float | None = None,
    ) -> _T:
        """Run ``attempt`` with ``client`` under the retry policy (:func:`retrying`), telling ``fetch`` of failures.

        ``fetch`` hears of each transient failure. An attempt that outlasted ``client``'s
        timeouts was stopped for some of that time (a Lambda freeze): it does not count against
        the deadline; its seconds are added to ``lost[0]``, so the replica Regions' share of the
        deadline, counted from the fetch's start, does not count them either.
        """
        falter = fetch.falter if fetch is not None else None

        def stopped(seconds: float) -> None:
            lost[0] += seconds

        run = functools.partial(retrying, clock=self._clock, sleep=self._sleep, attempt_limit=call_seconds(client))
        return run(attempt, self._retry, falter=falter, attempts=attempts, deadline=deadline, stopped=stopped)


def in_region(secret_id: str, region: str) -> str:
    """``secret_id`` as the same secret in ``region``: an ARN (full or partial) gets that Region, a name stays."""
    parts = secret_id.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn" or parts[2] != "secretsmanager":
        return secret_id
    parts[3] = region
    return ":".join(parts)
