"""``secretcache.pydantic.SecretsManagerSettingsSource`` side by side with pydantic-settings' own AWS source.

Both read the same moto secrets into the same settings classes: the values must be equal. The
differences that are on purpose (calls per settings object, staging labels, binary secrets,
refresh) are asserted here and listed on the "Typed secrets" docs page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import (
    AWSSecretsManagerSettingsSource,
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from secretcache import AsyncSecretCache, SecretCache, SecretFormatError
from secretcache.pydantic import SecretsManagerSettingsSource
from tests.conftest import FakeClock
from tests.leaks import assert_value_absent
from tests.test_cache import make_cache, rotate

SECRET = "prod/orders/app"
PASSWORD = "pw-LEAKMARK-0b7e"

Source = Callable[[type[BaseSettings]], PydanticBaseSettingsSource]


class Database(BaseModel):
    host: str
    port: int
    username: str
    password: SecretStr


class AppSettings(BaseSettings):
    app_name: str
    debug: bool = False
    workers: int = 1
    database: Database

    source: Source | None = None  # set per test on a subclass, never read from the secret


def settings_class(base: type[BaseSettings], source: Source, **config: Any) -> type[BaseSettings]:
    """A subclass of ``base`` whose only source is ``source`` (built anew per settings object)."""

    class Configured(base):  # type: ignore[valid-type,misc]
        model_config = SettingsConfigDict(**config)

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *_: PydanticBaseSettingsSource, **__: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (source(settings_cls),)

    return Configured


@pytest.fixture
def get_calls(aws: None) -> list[str]:
    """Names of the GetSecretValue calls made through boto3's default session (pydantic-settings' client)."""
    made: list[str] = []
    session = boto3._get_default_session()
    session.events.register("before-call.secretsmanager.GetSecretValue", lambda **_: made.append("call"))
    return made


@pytest.fixture
def cache(client: Any, clock: FakeClock) -> SecretCache:
    return make_cache(client, clock)


def theirs(secret_id: str, **options: Any) -> Source:
    return lambda cls: AWSSecretsManagerSettingsSource(cls, secret_id, region_name="us-east-1", **options)


def ours(cache: SecretCache, secret_id: str, **options: Any) -> Source:
    return lambda cls: SecretsManagerSettingsSource(cls, secret_id, cache=cache, **options)


FLAT = {
    "app_name": "orders",
    "debug": "true",
    "workers": "4",
    "database--host": "db.internal",
    "database--port": "5432",
    "database--username": "orders_app",
    "database--password": PASSWORD,
}

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # name: (secret document, source options, settings config)
    "nested keys with the delimiter": (FLAT, {}, {}),
    "nested JSON object": (
        {"app_name": "orders", "database": json.dumps({"host": "h", "port": 1, "username": "u", "password": "p"})},
        {},
        {},
    ),
    "JSON values that are not strings": ({**FLAT, "debug": True, "workers": 4, "database--port": 5432}, {}, {}),
    "case-insensitive keys": (
        {key.upper(): value for key, value in FLAT.items()},
        {"case_sensitive": False},
        {},
    ),
    "case-sensitive keys miss upper-case ones": (
        {**{key.upper(): value for key, value in FLAT.items()}, "database--host": "x"},
        {},
        {},
    ),
    "env_prefix": ({f"ORDERS_{key}": value for key, value in FLAT.items()}, {"env_prefix": "ORDERS_"}, {}),
    "another delimiter": (
        {key.replace("--", "__"): value for key, value in FLAT.items()},
        {"env_nested_delimiter": "__"},
        {},
    ),
    "none string": ({**FLAT, "workers": "null"}, {"env_parse_none_str": "null"}, {}),
}


def outcome(build: Callable[[], BaseSettings]) -> Any:
    """The settings as a plain dict (passwords revealed), or the type of the error building them raised."""
    try:
        settings = build()
    except Exception as err:  # compared across the two sources: the same kind of failure
        return type(err).__name__
    data = settings.model_dump(exclude={"source"})
    data["database"]["password"] = settings.database.password.get_secret_value()  # type: ignore[attr-defined]
    return data


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_settings_as_pydantic_settings_own_source(
    case: str, admin: Any, cache: SecretCache, get_calls: list[str]
) -> None:
    """For the same secret and settings class, both sources give equal settings (or fail alike)."""
    document, options, config = CASES[case]
    admin.create_secret(Name=SECRET, SecretString=json.dumps(document))
    expected = outcome(settings_class(AppSettings, theirs(SECRET, **options), **config))
    got = outcome(settings_class(AppSettings, ours(cache, SECRET, **options), **config))
    assert got == expected
    if case == "nested keys with the delimiter":
        database = {"host": "db.internal", "port": 5432, "username": "orders_app", "password": PASSWORD}
        assert expected["database"] == database
    if case == "case-sensitive keys miss upper-case ones":
        assert expected == "ValidationError"


def test_one_call_however_many_settings_objects(admin: Any, cache: SecretCache, get_calls: list[str]) -> None:
    """Building settings 100 times: pydantic-settings calls 100 times, the cached source once."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(FLAT))
    before = len(get_calls)
    for _ in range(100):
        settings_class(AppSettings, theirs(SECRET))()
    assert len(get_calls) - before == 100
    stats = cache.stats()
    for _ in range(100):
        settings_class(AppSettings, ours(cache, SECRET))()
    assert cache.stats().api_calls["GetSecretValue"] - stats.api_calls.get("GetSecretValue", 0) == 1
    assert cache.stats().hits - stats.hits == 2 * 100 - 1  # a get_secret and a get_secret_json per build, less the miss


