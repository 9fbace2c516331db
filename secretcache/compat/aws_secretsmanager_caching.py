"""Drop-in for the official ``aws-secretsmanager-caching`` library (1.2): change the import, keep the code.

::

    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig              # before
    from secretcache.compat.aws_secretsmanager_caching import SecretCache, SecretCacheConfig  # after

``SecretCache``, ``SecretCacheConfig``, ``InjectSecretString`` and ``InjectKeywordedSecretString`` take
the same arguments as the originals and return the same results, with a
:class:`secretcache.SecretCache` underneath (``SecretCache.cache``), so code can move to the full API
one call at a time. Errors are the ones the original raises: botocore's exceptions (``ClientError``
and its modelled subclasses such as ``client.exceptions.ResourceNotFoundException``), each a new
object with secretcache's typed error as ``__cause__``; secretcache's typed error itself where no
botocore error is involved. The decorators raise ``RuntimeError`` for a secret without the asked-for
JSON shape, with the original's messages.

How each ``SecretCacheConfig`` field is mapped:

| field (default) | secretcache |
| --- | --- |
| `max_cache_size` (1024) | `max_size`: counts (secret, staging label) entries, not secrets |
| `exception_retry_delay_base` (1) | `RetryPolicy.failure_backoff` (at most `exception_retry_delay_max`) |
| `exception_retry_growth_factor` (2) | none: the pause doubles after each failed fetch; another value warns (`CompatWarning`) and is ignored |
| `exception_retry_delay_max` (3600) | `RetryPolicy.max_failure_backoff` |
| `default_version_stage` ("AWSCURRENT") | the `version_stage` of reads that name none, of `refresh_secret_now` and of the decorators |
| `secret_refresh_interval` (3600) | `ttl`: a value is served at most this long (less up to 10 %, `ttl_jitter`) while Secrets Manager answers; the original refreshes at a random point between half the interval and the interval |
| `secret_cache_hook` (None) | none: values are kept as immutable `SecretValue` objects and never pass through a hook; setting one warns (`CompatWarning`) and it is ignored |
| (no field) | `max_stale` 3600 s, `refresh_ahead` 0.8, `ttl_jitter` 0.1, `RetryPolicy` attempts and delays: secretcache's defaults |

Where the original behaves differently (its defects are not inherited):

| behaviour | aws-secretsmanager-caching 1.2 | this adapter |
| --- | --- | --- |
| `refresh_secret_now` | sleeps 2.5 to 5 s before fetching, or what is left of a failure backoff up to 10 s, holding up the caller | no sleep: fetches at once the default label and each other label of the secret read so far (joining a fetch already running); `True` only if every fetch succeeded (a label no version carries, the default one included, is an answer while the secret exists, as in the original) |
| refreshes keep failing | serves the last value forever, also after the secret was deleted or access to it revoked | serves the last good value through an outage (throttling, 5xx, timeouts) up to `max_stale` (3600 s) past its TTL, then raises; a definite answer (deleted, access denied) stops serving it at the next fetch |
| reads while a secret is refreshed | a per-secret lock is held across `DescribeSecret` and `GetSecretValue`: every reader of that secret waits | a hit takes no lock; a secret read regularly is refreshed in the background before it expires, so its reads never wait once warm; readers of a cold or expired key share one fetch |
| API calls | `DescribeSecret` per refresh, plus `GetSecretValue` by `VersionId` per new version | one `GetSecretValue` by `VersionStage` per staging label per TTL; one `DescribeSecret` (however many readers meet it; the others wait for it at most the cache's wait bound, then raise the `GetSecretValue` error) when it answers `ResourceNotFoundException`, to tell a missing label (`None`) from a missing secret (raises) |
| `InjectSecretString` on a method | guesses: injects after the first argument whenever that argument's class has an attribute named like the function, so `def upper(secret, text)` called with a `str` gets its arguments swapped | knows: injects after `self` only when the function is called as a method, also through decorators stacked over it (`functools.wraps` wrappers, `functools.lru_cache`, `property`, `classmethod`: `cls` first, where the original gives `cls` the secret); a function kept in a class without `self` and called through it gets the secret first; a `staticmethod` under it never gets one |
| a secret id that is blank, over 2048 characters or holds a control character | sends it; Secrets Manager refuses it | `InvalidSecretRequestError` before any call (`None`, a non-str and `""` raise botocore's `ParamValidationError`, as in the original) |
| a stubbed answer without `SecretString` or `SecretBinary` | returns `None` | refused as malformed (Secrets Manager always sends a value) |
| `InjectKeywordedSecretString` on a binary secret (or a label no version carries), or JSON that is not an object | `TypeError` | `RuntimeError`, like invalid JSON, naming which |
| errors | the `DescribeSecret` error; one exception object re-raised to every reader | the `GetSecretValue` error, a new object per raise; a failure with no botocore error behind it (a blank or over-long secret id, a fetch interrupted, a wait past its bound) raises secretcache's typed error |
| no `client` given | built at construction, with botocore's default retries | built on first read, botocore's retries off; secretcache's retry policy (3 attempts, jittered backoff, 10 s deadline) instead |

Everything here is thread-safe, like the :class:`secretcache.SecretCache` underneath.
"""  # noqa: E501 - the tables above are pasted into docs/migrating.md; a Markdown row cannot wrap

