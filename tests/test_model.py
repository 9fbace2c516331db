"""Model-based tests: a Hypothesis state machine against a model (the 16-thread run is in test_model_threads.py)."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import boto3
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.secretsmanager.models import FakeSecret, secretsmanager_backends
from pydantic import BaseModel, ConfigDict, model_validator

from secretcache import RetryPolicy, SecretCache, SecretChange, SecretNotFoundError, SecretValue
from secretcache.events import invalidate_from_event
from tests import atomic_moto
from tests.conftest import REGION, Calls, FakeClock

# The long runs: `pytest --hypothesis-profile=nightly`; the short ones, for CI's other Pythons:
# `--hypothesis-profile=compat` (profiles registered in tests/conftest.py).
HEAVY = settings.get_current_profile_name() == "nightly"
LIGHT = settings.get_current_profile_name() == "compat"

SECRETS = ("app/db", "app/api", "svc")
STAGES = ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING")
SPELLINGS = ("name", "arn", "partial")  # how a read or invalidate() names a secret
EVENT_SPELLINGS = (*SPELLINGS, "replica arn", "replica partial", "other account")  # how an event may name one
EVENT_SHAPES = ("trail", "native", "sns")
TTL = 10.0
# FAST_RETRY, but a remembered "not found" never outlives a TTL, so the model's one window covers it.
MODEL_RETRY = RetryPolicy(
    attempts=3, initial_delay=0.0, max_delay=0.0, deadline=30.0, failure_backoff=1.0, max_failure_backoff=8.0
)
# Multiples of 0.5 keep the fake clock's sums exact, so "exactly one TTL later" is a real boundary.
ADVANCES = (0.5, 1.0, 2.5, 5.0, 9.5, 10.0, 10.5, 30.0)

Labels = Mapping[tuple[str, str], str | None]
Outcome = tuple[str | None, frozenset[str]]  # (version id or None for "not found", its stages then)
ModelKey = tuple[str, str, str]  # ("stage", spelling, stage) or ("version", spelling, version id)
MISSING: Outcome = (None, frozenset())


class Validations:
    """How many times each model below was validated, by (model, secret, n of the value)."""

    lock = threading.Lock()
    counts: ClassVar[Counter[tuple[str, str, int]]] = Counter()

    @classmethod
    def count(cls, model: object) -> object:
        with cls.lock:
            cls.counts[type(model).__name__, model.secret, model.n] += 1  # type: ignore[attr-defined]
        return model

    @classmethod
    def total(cls) -> int:
        with cls.lock:
            return sum(cls.counts.values())


class FrozenDocument(BaseModel):
    """Every value of the machine's secrets, as a frozen model: one object shared by every reader of a version."""

    model_config = ConfigDict(frozen=True)
    secret: str
    n: int

    @model_validator(mode="after")
    def _counted(self) -> FrozenDocument:
        return Validations.count(self)  # type: ignore[return-value]


class MutableDocument(BaseModel):
    """The same as a mutable model: validated once per version too, but copied for each read."""

    secret: str
    n: int

    @model_validator(mode="after")
    def _counted(self) -> MutableDocument:
        return Validations.count(self)  # type: ignore[return-value]


MODELS: dict[str, type[BaseModel]] = {"frozen": FrozenDocument, "mutable": MutableDocument}
"""``get_secret_model`` readers, by getter name: typed reads of the machine's keys."""


def sync_moto_current(name: str, version_id: str) -> None:
    """Work around moto 5: UpdateSecretVersionStage does not move moto's own "current version".

    moto keeps a ``default_version_id`` that only PutSecretValue updates. After AWSCURRENT is
    moved with UpdateSecretVersionStage, a later PutSecretValue demotes the stale default and
    leaves AWSCURRENT on two versions (GetSecretValue then returns the older one). Real
    Secrets Manager moves the label; pointing moto's field at the new current version makes
    moto behave the same. Every mutation is followed by :meth:`CacheMachine._observe`, which fails
    loudly if the backend ever holds a label on two versions.
    """
    with atomic_moto.LOCK:
        secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID][REGION].secrets[name]
        assert isinstance(secret, FakeSecret)
        secret.default_version_id = version_id