def test_rotation_is_followed_within_the_ttl(admin: Any, cache: SecretCache, clock: FakeClock) -> None:
    """A settings object built after a rotation and the TTL carries the new password; none before the TTL."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(FLAT))
    build = settings_class(AppSettings, ours(cache, SECRET))
    assert build().database.password.get_secret_value() == PASSWORD  # type: ignore[attr-defined]
    rotate(admin, SECRET, json.dumps({**FLAT, "database--password": "rotated"}))
    assert build().database.password.get_secret_value() == PASSWORD  # type: ignore[attr-defined]
    clock.advance(61)
    assert build().database.password.get_secret_value() == "rotated"  # type: ignore[attr-defined]


def test_staging_labels_only_here(admin: Any, cache: SecretCache) -> None:
    """``version_stage`` reads AWSPENDING; pydantic-settings' source has no such argument."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(FLAT))
    admin.put_secret_value(
        SecretId=SECRET, SecretString=json.dumps({**FLAT, "app_name": "pending"}), VersionStages=["AWSPENDING"]
    )
    assert settings_class(AppSettings, ours(cache, SECRET, version_stage="AWSPENDING"))().app_name == "pending"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="version_stage"):
        settings_class(AppSettings, theirs(SECRET, version_stage="AWSPENDING"))()


def test_version_ids_in_both(admin: Any, cache: SecretCache) -> None:
    """``version_id`` reads one version in both sources."""
    first = admin.create_secret(Name=SECRET, SecretString=json.dumps(FLAT))["VersionId"]
    rotate(admin, SECRET, json.dumps({**FLAT, "app_name": "second"}))
    for source in (theirs(SECRET, version_id=first), ours(cache, SECRET, version_id=first)):
        assert settings_class(AppSettings, source)().app_name == "orders"  # type: ignore[attr-defined]


def test_binary_secrets_only_here(admin: Any, cache: SecretCache) -> None:
    """A binary secret holding a JSON document is read; pydantic-settings' source fails on it."""
    admin.create_secret(Name=SECRET, SecretBinary=json.dumps(FLAT).encode())
    assert settings_class(AppSettings, ours(cache, SECRET))().app_name == "orders"  # type: ignore[attr-defined]
    with pytest.raises(KeyError, match="SecretString"):
        settings_class(AppSettings, theirs(SECRET))()


def test_nested_json_objects_only_here(admin: Any, cache: SecretCache) -> None:
    """A key holding a JSON object fills a nested model; pydantic-settings' source raises TypeError on it."""
    nested = {"host": "h", "port": 1, "username": "u", "password": PASSWORD}
    admin.create_secret(Name=SECRET, SecretString=json.dumps({"app_name": "orders", "database": nested}))
    settings = settings_class(AppSettings, ours(cache, SECRET))()
    assert settings.database.username == "u"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="must be str"):
        settings_class(AppSettings, theirs(SECRET))()


