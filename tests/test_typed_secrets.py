"""Typed secrets: ``get_secret_model`` validates once per cached version and model, errors carry no value."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, model_validator
from typing_extensions import TypedDict

from secretcache import AsyncSecretCache, RetryPolicy, SecretCache, SecretFormatError
from secretcache._model import held_of
from tests.conftest import WATCHDOG, Calls, FakeClock, inside, wait_until
from tests.leaks import assert_value_absent
from tests.test_cache import make_cache, rotate
from tests.test_packaging import run_fresh

SECRET = "prod/orders/db"
PASSWORD = "pw-LEAKMARK-91c2"  # a distinctive value: tests search errors and logs for it
DOCUMENT = {"host": "db.internal", "port": 5432, "username": "orders", "password": PASSWORD}


class Counted(BaseModel):
    """Counts its validations (a ``before`` model validator runs once per validation)."""

    validations: ClassVar[list[int]] = []

    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any) -> Any:
        cls.validations.append(1)
        return data


class Database(Counted):
    model_config = ConfigDict(frozen=True)
    validations: ClassVar[list[int]] = []

    host: str
    port: int
    username: str
    password: SecretStr


class MutableDatabase(Counted):
    validations: ClassVar[list[int]] = []

    host: str
    port: int
    username: str
    password: SecretStr
    options: list[str] = []


@dataclasses.dataclass(frozen=True)
class FrozenCredentials:
    username: str
    password: str


@dataclasses.dataclass
class Credentials:
    username: str
    password: str


class CredentialsDict(TypedDict):
    username: str
    password: str


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    Database.validations.clear()
    MutableDatabase.validations.clear()


@pytest.fixture
def cache(client: Any, admin: Any, clock: FakeClock) -> SecretCache:
    admin.create_secret(Name=SECRET, SecretString=json.dumps(DOCUMENT))
    return make_cache(client, clock)


def test_import_secretcache_loads_neither_pydantic_nor_pydantic_settings() -> None:
    """``import secretcache`` (and the model module behind get_secret_model) leaves pydantic unloaded."""
    code = """if True:
        import json, sys
        import secretcache, secretcache._model
        print(json.dumps(sorted(sys.modules)))
    """
    loaded = run_fresh(code)
    assert [name for name in loaded if name.startswith(("pydantic", "pydantic_settings", "pydantic_core"))] == []


class TestKindsOfModel:
    def test_frozen_model_is_validated_and_shared(self, cache: SecretCache) -> None:
        """A frozen pydantic model is built from the document once and the same object is returned."""
        first = cache.get_secret_model(SECRET, Database)
        assert (first.host, first.port, first.username) == ("db.internal", 5432, "orders")
        assert first.password.get_secret_value() == PASSWORD
        assert PASSWORD not in repr(first)
        assert cache.get_secret_model(SECRET, Database) is first

    def test_mutable_model_is_copied_per_read(self, cache: SecretCache) -> None:
        """A mutable model is validated once, and each read gets a deep copy a caller may change."""
        first = cache.get_secret_model(SECRET, MutableDatabase)
        first.options.append("sslmode=disable")
        first.host = "elsewhere"
        second = cache.get_secret_model(SECRET, MutableDatabase)
        assert second is not first
        assert (second.host, second.options) == ("db.internal", [])
        assert len(MutableDatabase.validations) == 1

    def test_dataclasses_and_typed_dicts(self, cache: SecretCache, admin: Any) -> None:
        """Dataclasses (frozen shared, others copied) and TypedDicts (copied) validate through TypeAdapter."""
        admin.create_secret(Name="app/creds", SecretString=json.dumps({"username": "u", "password": "p"}))
        frozen = cache.get_secret_model("app/creds", FrozenCredentials)
        assert frozen == FrozenCredentials("u", "p")
        assert cache.get_secret_model("app/creds", FrozenCredentials) is frozen
        plain = cache.get_secret_model("app/creds", Credentials)
        plain.password = "changed"
        assert cache.get_secret_model("app/creds", Credentials) == Credentials("u", "p")
        typed = cache.get_secret_model("app/creds", CredentialsDict)
        typed["password"] = "changed"
        assert cache.get_secret_model("app/creds", CredentialsDict) == {"username": "u", "password": "p"}

    def test_key_selects_a_nested_document(self, cache: SecretCache, admin: Any) -> None:
        """``key`` validates one top-level key of the document; a missing key is a SecretFormatError."""
        admin.create_secret(Name="app/all", SecretString=json.dumps({"db": DOCUMENT, "other": 1}))
        assert cache.get_secret_model("app/all", Database, key="db").username == "orders"
        with pytest.raises(SecretFormatError, match="has no JSON key 'nope'"):
            cache.get_secret_model("app/all", Database, key="nope")

    def test_the_document_the_json_getters_serve_is_not_shared_with_a_model(self, cache: SecretCache) -> None:
        """A model built from the cached document leaves ``get_secret_json``'s copies intact."""

        class Loose(BaseModel):
            model_config = ConfigDict(frozen=True)
            everything: Any = None

        class Wrapper(BaseModel):
            model_config = ConfigDict(frozen=True, extra="allow")

        shared = cache.get_secret_model(SECRET, Wrapper)
        assert shared.model_extra is not None
        shared.model_extra["host"] = "mutated"
        assert cache.get_secret_json(SECRET, "host") == "db.internal"

    def test_labels_and_version_ids(self, cache: SecretCache, admin: Any) -> None:
        """``version_stage`` and ``version_id`` read their own versions, each validated for itself."""
        pending = admin.put_secret_value(
            SecretId=SECRET, SecretString=json.dumps({**DOCUMENT, "username": "next"}), VersionStages=["AWSPENDING"]
        )["VersionId"]
        assert cache.get_secret_model(SECRET, Database).username == "orders"
        assert cache.get_secret_model(SECRET, Database, version_stage="AWSPENDING").username == "next"
        assert cache.get_secret_model(SECRET, Database, version_id=pending).username == "next"

    def test_what_is_not_a_model_is_refused_before_any_call(self, client: Any, clock: FakeClock) -> None:
        """A model that is no class, or a key that is no string, fails with TypeError and makes no call."""
        calls = Calls(client)
        cache = make_cache(client, clock)
        with pytest.raises(TypeError, match="model must be"):
            cache.get_secret_model(SECRET, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be a str"):
            cache.get_secret_model(SECRET, Database, key=3)  # type: ignore[arg-type]
        assert calls.total == 0

    def test_binary_secret_is_a_format_error(self, cache: SecretCache, admin: Any) -> None:
        """A binary secret has no JSON document to validate, as with get_secret_json."""
        admin.create_secret(Name="app/blob", SecretBinary=json.dumps(DOCUMENT).encode())
        with pytest.raises(SecretFormatError, match="binary"):
            cache.get_secret_model("app/blob", Database)


def counted_cache(client: Any, admin: Any, clock: FakeClock, **options: Any) -> tuple[SecretCache, Calls]:
    """A cache (``make_cache`` with ``options``) over the secret holding ``DOCUMENT``, and its counted calls."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(DOCUMENT))
    calls = Calls(client)
    return make_cache(client, clock, **options), calls


class TestValidatedOnce:
    def test_ten_thousand_hits_validate_once_and_a_rotation_once_more(
        self, client: Any, admin: Any, clock: FakeClock
    ) -> None:
        """10,000 reads make 1 call and 1 validation; after a rotation and the TTL, 1 more of each."""
        cache, calls = counted_cache(client, admin, clock)
        objects = {id(cache.get_secret_model(SECRET, Database)) for _ in range(10_000)}
        assert (len(objects), len(Database.validations), calls["GetSecretValue"]) == (1, 1, 1)
        assert cache.stats().hits == 9_999
        rotate(admin, SECRET, json.dumps({**DOCUMENT, "username": "rotated"}))
        clock.advance(61)
        after = [cache.get_secret_model(SECRET, Database) for _ in range(10_000)]
        assert after[0].username == "rotated"
        assert all(item is after[0] for item in after)
        assert (len(Database.validations), calls["GetSecretValue"]) == (2, 2)

    def test_a_refresh_finding_the_same_version_validates_nothing_again(
        self, client: Any, admin: Any, clock: FakeClock
    ) -> None:
        """Past the TTL, and on refresh(), a fetch of the same version keeps its objects: once per version."""
        cache, calls = counted_cache(client, admin, clock)
        frozen = cache.get_secret_model(SECRET, Database)
        cache.get_secret_model(SECRET, MutableDatabase)
        for _ in range(3):
            clock.advance(61)
            assert cache.get_secret_model(SECRET, Database) is frozen
            cache.refresh(SECRET)
            assert cache.get_secret_model(SECRET, Database) is frozen
            assert cache.get_secret_model(SECRET, MutableDatabase).username == "orders"
        assert (calls["GetSecretValue"], len(Database.validations), len(MutableDatabase.validations)) == (7, 1, 1)
        rotate(admin, SECRET, json.dumps({**DOCUMENT, "username": "rotated"}))
        cache.refresh(SECRET)
        assert cache.get_secret_model(SECRET, Database).username == "rotated"
        assert len(Database.validations) == 2

    def test_an_outage_serving_the_cached_version_validates_nothing_again(
        self, client: Any, admin: Any, clock: FakeClock
    ) -> None:
        """A read served the last good value while fetching fails, and the refetch after it, keep its objects."""
        once = RetryPolicy(attempts=1, initial_delay=0.0, max_delay=0.0)
        cache, calls = counted_cache(client, admin, clock, retry=once)
        frozen = cache.get_secret_model(SECRET, Database)
        clock.advance(61)
        recover = calls.fail_with("ThrottlingException")
        assert cache.get_secret_model(SECRET, Database) is frozen  # stale, while fetching fails
        assert cache.stats().stale_served == 1
        recover()
        clock.advance(61)  # past the failure backoff: the same version is fetched again
        assert cache.get_secret_model(SECRET, Database) is frozen
        assert (len(Database.validations), cache.stats().errors) == (1, 1)

    def test_a_validation_running_while_a_refresh_finds_the_same_version_serves_the_new_entry_too(
        self, client: Any, admin: Any, clock: FakeClock
    ) -> None:
        """A refresh installing the same version while a reader validates it: later reads reuse that validation."""
        cache, calls = counted_cache(client, admin, clock)
        cache.get_secret_string(SECRET)  # warm, not validated yet
        Gated.validations.clear()
        results: list[Gated] = []
        [reader] = _readers(1, lambda: results.append(cache.get_secret_model(SECRET, Gated)))
        wait_until(lambda: inside(reader, _hold_validation))  # validating the entry the refresh replaces
        cache.refresh(SECRET)  # the same version, in a new entry
        _release_validation_once_all_arrived([reader])
        assert cache.get_secret_model(SECRET, Gated) is results[0]
        assert (calls["GetSecretValue"], len(Gated.validations)) == (2, 1)

    def test_each_model_and_key_is_validated_once_per_version(self, cache: SecretCache) -> None:
        """Two models of one version are two validations, each done once."""
        for _ in range(100):
            cache.get_secret_model(SECRET, Database)
            cache.get_secret_model(SECRET, MutableDatabase)
        assert (len(Database.validations), len(MutableDatabase.validations)) == (1, 1)

    def test_thirty_two_threads_on_a_cold_key_make_one_call_and_one_validation(
        self, client: Any, admin: Any, clock: FakeClock
    ) -> None:
        """Concurrent first reads share one GetSecretValue and one validation, and get one object.

        The fetch is held until all 32 readers joined it, and the validation until every reader
        is validating or waiting for another's validation: nothing here depends on timing.
        """
        admin.create_secret(Name=SECRET, SecretString=json.dumps(DOCUMENT))
        calls = Calls(client)
        fetch = calls.hold()
        cache = make_cache(client, clock)
        Gated.validations.clear()
        results: list[Gated] = []
        threads = _readers(32, lambda: results.append(cache.get_secret_model(SECRET, Gated)))
        wait_until(lambda: cache.stats().misses == 32)  # every reader is on the one fetch
        fetch.set()
        _release_validation_once_all_arrived(threads)
        assert len(results) == 32
        assert (calls["GetSecretValue"], len(Gated.validations)) == (1, 1)
        assert all(result is results[0] for result in results)

    def test_thirty_two_threads_validating_a_warm_key_validate_once(self, cache: SecretCache) -> None:
        """Threads reading a model of an already cached version for the first time validate it once."""
        cache.get_secret_string(SECRET)  # warm, not validated yet
        Gated.validations.clear()
        results: list[Gated] = []
        threads = _readers(32, lambda: results.append(cache.get_secret_model(SECRET, Gated)))
        _release_validation_once_all_arrived(threads)
        assert len(results) == 32
        assert len(Gated.validations) == 1


_validation_gate = threading.Event()


def _hold_validation() -> None:
    """Inside a validation of :class:`Gated`: wait until the test lets validations finish."""
    assert _validation_gate.wait(WATCHDOG), "a validation was never released"


class Gated(Counted):
    """A frozen model whose validation waits for :func:`_release_validation_once_all_arrived`."""

    model_config = ConfigDict(frozen=True)
    validations: ClassVar[list[int]] = []
    username: str

    @model_validator(mode="after")
    def _held(self) -> Gated:
        _hold_validation()
        return self


def _readers(count: int, read: Callable[[], object]) -> list[threading.Thread]:
    """Start ``count`` daemon threads calling ``read`` together (after a barrier); a failure fails the join."""
    barrier = threading.Barrier(count, timeout=WATCHDOG)
    _validation_gate.clear()

    def run() -> None:
        barrier.wait()
        read()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _release_validation_once_all_arrived(threads: list[threading.Thread]) -> None:
    """Once every thread validates (held) or waits for another thread's validation, release them; join them."""

    def arrived(thread: threading.Thread) -> bool:
        return inside(thread, _hold_validation) or (inside(thread, held_of) and inside(thread, threading.Event.wait))

    try:
        wait_until(lambda: all(arrived(thread) for thread in threads))
    finally:
        _validation_gate.set()
    for thread in threads:
        thread.join(WATCHDOG)
    assert not any(thread.is_alive() for thread in threads)


class TestValidationErrors:
    BAD: ClassVar[dict[str, Any]] = {
        "host": "db.internal",
        "port": PASSWORD,
        "username": ["orders", PASSWORD],
        "password": 12,
    }

    def test_error_names_secret_model_fields_and_types_and_never_the_value(
        self, cache: SecretCache, admin: Any
    ) -> None:
        """The error lists field paths and error types; no value is reachable from it, its chain or args."""
        admin.create_secret(Name="app/bad", SecretString=json.dumps(self.BAD))
        with pytest.raises(SecretFormatError) as info:
            cache.get_secret_model("app/bad", Database)
        error = info.value
        message = str(error)
        assert "'app/bad'" in message
        assert "Database" in message
        assert "port (int_parsing)" in message
        assert "username (string_type)" in message
        assert "password (string_type)" in message
        assert error.secret_id == "app/bad"
        assert error.__cause__ is None
        assert error.__context__ is None
        assert_value_absent(error, PASSWORD)
        assert_value_absent(error, "orders")  # a value of a failing field, even one that is no secret

    def test_keys_of_the_document_the_model_does_not_declare_are_never_shown(
        self, cache: SecretCache, admin: Any
    ) -> None:
        """A path shows declared field names, aliases and positions; a dict's keys, an undeclared
        field's name and a union's tag are ``*``: they are the document's, and may be secret."""

        class Port(BaseModel):
            number: int

        class Keys(BaseModel):
            model_config = ConfigDict(frozen=True, extra="forbid")
            keys: dict[SecretStr, int]
            ports: list[Port]
            login: str = Field(alias="userName")
            either: Port | int = 0

        document = {
            "keys": {"sk_live_KEYMARK1": "not a number"},
            "ports": [{"number": 1}, {"number": "KEYMARK2"}],
            "KEYMARK3-extra": 1,
            "either": "KEYMARK4",
        }
        admin.create_secret(Name="app/keys", SecretString=json.dumps(document))
        with pytest.raises(SecretFormatError) as info:
            cache.get_secret_model("app/keys", Keys)
        message = str(info.value)
        assert "keys.* (int_parsing)" in message
        assert "ports.1.number (int_parsing)" in message
        assert "userName (missing)" in message
        assert "* (extra_forbidden)" in message
        assert "either.* (model_type)" in message
        for mark in ("KEYMARK1", "KEYMARK2", "KEYMARK3", "KEYMARK4"):
            assert_value_absent(info.value, mark)

    def test_secret_str_constraints_leak_nothing(self, cache: SecretCache, admin: Any) -> None:
        """A SecretStr field that fails a constraint is reported by path and type only."""

        class Strict(BaseModel):
            model_config = ConfigDict(frozen=True)
            password: SecretStr = SecretStr("")
            api_key: SecretStr

            @model_validator(mode="after")
            def _long(self) -> Strict:
                if len(self.api_key.get_secret_value()) < 64:
                    raise ValueError(f"api key {self.api_key.get_secret_value()} too short")  # a careless validator
                return self

        admin.create_secret(Name="app/key", SecretString=json.dumps({"password": PASSWORD, "api_key": PASSWORD}))
        with pytest.raises(SecretFormatError) as info:
            cache.get_secret_model("app/key", Strict)
        assert "(value_error)" in str(info.value)
        assert_value_absent(info.value, PASSWORD)

    def test_a_pydantic_error_would_have_leaked(self) -> None:
        """The walk finds the value in pydantic's own error: the test above could fail."""
        with pytest.raises(Exception) as info:  # noqa: PT011 - pydantic's ValidationError
            TypeAdapter(Database).validate_python(self.BAD)
        with pytest.raises(AssertionError, match="reachable"):
            assert_value_absent(info.value, PASSWORD)

    def test_a_failed_version_is_remembered_and_each_read_gets_a_new_error(
        self, cache: SecretCache, admin: Any
    ) -> None:
        """Reading an invalid version again raises again without validating again, a new error each time."""
        admin.create_secret(Name="app/bad", SecretString=json.dumps(self.BAD))
        errors = []
        for _ in range(3):
            with pytest.raises(SecretFormatError) as info:
                cache.get_secret_model("app/bad", Database)
            errors.append(info.value)
        assert len(Database.validations) == 1
        assert len({id(error) for error in errors}) == 3
        assert len({str(error) for error in errors}) == 1

    def test_raised_inside_a_caller_handler_keeps_only_the_callers_context(
        self, cache: SecretCache, admin: Any
    ) -> None:
        """Even raised while the caller handles an error, nothing of pydantic's is chained."""
        admin.create_secret(Name="app/bad", SecretString=json.dumps(self.BAD))
        try:
            raise KeyError("caller")
        except KeyError:
            with pytest.raises(SecretFormatError) as info:
                cache.get_secret_model("app/bad", Database)
        assert isinstance(info.value.__context__, KeyError)
        assert_value_absent(info.value, PASSWORD)

    def test_many_errors_are_summed_up(self, cache: SecretCache, admin: Any) -> None:
        """Past ten failing fields the message says how many more, so it stays short."""
        fields = {f"f{i}": (int, ...) for i in range(15)}
        from pydantic import create_model

        Wide = create_model("Wide", **fields)  # type: ignore[call-overload]
        admin.create_secret(Name="app/wide", SecretString=json.dumps({f"f{i}": PASSWORD for i in range(15)}))
        with pytest.raises(SecretFormatError, match=r"15 validation errors.*and 5 more") as info:
            cache.get_secret_model("app/wide", Wide)
        assert_value_absent(info.value, PASSWORD)


class TestAsync:
    async def test_async_reads_validate_once_and_share(self, client: Any, admin: Any, clock: FakeClock) -> None:
        """AsyncSecretCache.get_secret_model: 1 call and 1 validation for many tasks, one shared object."""
        import asyncio

        admin.create_secret(Name=SECRET, SecretString=json.dumps(DOCUMENT))
        calls = Calls(client)
        async with AsyncSecretCache(cache=make_cache(client, clock)) as cache:
            results = await asyncio.gather(*(cache.get_secret_model(SECRET, Database) for _ in range(50)))
            assert all(result is results[0] for result in results)
            assert (calls["GetSecretValue"], len(Database.validations)) == (1, 1)
            admin.create_secret(Name="app/bad", SecretString=json.dumps(TestValidationErrors.BAD))
            with pytest.raises(SecretFormatError) as info:
                await cache.get_secret_model("app/bad", Database)
            assert info.value.__context__ is None
            assert_value_absent(info.value, PASSWORD)


def test_logs_of_a_failed_read_carry_no_value(cache: SecretCache, admin: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the cache logs at any level while a model fails to validate holds the value."""
    admin.create_secret(Name="app/bad", SecretString=json.dumps(TestValidationErrors.BAD))
    with caplog.at_level(logging.DEBUG, logger="secretcache"), pytest.raises(SecretFormatError):
        cache.get_secret_model("app/bad", Database)
    assert PASSWORD not in caplog.text