from __future__ import annotations

import functools
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.validate import ParamValidator

import secretcache
from secretcache._cache import store_of
from secretcache._policy import check_size, to_seconds
from secretcache._public import publish
from secretcache.compat._official_decorators import InjectKeywordedSecretString, InjectSecretString

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["CompatWarning", "InjectKeywordedSecretString", "InjectSecretString", "SecretCache", "SecretCacheConfig"]

_CURRENT = "AWSCURRENT"


class CompatWarning(UserWarning):
    """A ``SecretCacheConfig`` setting secretcache has no equivalent for; it is ignored."""


class SecretCacheConfig:
    """The settings of a :class:`SecretCache`, under the original library's names.

    Accepts exactly the original's fields, as keywords; an unknown name raises ``TypeError`` as
    the original does. The module docstring maps each field to secretcache's settings. Values
    are checked when a :class:`SecretCache` is built from the config, which reads it then and
    keeps no reference to it (the original copies it too).

    Not locked: build it, then hand it to :class:`SecretCache`.

    Args:
        max_cache_size: Most entries held (one per secret and staging label).
        exception_retry_delay_base: Seconds without a fetch of a secret after a failed fetch.
        exception_retry_growth_factor: Must stay 2: the pause doubles after each consecutive
            failure. Another value warns (:class:`CompatWarning`) and is ignored.
        exception_retry_delay_max: Longest such pause, in seconds.
        default_version_stage: Staging label of reads that name none.
        secret_refresh_interval: Seconds a fetched value is served (secretcache's ``ttl``).
        secret_cache_hook: Not supported: secretcache never passes values through a hook.
            Setting one warns (:class:`CompatWarning`) and it is ignored.

    Raises:
        TypeError: An unknown field, or a positional argument.
    """

    OPTION_DEFAULTS: Mapping[str, object] = types.MappingProxyType(
        {
            "max_cache_size": 1024,
            "exception_retry_delay_base": 1,
            "exception_retry_growth_factor": 2,
            "exception_retry_delay_max": 3600,
            "default_version_stage": "AWSCURRENT",
            "secret_refresh_interval": 3600,
            "secret_cache_hook": None,
        }
    )
    """Every field with its default, as the original lists them (read-only)."""

    def __init__(
        self,
        *,
        max_cache_size: int = 1024,
        exception_retry_delay_base: float = 1,
        exception_retry_growth_factor: float = 2,
        exception_retry_delay_max: float = 3600,
        default_version_stage: str = "AWSCURRENT",
        secret_refresh_interval: float = 3600,
        secret_cache_hook: object | None = None,
    ) -> None:
        self.max_cache_size = max_cache_size
        self.exception_retry_delay_base = exception_retry_delay_base
        self.exception_retry_growth_factor = exception_retry_growth_factor
        self.exception_retry_delay_max = exception_retry_delay_max
        self.default_version_stage = default_version_stage
        self.secret_refresh_interval = secret_refresh_interval
        self.secret_cache_hook = secret_cache_hook

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.OPTION_DEFAULTS)
        return f"SecretCacheConfig({fields})"