def test_a_document_that_is_no_object_is_a_format_error(admin: Any, cache: SecretCache) -> None:
    """A JSON array is refused with SecretFormatError naming the secret; pydantic-settings' raises AttributeError."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps([PASSWORD]))
    with pytest.raises(SecretFormatError, match="not an object") as info:
        settings_class(AppSettings, ours(cache, SECRET))()
    assert PASSWORD not in str(info.value)
    with pytest.raises(AttributeError):
        settings_class(AppSettings, theirs(SECRET))()


def test_an_async_cache_and_the_default_cache_serve_too(admin: Any, cache: SecretCache) -> None:
    """An AsyncSecretCache's cache is used; without a cache, a process-wide one built per Region."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(FLAT))
    wrapped = AsyncSecretCache(cache=cache)
    assert settings_class(AppSettings, ours(wrapped, SECRET))().app_name == "orders"  # type: ignore[arg-type,attr-defined]
    by_region = settings_class(
        AppSettings, lambda cls: SecretsManagerSettingsSource(cls, SECRET, region_name="us-east-1")
    )
    assert by_region().app_name == "orders"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="cache must be"):
        SecretsManagerSettingsSource(AppSettings, SECRET, cache=object())  # type: ignore[arg-type]


def test_repr_names_the_secret_only(admin: Any, cache: SecretCache) -> None:
    """The source's repr matches pydantic-settings' shape and shows no value."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(FLAT))
    source = SecretsManagerSettingsSource(AppSettings, SECRET, cache=cache)
    assert repr(source) == "SecretsManagerSettingsSource(secret_id='prod/orders/app', env_nested_delimiter='--')"


@pytest.mark.parametrize(
    "document",
    [
        {"app_name": "orders", "database": "{" + PASSWORD},  # a complex field's value that is not JSON
        {"app_name": "orders", "database--port": "1", "database": PASSWORD},  # nested keys and a bad whole
    ],
    ids=["not-json", "not-json-beside-nested-keys"],
)
def test_a_value_pydantic_settings_cannot_decode_is_not_chained(
    admin: Any, cache: SecretCache, document: dict[str, Any]
) -> None:
    """pydantic-settings' SettingsError names the field only: the JSONDecodeError holding the value is not chained."""
    admin.create_secret(Name=SECRET, SecretString=json.dumps(document))
    with pytest.raises(SettingsError, match='field "database" from source "SecretsManagerSettingsSource"') as info:
        settings_class(AppSettings, ours(cache, SECRET))()
    assert_value_absent(info.value, PASSWORD)
    assert "JSONDecodeError" in str(info.value)  # what went wrong, by type


def test_a_rotated_value_that_stops_validating_shows_in_errors_unless_inputs_are_hidden(
    admin: Any, cache: SecretCache, clock: FakeClock
) -> None:
    """The settings class's ValidationError quotes a value that does not validate; hide_input_in_errors keeps it out.

    The source hands values on and pydantic validates them into the user's class, so the secrecy
    of that error is the class's setting, as docs/typed-secrets.md says.
    """
    document = {"app_name": "orders", "database": {"host": "h", "port": 5432, "username": "u", "password": PASSWORD}}
    admin.create_secret(Name=SECRET, SecretString=json.dumps(document))
    source = ours(cache, SECRET)
    shown, hidden = (settings_class(AppSettings, source, hide_input_in_errors=flag) for flag in (False, True))
    assert shown().app_name == hidden().app_name == "orders"
    rotate(admin, SECRET, json.dumps({**document, "workers": PASSWORD}))  # a password pasted into the wrong key
    clock.advance(10_000)
    with pytest.raises(ValidationError) as quoted:
        shown()
    assert PASSWORD in str(quoted.value)
    with pytest.raises(ValidationError) as kept_out:
        hidden()
    assert_value_absent(kept_out.value, PASSWORD)
    assert "workers" in str(kept_out.value)