_CLIENTS: list[Any] = []


def shared_clients() -> tuple[Any, Any]:
    """The admin client and the cache's client, shared by all examples (building one takes ~50 ms).

    Built inside the first example's ``mock_aws`` and only ever used inside one; moto's fresh
    backends per example are what isolates examples, not the clients.
    """
    if not _CLIENTS:
        _CLIENTS.extend(boto3.client("secretsmanager", region_name=REGION) for _ in range(2))
    return _CLIENTS[0], _CLIENTS[1]


def stages_of(version_id: str, name: str, labels: Labels) -> frozenset[str]:
    """The staging labels ``version_id`` of secret ``name`` carries in ``labels``."""
    return frozenset(stage for stage in STAGES if labels.get((name, stage)) == version_id)


@dataclass(frozen=True)
class Moment:
    """What the backend held, and the clock, while one step of the machine ran."""

    clock: float
    labels: Labels  # (secret name, stage) -> version id, or None while the label is absent


class CacheMachine(RuleBasedStateMachine):
    """A real ``SecretCache`` over in-process moto, checked step by step against a model.

    The cache runs with ttl=10 s, no jitter, no refresh-ahead, a fake clock, no retry delays
    and a failure backoff capped below the TTL. Three secrets are read by name, full ARN and
    partial ARN, by staging label (AWSCURRENT, AWSPREVIOUS, AWSPENDING) and by version id, while
    rules put new values, stage AWSPENDING values and promote them with
    UpdateSecretVersionStage, invalidate (also through change events naming the secret by any
    spelling, or by its ARN in a replica Region or another account), force refreshes and advance
    the clock.

    The model does not predict the cache; it records, for every step, the clock and which
    version every label pointed to, and which steps read which cache key (a key is the
    spelling plus the stage or version id; only a step reading a key can fetch it). Rule:

    * A read of a label at step ``n`` may return what the label pointed to at step ``n`` (the
      backend's current answer) or at an earlier step ``r`` that read the same key, provided
      ``r`` is not before the last ``invalidate()`` of that secret (any spelling, or all) or
      the last forced refresh of that key, and ``clock(r) > clock(n) - ttl``. "What it pointed
      to" is the version id together with all its labels at that step (``version_stages`` is
      a snapshot taken when fetched), or "not found" while the label was absent (a remembered
      not-found lasts at most the backoff, which is kept below the TTL).
    * TTL is a bound, not a hint: a read of a label never returns a version (or a "not found")
      the label left more than ``ttl`` before (no stale-while-revalidate window is configured,
      and the backend always answers). The rule above implies it; it is checked on its own
      because it is the promise users rely on.
    * A read by version id returns exactly that version; its labels are a snapshot from an
      allowed step (version ids never expire, so only invalidation and forcing bound it).
    * A read that calls GetSecretValue returns the current answer; a read with no allowed
      earlier step must call it (expired, invalidated, forced or never read); a read makes at
      most one call (no faults are injected), and rereading at once makes no call and returns
      the same thing.
    * Counters: a read that called the API is one miss, one served from the cache one hit, a
      remembered error neither; the cache's GetSecretValue count equals what botocore saw.
    * Typed reads (``get_secret_model``, a frozen and a mutable model) validate once per version
      a key holds: a typed read of a key validates nothing when the last typed read of that key
      and model got the same version and, since, the secret was not invalidated and no change
      of its label was reported (so the key's entry can only have been refetched with that same
      version: by TTL, forcing, a refresh or a prefetch); then a frozen model is the very
      object that read got. Any other typed read that returns a version validates it once. A
      mutable model is a copy of its own for each read: changing it changes no later read.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mock = mock_aws()
        self.mock.start()
        self.admin, client = shared_clients()
        self.calls = Calls(client)
        self.clock = FakeClock()
        self.cache = self._make_cache(client)
        self.values: dict[str, str] = {}  # version id -> its SecretString
        self.by_number: dict[tuple[str, int], str] = {}  # (secret, n) of the JSON value -> version id
        self.versions: dict[str, list[str]] = defaultdict(list)
        self.spellings: dict[str, dict[str, str]] = {}
        self.owner: dict[str, str] = {}  # any spelling -> secret name
        self.labels: dict[tuple[str, str], str | None] = {}
        self.history: list[Moment] = []
        self.touched: dict[ModelKey, list[int]] = defaultdict(list)
        self.forced_at: dict[ModelKey, int] = {}
        self.invalidated_at: dict[str, int] = dict.fromkeys(SECRETS, 0)
        # (key, model getter) -> the version the last typed read got and the object; forgotten
        # when the secret is invalidated or a change of the key's label is reported.
        self.typed: dict[tuple[ModelKey, str], tuple[str, Any]] = {}
        # What a change forgot, until the slot's next typed read: a read served at once while the
        # background refresh it queued reports the change gets the version it held (validated).
        self.forgotten: dict[tuple[ModelKey, str], tuple[str, Any]] = {}
        self.typed_lock = threading.Lock()  # listeners run on the cache's threads too
        self.cache.on_change(self._forget_typed)
        self.written = 0
        for name in SECRETS:
            arn = self.admin.create_secret(Name=name, SecretString=self._next_value(name))["ARN"]
            self.spellings[name] = {"name": name, "arn": arn, "partial": arn[:-7]}
            for spelling in self.spellings[name].values():
                self.owner[spelling] = name
            self._observe(name)

    def _make_cache(self, client: Any) -> SecretCache:
        """The cache under test: strict TTL, no jitter, no refresh-ahead, the fake clock."""
        return SecretCache(client, ttl=TTL, ttl_jitter=0.0, refresh_ahead=None, retry=MODEL_RETRY, clock=self.clock)

    def teardown(self) -> None:
        try:
            self._close()
        finally:
            self.cache.client.meta.events.unregister("before-call.secretsmanager.*", self.calls._before_call)
            self.mock.stop()

    def _close(self) -> None:
        """Close the cache at the end of an example."""
        self.cache.close()

    # -- backend -------------------------------------------------------------------------

    def _next_value(self, name: str) -> str:
        self.written += 1
        return json.dumps({"secret": name, "n": self.written})

    def _observe(self, name: str) -> None:
        """Record what the backend now holds for ``name``; fail if a label is on two versions."""
        held = atomic_moto.versions(name, REGION)
        found = {version_id: stages for version_id, (stages, _) in held.items()}
        for version_id, (_, value) in held.items():
            if version_id not in self.values:
                assert value is not None
                self.values[version_id] = value
                self.by_number[name, json.loads(value)["n"]] = version_id
                self.versions[name].append(version_id)
        for stage in STAGES:
            holders = [version_id for version_id, stages in found.items() if stage in stages]
            assert len(holders) <= 1, f"moto put {stage} of {name} on {len(holders)} versions: {found}"
            self.labels[name, stage] = holders[0] if holders else None
        assert self.labels[name, "AWSCURRENT"] is not None, f"moto lost AWSCURRENT of {name}: {found}"

    def _step(self) -> int:
        self.history.append(Moment(self.clock(), dict(self.labels)))
        return len(self.history) - 1

    # -- the model -----------------------------------------------------------------------

    def _outcome(self, step: int, name: str, kind: str, what: str) -> Outcome:
        labels = self.history[step].labels
        version_id = labels[name, what] if kind == "stage" else what
        return MISSING if version_id is None else (version_id, stages_of(version_id, name, labels))

    def _allowed(self, key: ModelKey, name: str, step: int) -> tuple[set[Outcome], bool]:
        """Outcomes the read of ``key`` at ``step`` may have, and whether it must fetch."""
        kind, _, what = key
        floor = max(self.invalidated_at[name], self.forced_at.get(key, 0))
        now = self.history[step].clock
        earlier = [
            r
            for r in self.touched[key]
            if floor <= r <= step and (kind == "version" or self.history[r].clock > now - TTL)
        ]
        allowed = {self._outcome(r, name, kind, what) for r in [*earlier, step]}
        return allowed, not earlier

    def _call(self, read: Callable[[], Any]) -> tuple[Outcome | str, int, tuple[int, int]]:
        """Run one read: its outcome (a bare version id for the string and JSON getters), calls, counters."""
        calls, stats = self.calls["GetSecretValue"], self.cache.stats()
        outcome = self._read_outcome(read)
        after = self.cache.stats()
        return outcome, self.calls["GetSecretValue"] - calls, (after.hits - stats.hits, after.misses - stats.misses)

    def _read_outcome(self, read: Callable[[], Any]) -> Outcome | str:
        """Run ``read``: its outcome, ``MISSING`` for "not found"."""
        try:
            result = read()
        except SecretNotFoundError:
            return MISSING
        return self._decode(result)

    def _decode(self, result: Any) -> Outcome | str:
        if isinstance(result, SecretValue):
            name = self.owner[result.name]
            assert result.arn == self.spellings[name]["arn"]
            assert result.secret_binary is None
            assert result.secret_string == self.values[result.version_id], "version id and value disagree"
            return result.version_id, frozenset(result.version_stages)
        if isinstance(result, BaseModel):
            return self.by_number[result.secret, result.n]  # type: ignore[attr-defined]
        if isinstance(result, str):
            result = json.loads(result)
        return self.by_number[result["secret"], result["n"]]

    def _read(self, name: str, key: ModelKey, read: Callable[[], Any], reread: Callable[[], Any]) -> None:
        step = self._step()
        allowed, must_fetch = self._allowed(key, name, step)
        self.touched[key].append(step)
        outcome, made, moved = self._call(read)
        self._check_read(key, name, step, outcome, made, allowed, must_fetch)
        self._check_moved(outcome, made, moved)
        again, made, moved = self._call(reread)
        assert made == 0, f"rereading {key} at once called the API"
        self._check_again(key, name, step, outcome, again)
        self._check_moved(again, 0, moved)

    def _check_read(
        self,
        key: ModelKey,
        name: str,
        step: int,
        outcome: Outcome | str,
        made: int,
        allowed: set[Outcome],
        must_fetch: bool,
        *,
        may_join: bool = False,
    ) -> None:
        """One read against the model; ``may_join``: it may have waited for another thread's fetch."""
        self._check(outcome, allowed, f"{key} at step {step}")
        self._check_ttl_bound(key, name, step, outcome)
        assert made in (0, 1), f"one read of {key} made {made} calls"
        current = self._outcome(step, name, key[0], key[2])
        if made:
            assert _matches(outcome, current), f"{key} fetched {outcome}, but the backend held {current}"
        elif must_fetch:  # joining a fetch of this step is fine: it returns the backend's current answer
            stale = f"{key} was served from the cache past its TTL or an invalidation"
            assert may_join, stale
            assert _matches(outcome, current), stale

    def _check_ttl_bound(self, key: ModelKey, name: str, step: int, outcome: Outcome | str) -> None:
        """TTL is a bound: a label read never returns a version the label left more than TTL ago."""
        kind, _, stage = key
        if kind != "stage":
            return
        version_id = outcome if isinstance(outcome, str) else outcome[0]  # None: "not found"
        held = [r for r in range(step + 1) if self.history[r].labels[name, stage] == version_id]
        assert held, f"{key} at step {step} returned {version_id}, never behind {stage}"
        if held[-1] < step:  # the label moved away during step held[-1], at that step's clock
            age = self.history[step].clock - self.history[held[-1]].clock
            assert age < TTL, f"{key} at step {step} returned {version_id}, superseded {age:g} s ago (ttl {TTL:g})"

    def _check_moved(self, outcome: Outcome | str, made: int, moved: tuple[int, int]) -> None:
        """The hit and miss counters one read moved: a fetch is one miss, a cached value one hit."""
        if made:
            assert moved == (0, 1), "a read that waited for a fetch is one miss"
        else:
            expected = (1, 0) if outcome != MISSING else (0, 0)
            assert moved == expected, f"counters moved by {moved} for {outcome}"

    def _check_again(self, key: ModelKey, name: str, step: int, outcome: Outcome | str, again: Outcome | str) -> None:
        """Rereading at once returns what the read returned."""
        assert _matches(again, outcome) if isinstance(again, tuple) else _matches(outcome, again)

    @staticmethod
    def _check(outcome: Outcome | str, allowed: set[Outcome], where: str) -> None:
        assert any(_matches(outcome, option) for option in allowed), f"{where}: got {outcome}, allowed {allowed}"

    # -- rules ---------------------------------------------------------------------------

    def _reader(self, key: ModelKey, getter: str, force: bool, explicit: bool) -> Callable[[], Any]:
        """The call reading ``key``; ``explicit`` passes AWSCURRENT instead of leaving it out."""
        kind, secret_id, what = key
        args: dict[str, Any] = {"version_id": what} if kind == "version" else {"version_stage": what}
        if kind == "stage" and what == "AWSCURRENT" and not explicit:
            args["version_stage"] = None
        if getter == "refresh":
            return lambda: self.cache.refresh(secret_id, **args)
        if getter in MODELS:
            return lambda: self.cache.get_secret_model(secret_id, MODELS[getter], force_refresh=force, **args)
        method = {
            "string": self.cache.get_secret_string,
            "json": self.cache.get_secret_json,
            "value": self.cache.get_secret,
        }[getter]
        return lambda: method(secret_id, force_refresh=force, **args)

    def _read_key(self, key: ModelKey, getter: str, *, force: bool = False, explicit: bool = False) -> None:
        if force or getter == "refresh":
            self.forced_at[key] = len(self.history)  # the step _read is about to take
        reread = self._reader(key, "value", False, explicit)
        read = self._reader(key, getter, force, explicit)
        if getter not in MODELS:
            self._read(self.owner[key[1]], key, read, reread)
            return
        typed: list[Any] = []  # validations made, then the object read (none if it raised)

        def counted() -> Any:
            before = Validations.total()
            try:
                typed.append(read())
                return typed[-1]
            finally:
                typed.insert(0, Validations.total() - before)

        self._read(self.owner[key[1]], key, counted, reread)
        self._check_typed(key, getter, typed[0], typed[1] if len(typed) > 1 else None)

    def _check_typed(self, key: ModelKey, getter: str, validations: int, got: Any) -> None:
        """A typed read validated once per version its key holds; a frozen model is shared, a mutable one copied."""
        slot = (key, getter)
        with self.typed_lock:
            held = self.typed.pop(slot, None)
            forgotten = self.forgotten.pop(slot, None)
        if got is None:  # "not found": nothing to validate
            assert validations == 0, f"{key} validated {validations} times for a read that raised"
            return
        version = self.by_number[got.secret, got.n]
        if held is None and forgotten is not None and forgotten[0] == version:
            held = forgotten  # served before the change its own refresh reported landed
        if held is not None and held[0] == version:
            assert validations == 0, f"{key}: {getter} model of {version} validated again ({validations})"
            assert getter != "frozen" or got is held[1], f"{key}: a new frozen model of {version}, same version"
        else:
            assert validations == 1, f"{key}: {getter} model of {version} validated {validations} times, not once"
        if getter == "mutable":
            assert held is None or got is not held[1], f"{key}: a mutable model handed out twice"
            got.n = -1  # the reader's own copy: no later read sees this
        with self.typed_lock:
            self.typed[slot] = (version, got)

    def _forget_typed(self, change: SecretChange) -> None:
        """Listener: a key of the changed label now holds (or will fetch) another version than its models'."""
        with self.typed_lock:
            for (kind, secret_id, stage), getter in list(self.typed):
                if kind == "stage" and self.owner[secret_id] == change.name and stage == change.version_stage:
                    slot = (kind, secret_id, stage), getter
                    self.forgotten[slot] = self.typed.pop(slot)

    @rule(
        name=st.sampled_from(SECRETS),
        spelling=st.sampled_from(SPELLINGS),
        stage=st.sampled_from([None, *STAGES]),
        getter=st.sampled_from(["string", "json", "value", *MODELS]),
    )
    def read_label(self, name: str, spelling: str, stage: str | None, getter: str) -> None:
        key: ModelKey = ("stage", self.spellings[name][spelling], stage or "AWSCURRENT")
        self._read_key(key, getter, explicit=stage is not None)

    @rule(
        name=st.sampled_from(SECRETS),
        spelling=st.sampled_from(SPELLINGS),
        stage=st.sampled_from(STAGES),
        getter=st.sampled_from(["refresh", "string", "value", *MODELS]),
    )
    def force_refresh(self, name: str, spelling: str, stage: str, getter: str) -> None:
        self._read_key(("stage", self.spellings[name][spelling], stage), getter, force=True, explicit=True)

    @rule(
        data=st.data(),
        name=st.sampled_from(SECRETS),
        spelling=st.sampled_from(SPELLINGS),
        getter=st.sampled_from(["value", "string", "json", "refresh", *MODELS]),
        force=st.booleans(),
    )
    def read_version(self, data: st.DataObject, name: str, spelling: str, getter: str, force: bool) -> None:
        version_id = data.draw(st.sampled_from(self.versions[name]), label="version_id")
        self._read_key(("version", self.spellings[name][spelling], version_id), getter, force=force)

    @precondition(lambda self: self.touched)
    @rule(data=st.data(), getter=st.sampled_from(["string", "json", "value", *MODELS]), explicit=st.booleans())
    def read_again(self, data: st.DataObject, getter: str, explicit: bool) -> None:
        """Read a key read before: most interesting histories revisit a key."""
        key = data.draw(st.sampled_from(sorted(self.touched)), label="key")
        self._read_key(key, getter, explicit=explicit)

    @rule(name=st.sampled_from([None, *SECRETS]), spelling=st.sampled_from(SPELLINGS))
    def invalidate(self, name: str | None, spelling: str) -> None:
        step = self._step()
        self._invalidate(None if name is None else self.spellings[name][spelling])
        self._invalidated(name, step)

    @rule(name=st.sampled_from(SECRETS), spelling=st.sampled_from(EVENT_SPELLINGS), shape=st.sampled_from(EVENT_SHAPES))
    def invalidate_by_event(self, name: str, spelling: str, shape: str) -> None:
        """A change event naming the secret (docs/fleet.md) drops what ``invalidate()`` drops.

        The event names it as a read may (name, full or partial ARN), or by its ARN in a replica
        Region or in another account; as CloudTrail's ``requestParameters.secretId``, a native
        ``Secret Label Updated`` event's resource (its ``detail.name`` for a name), or a CloudTrail
        event inside an SNS notification.
        """
        arn = self.spellings[name]["arn"]
        secret_id = {
            "replica arn": arn.replace(f":{REGION}:", ":us-west-2:"),
            "replica partial": arn.replace(f":{REGION}:", ":us-west-2:")[:-7],
            "other account": arn.replace(f":{DEFAULT_ACCOUNT_ID}:", ":210987654321:"),
        }.get(spelling) or self.spellings[name][spelling]
        trail = {
            "source": "aws.secretsmanager",
            "detail-type": "AWS API Call via CloudTrail",
            "detail": {"eventName": "PutSecretValue", "requestParameters": {"secretId": secret_id}},
        }
        event: Any = {
            "trail": trail,
            "native": {
                "source": "aws.secretsmanager",
                "detail-type": "Secret Label Updated",
                "resources": [secret_id] if secret_id.startswith("arn:") else [],
                "detail": {"name": name, "labelUpdated": "AWSCURRENT"},
            },
            "sns": json.dumps({"Type": "Notification", "Message": json.dumps(trail)}),
        }[shape]
        step = self._step()
        assert self._apply_event(event) == [secret_id]
        self._invalidated(name, step)

    def _apply_event(self, event: Any) -> list[str]:
        """``invalidate_from_event()`` on the cache: the ids it invalidated."""
        return invalidate_from_event(self.cache, event)

    def _invalidated(self, name: str | None, step: int) -> None:
        """Note that ``name`` (``None``: every secret) was invalidated at ``step``."""
        with self.typed_lock:
            self.typed = {slot: held for slot, held in self.typed.items() if name not in (None, self.owner[slot[0][1]])}
            self.forgotten = {
                slot: held for slot, held in self.forgotten.items() if name not in (None, self.owner[slot[0][1]])
            }
        if name is None:
            self.invalidated_at = dict.fromkeys(self.invalidated_at, step)
        else:
            self.invalidated_at[name] = step

    def _invalidate(self, secret_id: str | None) -> None:
        """``invalidate()`` on the cache."""
        self.cache.invalidate(secret_id)

    @rule(name=st.sampled_from(SECRETS), by_arn=st.booleans())
    def put_value(self, name: str, by_arn: bool) -> None:
        self._step()
        secret_id = self.spellings[name]["arn" if by_arn else "name"]
        self.admin.put_secret_value(SecretId=secret_id, SecretString=self._next_value(name))
        self._observe(name)

    @rule(name=st.sampled_from(SECRETS))
    def stage_pending(self, name: str) -> None:
        self._step()
        self.admin.put_secret_value(SecretId=name, SecretString=self._next_value(name), VersionStages=["AWSPENDING"])
        self._observe(name)

    def _promotable(self) -> list[str]:
        return [
            name for name in SECRETS if self.labels[name, "AWSPENDING"] not in (None, self.labels[name, "AWSCURRENT"])
        ]

    @precondition(lambda self: self._promotable())
    @rule(data=st.data(), drop_pending=st.booleans())
    def promote_pending(self, data: st.DataObject, drop_pending: bool) -> None:
        name = data.draw(st.sampled_from(self._promotable()), label="name")
        self._step()
        pending, current = self.labels[name, "AWSPENDING"], self.labels[name, "AWSCURRENT"]
        assert pending is not None
        assert current is not None
        self.admin.update_secret_version_stage(
            SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=pending, RemoveFromVersionId=current
        )
        sync_moto_current(name, pending)
        if drop_pending:  # as a finished rotation does
            self.admin.update_secret_version_stage(
                SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=pending
            )
        self._observe(name)

    @rule(seconds=st.sampled_from(ADVANCES))
    def advance_clock(self, seconds: float) -> None:
        self._step()
        self.clock.advance(seconds)

    @invariant()
    def counters_match_the_backend(self) -> None:
        stats = self.cache.stats()
        assert stats.api_calls.get("GetSecretValue", 0) == self.calls["GetSecretValue"] == self.calls.total
        assert (stats.stale_served, stats.background_refreshes) == (0, 0)