def _unsupported(config: SecretCacheConfig) -> list[str]:
    """Why each field of ``config`` that secretcache cannot honour is ignored."""
    reasons = []
    factor = config.exception_retry_growth_factor
    if not isinstance(factor, (int, float)) or isinstance(factor, bool):
        raise TypeError(f"exception_retry_growth_factor must be a number, not {type(factor).__name__}")
    if factor != 2:
        reasons.append(
            f"exception_retry_growth_factor={factor!r} is ignored: secretcache doubles the pause after each "
            "failed fetch (RetryPolicy.failure_backoff up to max_failure_backoff)"
        )
    if config.secret_cache_hook is not None:
        reasons.append(
            "secret_cache_hook is ignored: secretcache keeps each fetched value as an immutable SecretValue "
            "and never passes values through a hook"
        )
    return reasons


class SecretCache:
    """The original ``SecretCache`` API over a :class:`secretcache.SecretCache`.

    Thread-safe: share one instance. Its lifecycle is the wrapped cache's (``cache.close()``
    stops its background refreshes; the original needs no closing, and an unclosed cache's
    refresh threads end after ten idle seconds).

    Args:
        config: The settings, mapped as the module docstring shows (default: the defaults).
        client: A ``secretsmanager`` client (boto3 or botocore). When omitted, one is built on
            first read from the default credential and Region chain.
        cache: Wrap this :class:`secretcache.SecretCache` instead of building one from
            ``config``, so new code and old call sites share one cache. Only the
            ``default_version_stage`` and the unsupported fields of ``config`` then apply; its
            other fields must keep their defaults, and ``client`` and ``clock`` are refused.
        clock: Monotonic seconds for the cache built from ``config`` (tests use a fake one).

    Raises:
        TypeError: A setting has the wrong type.
        ValueError: A setting is out of range, or ``cache`` comes with settings it fixes itself.
    """

    def __init__(
        self,
        config: SecretCacheConfig | None = None,
        client: SecretsManagerClient | BaseClient | None = None,
        *,
        cache: secretcache.SecretCache | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        config = SecretCacheConfig() if config is None else config
        if not isinstance(config, SecretCacheConfig):
            raise TypeError(f"config must be a SecretCacheConfig, not {type(config).__name__}")
        stage = config.default_version_stage
        if not isinstance(stage, str):
            raise TypeError(f"default_version_stage must be a str, not {type(stage).__name__}")
        if not stage:
            raise ValueError("default_version_stage must be a staging label such as 'AWSCURRENT', not empty")
        for reason in _unsupported(config):
            warnings.warn(reason, CompatWarning, stacklevel=2)
        if cache is None:
            cache = secretcache.SecretCache(
                cast("SecretsManagerClient | None", client), clock=clock, **_settings(config)
            )
        else:
            _check_wrapping(config, cache, client, clock)
        self._cache = cache
        self._stage = stage
        # Labels read other than the default, per secret, so that refresh_secret_now refreshes
        # what the original's refresh (of the whole label-to-version map) would; oldest dropped first.
        self._labels: dict[tuple[str, str], None] = {}
        self._labels_lock = threading.Lock()
        self._labels_max = cache.max_size
        # GetSecretValue's ResourceNotFoundException does not say whether the secret or only the
        # label is missing: DescribeSecret tells, about once per fetch (see _exists).
        self._described: weakref.WeakKeyDictionary[BaseException, _Describe] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"SecretCache(default_version_stage={self._stage!r}, cache={self._cache!r})"

    @property
    def cache(self) -> secretcache.SecretCache:
        """The :class:`secretcache.SecretCache` underneath, for code moving to the full API."""
        return self._cache

    def get_secret_string(self, secret_id: str, version_stage: str | None = None) -> str | None:
        """Return the secret's ``SecretString``, or ``None`` if it holds binary data (as the original).

        Args:
            secret_id: The secret's name, full ARN or partial ARN.
            version_stage: Staging label to read (default: ``default_version_stage``, also for
                ``""``). ``None`` is returned when no version of the secret carries the label, or
                when it is not a str (as the original, whose lookup then finds no version).

        Raises:
            botocore.exceptions.ParamValidationError: ``secret_id`` is not a str, or is empty
                (botocore's own check, before any call, as the original).
            botocore.exceptions.ClientError: Secrets Manager refused the read (the secret does
                not exist, access denied, ...), or kept failing past ``max_stale``.
            secretcache.SecretCacheError: A failure that involves no botocore error.
        """
        value = self._read(secret_id, version_stage)
        return None if value is None else value.secret_string

    def get_secret_binary(self, secret_id: str, version_stage: str | None = None) -> bytes | None:
        """Return the secret's ``SecretBinary``, or ``None`` if it holds a string (as the original).

        Takes the same arguments and raises the same errors as :meth:`get_secret_string`.
        """
        value = self._read(secret_id, version_stage)
        return None if value is None else value.secret_binary

    def refresh_secret_now(self, secret_id: str) -> bool:
        """Fetch the secret now, without sleeping, and report whether that worked.

        Fetches the default staging label and the other labels of the secret read through this
        object (the last ``max_cache_size`` first read, over all secrets), each joining a fetch of
        it already running, as the original's refresh of the whole label-to-version map would. A
        label that no longer exists (the ``AWSPENDING`` of a finished rotation), or a
        ``default_version_stage`` no version carries, is remembered as missing and does not count
        as a failure while the secret exists (as in the original, whose refresh is a
        ``DescribeSecret``). When a fetch fails, reads keep the last good value as usual.

        Returns:
            ``True`` if every fetch succeeded, else ``False``: never raises for a failed fetch,
            nor for a ``secret_id`` that is not a usable id (as the original).
        """
        if not isinstance(secret_id, str):
            return False
        with self._labels_lock:
            labels = [label for name, label in self._labels if name == secret_id]
        refreshed = True
        for label in [self._stage, *labels]:
            try:
                result = self._cache.try_refresh(secret_id, version_stage=None if label == _CURRENT else label)
            except secretcache.SecretNotFoundError as err:
                # A label no version carries, of a secret that exists: an answer, as in the original.
                refreshed = refreshed and (label != self._stage or self._exists(secret_id, err.__cause__))
            except secretcache.SecretCacheError:
                refreshed = False
            else:
                refreshed = refreshed and not result.stale  # a failed fetch whose last good value is kept
        return refreshed

    def _read(self, secret_id: str, version_stage: str | None) -> secretcache.SecretValue | None:
        label = version_stage or self._stage
        if not isinstance(secret_id, str) or not secret_id:
            _check_params(secret_id)  # raises ParamValidationError, as botocore does for the original
        if not isinstance(label, str):
            # The original describes the secret (raising if that fails), then finds no version
            # carrying such a label: the default label's read stands for the description.
            self._read(secret_id, None)
            return None
        if label != self._stage and 0 < len(label) <= _MAX_LABEL:  # one no version can carry is not refreshed
            self._remember(secret_id, label)
        try:
            # AWSCURRENT is passed as None: that read takes the cache's lock-free hit path.
            return self._cache.get_secret(secret_id, version_stage=None if label == _CURRENT else label)
        except secretcache.SecretNotFoundError as err:
            if self._exists(secret_id, err.__cause__):
                return None  # the secret exists and no version carries the label: the original returns None
            _raise_as_original(err)
        except secretcache.InvalidSecretRequestError as err:
            if label != self._stage and len(label) > _MAX_LABEL:
                return None  # too long for a label: no version carries it
            _raise_as_original(err)
        except secretcache.SecretCacheError as err:
            _raise_as_original(err)

    def _exists(self, secret_id: str, cause: BaseException | None) -> bool:
        """Whether the secret of a ``ResourceNotFoundException`` exists, by ``DescribeSecret``.

        A definite answer is kept for ``cause``, the botocore error the cache re-raises until it
        fetches again; a failed ``DescribeSecret`` (not allowed, throttled, interrupted) counts as
        "missing" for the reads that waited for it only, so the ``GetSecretValue`` error stands.
        Readers that meet a new ``cause`` at the same moment share one ``DescribeSecret``: the
        first asks, the others wait for its answer at most the cache's wait bound (the retry
        deadline plus the client's timeouts), then count it as failed. A read made while this
        thread asks, further up its stack (a log handler of the call), does not wait for itself.
        """
        if not isinstance(cause, ClientError):
            return False
        mine: _Describe | None = None
        try:
            with self._labels_lock:
                asking = self._described.get(cause)
                if asking is None or (asking.done.is_set() and asking.exists is None):
                    mine = asking = _Describe()  # bound before it is shared: the finally below sees it
                    self._described[cause] = mine
            if mine is not None:
                mine.exists = self._describe(secret_id)
            elif not asking.done.is_set():
                if asking.thread == threading.get_ident():
                    return False  # asked further up this thread's stack: its answer cannot come first
                asking.done.wait(store_of(self._cache).wait_bound)
            return asking.exists is True
        finally:
            if mine is not None:  # on every path, BaseException included: no waiter is left waiting
                mine.done.set()

    def _describe(self, secret_id: str) -> bool | None:
        """Whether ``DescribeSecret`` finds the secret; ``None`` when it fails otherwise."""
        try:
            self._cache.client.describe_secret(SecretId=secret_id)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                return None
            return False
        except (BotoCoreError, secretcache.SecretCacheError):
            return None
        return True

    def _remember(self, secret_id: str, label: str) -> None:
        pair = (secret_id, label)
        if pair in self._labels:
            return
        with self._labels_lock:
            self._labels[pair] = None
            if len(self._labels) > self._labels_max:
                del self._labels[next(iter(self._labels))]


class _Describe:
    """One ``DescribeSecret``, shared by the readers that met one ``ResourceNotFoundException``."""

    __slots__ = ("done", "exists", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()  # the thread making the call
        self.exists: bool | None = None  # its answer; None until it is in, or if the call failed
        self.done = threading.Event()  # set once the call has ended, however it ended


def _settings(config: SecretCacheConfig) -> dict[str, Any]:
    """The :class:`secretcache.SecretCache` settings ``config`` maps to, checked under its field names."""
    delay_max = to_seconds(config.exception_retry_delay_max, "exception_retry_delay_max", allow_inf=False)
    delay = to_seconds(config.exception_retry_delay_base, "exception_retry_delay_base", allow_inf=False)
    return {
        "ttl": to_seconds(config.secret_refresh_interval, "secret_refresh_interval"),
        "max_size": check_size(config.max_cache_size, "max_cache_size", minimum=1),
        # The original caps the first pause at the maximum too.
        "retry": secretcache.RetryPolicy(failure_backoff=min(delay, delay_max), max_failure_backoff=delay_max),
    }


_MAX_LABEL = 256


@functools.lru_cache(maxsize=1)
def _get_secret_value_input() -> Any:
    """The input shape of ``GetSecretValue``, from botocore's bundled service model (loaded once)."""
    model = botocore.session.get_session().get_service_model("secretsmanager")
    return model.operation_model("GetSecretValue").input_shape


def _check_params(secret_id: object) -> None:
    """Raise botocore's ``ParamValidationError`` if it refuses ``secret_id``, as it does for the original."""
    report = ParamValidator().validate({"SecretId": secret_id}, _get_secret_value_input())
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


def _check_wrapping(
    config: SecretCacheConfig, cache: object, client: object, clock: Callable[[], float] | None
) -> None:
    """Refuse settings that a given ``cache`` fixes itself."""
    if not isinstance(cache, secretcache.SecretCache):
        raise TypeError(f"cache must be a secretcache.SecretCache, not {type(cache).__name__}")
    if client is not None or clock is not None:
        raise ValueError("pass client and clock to the secretcache.SecretCache given as cache, not here")
    fixed = ("max_cache_size", "exception_retry_delay_base", "exception_retry_delay_max", "secret_refresh_interval")
    changed = [name for name in fixed if getattr(config, name) != SecretCacheConfig.OPTION_DEFAULTS[name]]
    if changed:
        raise ValueError(
            f"{', '.join(changed)} would be ignored: the secretcache.SecretCache given as cache sets these"
        )


def _raise_as_original(err: secretcache.SecretCacheError) -> NoReturn:
    """Raise what the original raises for ``err``: a new copy of the botocore error behind it, if any."""
    cause = err.__cause__
    original: Exception | None = None
    try:
        if isinstance(cause, ClientError):  # its own class: client.exceptions.ResourceNotFoundException, ...
            original = type(cause)(cause.response, cause.operation_name)
        elif isinstance(cause, BotoCoreError):
            original = type(cause)(**cause.kwargs)
    except Exception:  # a botocore class with a constructor of its own: keep secretcache's error
        original = None
    if original is None:
        raise err
    raise original from err


publish(globals(), ["InjectKeywordedSecretString", "InjectSecretString"])  # defined in _official_decorators
