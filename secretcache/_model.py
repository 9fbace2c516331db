"""Typed secrets: a secret's JSON document validated into a model once per cached version.

``get_secret_model`` validates an entry's parsed document (:meth:`Entry.json`) with pydantic's
``TypeAdapter`` (one per model type, built on first use) and keeps the result with the entry, in
its memo's ``models`` (:class:`~secretcache._entry.Memo`, shared by the entries of one version),
keyed by the model (and the JSON key read): a hit is the cache's lock-free hit plus one
dictionary lookup. A rotation installs a new entry, so the next read validates the new
version once. A frozen model (``frozen=True`` pydantic model or dataclass) is shared by every
reader; any other object is copied per read, as ``get_secret_json`` copies its documents.

Concurrent readers of one version validate once: the first claims the validation, the others wait
for it (:func:`held_of`). A failed validation is remembered on the entry too, as the message of a
:class:`SecretFormatError` built afresh for each read. Pydantic's ``ValidationError`` carries
the input (``str()`` prints ``input_value=...``, ``errors()`` hold ``input``), so the error
raised here keeps only field paths and error types, and is built after the ``except`` block
ends: no pydantic error is chained as ``__cause__`` or ``__context__``.

Pydantic is imported on the first validation, never by ``import secretcache``.

:class:`SecretWatch` holds the last valid object of one secret and label, updated by the cache's
``on_change`` listener mechanism when a fetch finds a new version.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from secretcache._entry import Entry, thaw
from secretcache._errors import SecretCacheError, SecretFormatError
from secretcache._fork import track
from secretcache._json import select_key
from secretcache._keys import CacheKey, names
from secretcache._logs import callable_name, facts

if TYPE_CHECKING:
    from typing_extensions import Self

    from secretcache._run import Runner
    from secretcache._store import Store
    from secretcache._value import SecretChange

__all__ = ["MAX_LISTED_ERRORS", "SecretWatch", "check_model", "held_of", "model_of"]

M = TypeVar("M")

logger = logging.getLogger("secretcache")

MAX_LISTED_ERRORS = 10
"""Most failing fields a validation error lists (the message says how many more there were)."""

_FAILED: Any = object()  # the object held for a version that failed validation


class _Raise:
    """The "copier" held for a failed validation: each read raises a new error with the message."""

    __slots__ = ("message", "secret_id")

    def __init__(self, message: str, secret_id: str) -> None:
        self.message = message
        self.secret_id = secret_id

    def error(self) -> SecretFormatError:
        """A new error for one read (never shared, so no traceback piles up on it)."""
        return SecretFormatError(self.message, secret_id=self.secret_id)

    def __call__(self, _held: object) -> Any:
        raise self.error()


class _Validator:
    """How one model type is validated and handed out: its ``TypeAdapter``, its per-read copy, its field names."""

    __slots__ = ("adapter", "copier", "name", "names")

    def __init__(self, adapter: Any, copier: Callable[[Any], Any] | None, name: str) -> None:
        self.adapter = adapter
        self.copier = copier  # None: immutable, shared by every reader
        self.name = name
        self.names = declared_names(adapter.core_schema)  # what an error's field path may show


_validators: dict[Any, _Validator] = {}


def _name_of(model: object) -> str:
    return str(getattr(model, "__qualname__", None) or repr(model))


def check_model(model: object) -> None:
    """Refuse what cannot be a model before any I/O: ``None``, instances, strings.

    Raises:
        TypeError: ``model`` is not a class or a typing construct.
    """
    if model is None or isinstance(model, (str, bytes, int, float, dict, list, tuple)):
        raise TypeError(f"model must be a pydantic model, a dataclass or a TypedDict class, not {type(model).__name__}")


def validator_for(model: Any) -> _Validator:
    """The validator of ``model``, built on first use and kept (a race builds two; one is kept).

    Raises:
        ImportError: pydantic 2 is not installed.
        TypeError: pydantic cannot validate ``model``.
    """
    found = _validators.get(model)
    if found is not None:
        return found
    try:
        from pydantic import BaseModel, TypeAdapter
    except ImportError:  # pragma: no cover - the extra is installed wherever the tests run
        raise ImportError(
            "get_secret_model() and watch() need pydantic 2: pip install 'secretcache[pydantic]'"
        ) from None
    name = _name_of(model)
    try:
        adapter = TypeAdapter(model)
    except Exception as err:  # PydanticSchemaGenerationError, PydanticUserError: about the type, no data
        raise TypeError(f"pydantic cannot validate {name}: {err}") from err
    copier: Callable[[Any], Any] | None = _copy_value  # TypedDicts and anything else: copied per read
    if isinstance(model, type) and issubclass(model, BaseModel):
        copier = None if model.model_config.get("frozen") else _copy_model
    elif isinstance(model, type) and dataclasses.is_dataclass(model):
        params = getattr(model, "__dataclass_params__", None)
        copier = None if getattr(params, "frozen", False) else copy.deepcopy
    return _validators.setdefault(model, _Validator(adapter, copier, name))


_FIELDS = ("model-fields", "typed-dict", "dataclass-args")  # the core schemas that declare fields


def declared_names(schema: object) -> frozenset[str]:
    """Every field name and validation alias a pydantic core schema declares, at any depth.

    They come from the model's source, never from a document: a validation error's field path
    shows these, and nothing else it holds (a dict's keys, an undeclared field's name, a union's
    tag) as text, since those are the document's own and may be secret.
    """
    names: set[str] = set()
    seen: set[int] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            fields = node.get("fields") if node.get("type") in _FIELDS else None
            if isinstance(fields, dict):  # a model's or a TypedDict's: {name: field}
                names.update(name for name in fields if isinstance(name, str))
            for field in fields.values() if isinstance(fields, dict) else fields if isinstance(fields, list) else ():
                if isinstance(field, dict):  # a dataclass's fields carry their name
                    names.update(_strings(field.get("name")), _strings(field.get("validation_alias")))
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return frozenset(names)


def _strings(alias: object) -> list[str]:
    """The names in a field's name or alias: a string, or lists of them (``AliasPath``, ``AliasChoices``)."""
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, (list, tuple)):
        return [name for item in alias for name in _strings(item)]
    return []