def machine_settings(*, examples: int, heavy_examples: int, steps: int, heavy_steps: int) -> settings:
    """A state machine's Hypothesis settings: its counts (the long ones under the nightly profile,
    a third of the examples under the compat one), no deadline."""
    profile = settings.get_current_profile_name()
    return settings(
        max_examples={"nightly": heavy_examples, "compat": -(-examples // 3)}.get(profile, examples),
        stateful_step_count=heavy_steps if profile == "nightly" else steps,
        deadline=None,
        database=None,  # nothing written into the repository
        report_multiple_bugs=False,  # shrink the first failure only
    )


def _matches(outcome: Outcome | str, option: Outcome | str) -> bool:
    """Whether an observed outcome fits an allowed one (a bare version id only checks the id)."""
    if isinstance(outcome, str) or isinstance(option, str):
        left = outcome if isinstance(outcome, str) else outcome[0]
        right = option if isinstance(option, str) else option[0]
        return left == right
    return outcome == option


# A failure takes a while to shrink (each example replays against moto); let it finish and print.
@pytest.mark.unmeasured  # randomized: run unmeasured (CONTRIBUTING.md, "Coverage")
@pytest.mark.timeout(600)
class TestCacheAgainstModel(CacheMachine.TestCase):  # type: ignore[misc,valid-type]
    """Every read stays within what the TTL, invalidations and forced refreshes allow."""

    # 70 examples, + 30 of the seams machine, which replays these rules too
    settings = machine_settings(examples=70, heavy_examples=500, steps=30, heavy_steps=60)


@pytest.mark.parametrize(("profile", "examples", "steps"), [("ci", 70, 30), ("compat", 24, 30), ("nightly", 500, 60)])
def test_each_profile_sets_the_machines_counts(profile: str, examples: int, steps: int) -> None:
    """ci runs a machine's own counts, compat (CI's other Pythons) a third of its examples, nightly the long ones."""
    before = settings.get_current_profile_name()
    settings.load_profile(profile)
    try:
        chosen = machine_settings(examples=70, heavy_examples=500, steps=30, heavy_steps=60)
    finally:
        settings.load_profile(before)
    assert (chosen.max_examples, chosen.stateful_step_count) == (examples, steps)