_SHARED = (str, bytes, int, float, bool, type(None), frozenset)  # immutable leaves: shared by the copies


def _copy_model(model: Any) -> Any:
    """A deep copy of a pydantic model, a fraction of the cost of ``model_copy(deep=True)``.

    Built as pydantic's own ``__copy__`` builds one (a new instance given the four attributes
    pydantic keeps), with every field value copied by :func:`_copy_value`: immutable leaves,
    ``SecretStr`` and frozen models shared, containers and mutable models copied, anything else
    deep-copied.
    """
    cls = model.__class__
    copied = cls.__new__(cls)
    fields = dict(model.__dict__)
    for name, value in fields.items():
        if not isinstance(value, _SHARED):
            fields[name] = _copy_value(value)
    extra, private = model.__pydantic_extra__, model.__pydantic_private__
    set_attribute = object.__setattr__
    set_attribute(copied, "__dict__", fields)
    set_attribute(copied, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    set_attribute(copied, "__pydantic_extra__", None if extra is None else _copy_value(extra))
    set_attribute(copied, "__pydantic_private__", None if private is None else copy.deepcopy(private))
    return copied


def _copy_value(value: Any) -> Any:
    if isinstance(value, _SHARED):
        return value
    if isinstance(value, dict):
        return {key: _copy_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_value(item) for item in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_copy_value(item) for item in value)
    if isinstance(value, set):
        return {_copy_value(item) for item in value}
    from pydantic import BaseModel, SecretBytes, SecretStr

    if isinstance(value, (SecretStr, SecretBytes)):
        return value  # immutable: its value is only read
    if isinstance(value, BaseModel):
        return value if value.model_config.get("frozen") else _copy_model(value)
    return copy.deepcopy(value)


_MARKERS = frozenset({"[key]"})  # what pydantic itself puts in a path: "the key of this dict item"


def _describe(err: Any, names: frozenset[str]) -> tuple[int, str]:
    """How many errors a ``ValidationError`` holds and their field paths and types (no input, no message).

    A path shows list positions and the field names and aliases of ``names``; any other part
    (a key of the document: a dict's, an undeclared field's, a union's tag) is ``*``.
    """
    problems = err.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for problem in problems[:MAX_LISTED_ERRORS]:
        path = (
            str(part) if isinstance(part, int) or part in names or part in _MARKERS else "*"
            for part in problem.get("loc", ())
        )
        loc = ".".join(path) or "(root)"
        parts.append(f"{loc} ({problem.get('type', 'invalid')})")
    more = len(problems) - MAX_LISTED_ERRORS
    return len(problems), "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _validate(entry: Entry, secret_id: str, model: Any, key: str | None) -> tuple[Any, Any]:
    """Validate the entry's document (or one key of it) into ``model``: what to hold for it.

    Raises:
        SecretFormatError: Binary data, invalid JSON, or ``key`` missing (not remembered: the
            JSON getters raise these alike).
    """
    validator = validator_for(model)
    document = entry.json(secret_id)
    data = thaw(document if key is None else select_key(document, key, secret_id))  # never the cached one
    from pydantic import ValidationError

    described: tuple[int, str] | None = None
    raised: str | None = None
    try:
        validated = validator.adapter.validate_python(data)
    except ValidationError as err:
        described = _describe(err, validator.names)  # only paths and types: err holds the input, not kept
    except Exception as err:  # a validator's own error (pydantic turns only ValueError and AssertionError
        raised = type(err).__name__  # into a ValidationError): its message may quote the value, so not kept
    of = f"key {key!r} of secret {secret_id!r}" if key is not None else f"secret {secret_id!r}"
    # Built after the except block: no ValidationError (or validator error) as __context__.
    if raised is not None:
        message = f"validating {of} as {validator.name} raised {raised} (its message is not shown: it may hold a value)"
        return _FAILED, _Raise(message, secret_id)
    if described is None:
        return validated, validator.copier
    count, listed = described
    plural = "s" if count != 1 else ""
    message = f"{of} does not match {validator.name}: {count} validation error{plural}: {listed}"
    return _FAILED, _Raise(message, secret_id)


# Single flight of validations: one thread validates an (entry, model) pair, others wait for it.
_guard = threading.Lock()
_pending: dict[tuple[int, Any], tuple[threading.Event, int]] = {}


def _reset_after_fork() -> None:  # pragma: no cover - runs in forked children
    """In a forked child: the threads that were validating are gone, so are their claims."""
    global _guard
    _guard = threading.Lock()
    _pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def held_of(entry: Entry, secret_id: str, model: Any, key: str | None) -> tuple[Any, Any]:
    """What the entry holds for ``model`` (and ``key``), validating it first if nobody has.

    Returns:
        ``(object, copier)``: ``copier`` is ``None`` for a shared immutable object, a copy
        function otherwise, or for a failed validation a function that raises its error.

    Raises:
        SecretFormatError: Binary data, invalid JSON, ``key`` missing.
        TypeError: pydantic cannot validate ``model``.
        RuntimeError: A validator of ``model`` reads this very model of this very version.
    """
    slot = model if key is None else (model, key)
    memo = entry.memo  # shared by the entries of this version (Table.install): validated once for all
    token = (id(memo), slot)
    me = threading.get_ident()
    while True:
        models = memo.models
        if models is not None and slot in models:
            return models[slot]
        with _guard:
            models = memo.models
            if models is not None and slot in models:
                return models[slot]
            waiting = _pending.get(token)
            if waiting is None:
                event = threading.Event()
                _pending[token] = (event, me)
        if waiting is None:
            break
        if waiting[1] == me:
            raise RuntimeError(f"validating {_name_of(model)} for secret {secret_id!r} reads it again")
        waiting[0].wait()
    try:
        held = _validate(entry, secret_id, model, key)
        with _guard:
            memo.models = {**(memo.models or {}), slot: held}  # copied on write: readers take no lock
    finally:
        with _guard:
            _pending.pop(token, None)
        event.set()
    return held


def model_of(entry: Entry, secret_id: str, model: Any, key: str | None) -> Any:
    """The entry's document validated into ``model``: the shared object, or a copy if it is mutable.

    Raises:
        SecretFormatError: The document does not match ``model`` (field paths and error types
            named, no value), or binary data, invalid JSON, ``key`` missing.
        TypeError: pydantic cannot validate ``model``.
    """
    models = entry.memo.models
    held = None if models is None else models.get(model if key is None else (model, key))
    if held is None:
        held = held_of(entry, secret_id, model, key)
    validated, copier = held
    return validated if copier is None else copier(validated)


class SecretWatch(Generic[M]):
    """The last valid model object of one secret and label, following new versions as they arrive.

    Built by :meth:`SecretCache.watch` (or ``await`` :meth:`AsyncSecretCache.watch`). When a
    fetch of the secret finds a new version (the cache's :meth:`~SecretCache.on_change`
    mechanism), the version is validated once; if it matches the model it becomes
    :attr:`current` and ``on_change`` is called with it, else the failure is logged (field paths
    and error types, never a value), ``on_error`` is called with a :class:`SecretFormatError`,
    and the last valid object is kept.

    Reading :attr:`current` never blocks, never raises and never runs a callback: it returns the
    object held, and when the cached value is due for a refresh (or expired) it starts that
    fetch in the background, so a watch read often follows rotations even when nothing else
    reads the secret. A new version it finds cached that no change brought the watch (an
    orphaned fetch announced it first) is taken on the cache's refresh threads.

    Callbacks run on the thread that fetched (a background thread for refresh-ahead), one at a
    time per watch and in version order; they may read the cache. Exceptions they raise are
    logged and swallowed. :meth:`close` (or leaving a ``with`` block) stops them: once it
    returns, none runs.
    """

    def __init__(
        self,
        *,
        store: Store,
        runner: Runner,
        key: CacheKey,
        model: Any,
        json_key: str | None,
        entry: Entry,
        on_change: Callable[[M], object] | None,
        on_error: Callable[[SecretFormatError], object] | None,
        subscribe: Callable[[Callable[[SecretChange], None]], Callable[[], None]],
    ) -> None:
        secret_id = key.secret_id
        validated, copier = held_of(entry, secret_id, model, json_key)
        if validated is _FAILED:
            raise copier.error()
        self._store, self._runner, self._key = store, runner, key
        self._model, self._json_key, self._secret_id = model, json_key, secret_id
        self._held: Any = validated
        self._copier: Callable[[Any], Any] | None = copier
        self._version = entry.value.version_id if entry.value is not None else ""
        self._failed_version: str | None = None
        self._deferred: str | None = None  # a version current handed to the refresh threads to take
        self._on_change, self._on_error = on_change, on_error
        self._lock = threading.RLock()
        self._closed = False
        self._unsubscribe = subscribe(self._changed)
        track(self)  # a callback running at a fork holds the lock, in the child by no thread

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"version_id={self._version!r}"
        return f"SecretWatch(secret_id={self._secret_id!r}, model={_name_of(self._model)}, {state})"

    @property
    def current(self) -> M:
        """The last valid object (a copy per read for a mutable model); never blocks, raises or calls back."""
        entry = self._nudge()
        if entry is not None and entry.value is not None:
            version = entry.value.version_id
            if version not in (self._version, self._failed_version, self._deferred):
                self._catch_up(entry, version)
        held, copier = self._held, self._copier
        return held if copier is None else copier(held)  # type: ignore[no-any-return]

    def _catch_up(self, entry: Entry, version: str) -> None:
        """Take ``entry``, a version no change brought (an orphaned fetch saw it first), on a refresh thread.

        Not on the reader's thread: taking it validates, may wait for a callback running on
        another thread, and calls ``on_change`` (never on an event loop, never in a read).
        """
        self._deferred = version
        if not self._runner.defer(lambda: self._take(entry)):
            self._deferred = None  # the pool is full or closed: a later read tries again

    @property
    def version_id(self) -> str:
        """The version id of :attr:`current`."""
        return self._version

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def close(self) -> None:
        """Stop following new versions (idempotent); :attr:`current` keeps the last valid object.

        Once it returns no callback runs: it waits for one running on another thread to return
        (called from a callback of this watch, it returns at once and that callback finishes).
        """
        self._closed = True  # a take that has not started sees it and does nothing
        self._unsubscribe()
        with self._lock:  # held by a take already past that check, until its callback returns
            pass

    def __enter__(self) -> Self:
        return self

    def _after_fork_in_child(self) -> None:
        """A new lock: a callback running on another thread at the fork held it, and is gone here."""
        self._lock = threading.RLock()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _nudge(self) -> Entry | None:
        """A cached entry that may be served at once, starting its due refresh in the background."""
        if self._closed:
            return None
        store, key = self._store, self._key
        if key.current:
            entry = store.hit(key.secret_id)
            if entry is not None:
                return entry
        try:
            step = store.begin(key, False, None, runs_here=False)
        except (RuntimeError, SecretCacheError):  # closed, or an error remembered: keep what we hold
            return None
        if isinstance(step, Entry):
            return step
        if step.served is not None:  # a refresh is due: the refresh pool runs it
            self._runner.submit(step.flight)
            return step.served
        if step.owner:  # expired: a thread fetches; the listener takes the answer
            with contextlib.suppress(RuntimeError):  # no thread to be had (the flight is completed): tried again later
                self._runner.start(step.flight)
        return None

    def _changed(self, change: SecretChange) -> None:
        """The cache's listener: a label moved; if it is ours, take the new version.

        It takes the entry the change installed, under whichever spelling it was read: no read,
        so the fetching thread (perhaps a reader's) never waits here for a fetch of the watch's
        own spelling, and starts nothing. Should no entry hold the version (an orphaned fetch,
        invalidated mid-call, installs nothing), :attr:`current` takes it once a read caches it.
        """
        if self._closed or change.version_stage != self._key.stage:
            return
        if not names(self._secret_id, change.name, change.arn):  # exact: app-config's partial ARN is not app's
            return
        _, entry = self._store.newest(self._key, change.arn)
        if entry is not None:
            self._take(entry)

    def _take(self, entry: Entry) -> None:
        """Validate ``entry``'s version; hold it and call ``on_change`` if valid, else report it."""
        with self._lock:
            if self._closed or entry.value is None:
                return
            version = entry.value.version_id
            if version in (self._version, self._failed_version):
                return
            newest, _ = self._store.newest(self._key, entry.value.arn)
            if newest is not None and newest != version:  # read before a newer one was served (a listener
                return  # late with it, a hit raced by a rotation): never take the watch back
            try:
                validated, copier = held_of(entry, self._secret_id, self._model, self._json_key)
            except SecretFormatError as err:  # binary, invalid JSON, key missing: ours, no value
                validated, copier = _FAILED, _Raise(str(err), self._secret_id)
            if validated is _FAILED:
                self._failed_version = version
                error = copier.error()
                logger.warning(
                    "secret %r version %s is not kept; the watch keeps version %s: %s",
                    self._secret_id,
                    version,
                    self._version,
                    error,
                    extra=facts("watch", secret_name=self._secret_id, version_id=version, error=error),
                )
                self._call(self._on_error, error, version)
                return
            self._held, self._copier, self._version = validated, copier, version
            self._failed_version = None
            if self._on_change is not None:
                self._call(self._on_change, validated if copier is None else copier(validated), version)

    def _call(self, callback: Callable[[Any], object] | None, argument: object, version: str) -> None:
        """Call ``callback(argument)`` about ``version``; log what it raises, with the record's facts."""
        if callback is None:
            return
        try:
            callback(argument)
        except Exception as err:
            extra = facts("watch", secret_name=self._secret_id, version_id=version, error=err)
            shown = callable_name(callback)  # its repr may show a value it holds (a bound method's object)
            logger.exception("watch callback %s failed for secret %r", shown, self._secret_id, extra=extra)
