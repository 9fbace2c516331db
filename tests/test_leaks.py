"""No error raised while handling a secret value can reach that value, and no JSON depth crashes a read.

Every error is checked with :func:`tests.leaks.assert_value_absent`, which walks the message,
``args``, attributes, ``__cause__`` and ``__context__`` of the whole chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from secretcache import AsyncSecretCache, SecretCache, SecretFormatError
from secretcache._entry import thaw as entry_thaw
from secretcache._json import parse_document, select_key, thaw
from secretcache.db import credentials
from secretcache.testing import seeded_cache
from tests.conftest import FAST_RETRY, REGION, FakeClock
from tests.leaks import assert_value_absent, leaks_of
from tests.test_cache import make_cache

MARK = "LEAKMARK-7f3a"
DEEP = 100_000  # far past any recursion limit


def deep_list(depth: int, leaf: str = f'"{MARK}"') -> str:
    """A valid JSON document: ``depth`` nested arrays around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def raised(call: Callable[..., Any], *args: Any, **kwargs: Any) -> SecretFormatError:
    """The SecretFormatError ``call`` raises (anything else, or nothing, fails the test)."""
    with pytest.raises(SecretFormatError) as info:
        call(*args, **kwargs)
    return info.value


def outcome_of(call: Callable[..., Any], *args: Any) -> Any:
    """What ``call`` returns, or the SecretFormatError it raises (any other error propagates)."""
    try:
        return call(*args)
    except SecretFormatError as error:
        return error


def under_stack(frames: int, call: Callable[[], Any]) -> Any:
    """Run ``call`` with ``frames`` more Python frames on the stack, as a deep caller would."""
    return call() if frames <= 0 else under_stack(frames - 1, call)


def depth_of(data: Any) -> int:
    """How many lists are nested at the head of ``data`` (without recursion)."""
    depth = 0
    while isinstance(data, list) and data:
        depth, data = depth + 1, data[0]
    return depth


@pytest.fixture
def cache(client: Any, clock: FakeClock) -> SecretCache:
    return make_cache(client, clock)


# --- the helper catches what it is meant to catch -----------------------------------------------


class Quiet(Exception):
    """An error whose str() and repr() show nothing: only args and attributes can leak."""

    def __str__(self) -> str:
        return "quiet"

    def __repr__(self) -> str:
        return "Quiet()"


class Slotted(Quiet):
    __slots__ = ("payload",)


def _raised_in_handler(inner: BaseException) -> BaseException:
    """The error of ``raise SecretFormatError(...) from None`` inside ``except`` for ``inner``."""
    try:
        try:
            raise inner
        except BaseException:
            raise SecretFormatError("not valid JSON") from None
    except SecretFormatError as outer:
        return outer


def _with(error: BaseException, **attributes: Any) -> BaseException:
    for name, value in attributes.items():
        setattr(error, name, value)
    return error


def _cycle(leaf: BaseException) -> BaseException:
    first, second = Quiet(), Quiet()
    first.__context__, second.__context__ = second, first
    second.__cause__ = leaf
    return first


LEAKY: dict[str, Callable[[], BaseException]] = {
    "message": lambda: ValueError(f"bad value {MARK}"),
    "args hidden by str": lambda: Quiet("x", {"k": [(MARK,)]}),
    "dict key in args": lambda: Quiet({MARK: 1}),
    "bytes in args": lambda: Quiet(b"\x00" + MARK.encode()),
    "attribute": lambda: _with(Quiet(), doc=MARK),
    "slot": lambda: _with(Slotted(), payload=[1, {"p": MARK}]),
    "object attribute": lambda: _with(Quiet(), holder=SimpleNamespace(inner=SimpleNamespace(value=MARK))),
    "deep in an attribute": lambda: _with(Quiet(), data=json.loads(deep_list(500))),
    "cause": lambda: _with(Quiet(), __cause__=_with(Quiet(), doc=MARK)),
    "JSONDecodeError.doc in context": lambda: _raised_in_handler(_raw_json_error()),
    "error inside args": lambda: Quiet(Quiet(MARK)),
    "cycle": lambda: _cycle(Quiet(MARK)),
}


def _raw_json_error() -> BaseException:
    try:
        json.loads(f'{{"password": "{MARK}", oops}}')
    except ValueError as err:
        return err
    raise AssertionError("unreachable")


@pytest.mark.parametrize("route", sorted(LEAKY))
def test_helper_finds_the_value_on_every_route(route: str) -> None:
    """assert_value_absent fails for an error that reaches the value by any walked route."""
    error = LEAKY[route]()
    with pytest.raises(AssertionError, match="reachable"):
        assert_value_absent(error, MARK)
    with pytest.raises(AssertionError, match="reachable"):
        assert_value_absent(error, MARK.encode())


def test_helper_sees_the_context_a_raise_from_none_keeps() -> None:
    """``raise ... from None`` in an except block still keeps the JSON error, document and all."""
    error = _raised_in_handler(_raw_json_error())
    assert error.__suppress_context__
    assert "error.__context__.doc" in list(leaks_of(error, MARK))


def test_helper_passes_clean_errors_and_ends_on_cycles() -> None:
    """A clean error, even in a context cycle with a clean attribute graph, passes."""
    assert_value_absent(_cycle(Quiet("nothing here")), MARK)
    assert_value_absent(SecretFormatError("secret 'x' is not valid JSON", secret_id="x"), MARK)
    with pytest.raises(ValueError, match="distinctive"):
        assert_value_absent(Quiet(), "")


# --- parse_document, select_key, thaw ----------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (f'{{"password": "{MARK}", oops}}', "not valid JSON (error at line 1, column"),
        (f'{{"password": "{MARK}"', "not valid JSON (error at line 1, column"),
        (f'"{MARK}" trailing', "not valid JSON (error at line 1, column"),
        (f'[{"9" * 5000}, "{MARK}"]', "not valid JSON"),  # over the int digit limit: a plain ValueError
        (deep_list(DEEP), "nested too deeply to parse"),
        ('{"k": ' + deep_list(DEEP) + "}", "nested too deeply to parse"),
    ],
)
def test_parse_document_errors_keep_nothing_of_the_document(document: str, message: str) -> None:
    """parse_document raises a SecretFormatError with no cause, no context and no document text."""
    error = raised(parse_document, document, "app/db")
    assert message in str(error)
    assert error.secret_id == "app/db"
    assert_value_absent(error, MARK)
    assert (error.__cause__, error.__context__) == (None, None)


def test_parse_document_returns_the_parsed_value() -> None:
    """Valid JSON parses as json.loads does."""
    assert parse_document('{"a": [1, {"b": null}]}', "x") == {"a": [1, {"b": None}]}
    assert depth_of(parse_document(deep_list(500), "x")) == 500


def test_select_key_errors_never_quote_the_value() -> None:
    """Not an object and a missing key are SecretFormatErrors naming the key, never the value."""
    assert select_key({"k": MARK}, "k", "x") == MARK
    for document in ([MARK], MARK, {"other": MARK}):
        error = raised(select_key, document, "k", "x")
        assert "'k'" in str(error)
        assert_value_absent(error, MARK)


def _child(node: Any) -> Any:
    """The next level of a document built by test_thaw_copies_any_depth_without_recursion."""
    return node["k"] if isinstance(node, dict) else node[0]


@pytest.mark.parametrize("copier", [thaw, entry_thaw], ids=["_json.thaw", "_entry.thaw"])
def test_thaw_copies_any_depth_without_recursion(copier: Callable[[Any], Any]) -> None:
    """thaw copies a document far deeper than the recursion limit, every container new."""
    original: Any = [MARK]
    for level in range(DEEP):
        original = {"k": original, "n": level} if level % 2 else [original, level]
    copy = copier(original)
    left: Any = original
    right: Any = copy
    levels = 0
    while isinstance(left, (dict, list)):
        assert type(left) is type(right)
        assert left is not right
        assert (list(left) if isinstance(left, dict) else len(left)) == (
            list(right) if isinstance(right, dict) else len(right)
        )
        left, right = _child(left), _child(right)
        levels += 1
    assert (levels, right) == (DEEP + 1, MARK)
    assert copier(5) == 5
    assert copier({"a": [1, "b", None, {"c": True}]}) == {"a": [1, "b", None, {"c": True}]}


# --- reads through the cache -------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "password"])
def test_invalid_json_error_holds_no_value(cache: SecretCache, admin: Any, key: str | None) -> None:
    """get_secret_json on invalid JSON raises an error with nothing of the document in its chain."""
    admin.create_secret(Name="bad", SecretString=f'{{"password": "{MARK}", oops}}')
    error = raised(cache.get_secret_json, "bad", key)
    assert "not valid JSON" in str(error)
    assert_value_absent(error, MARK)
    assert error.__context__ is None


@pytest.mark.parametrize("document", [f'["{MARK}"]', f'"{MARK}"', "42"])
def test_json_not_an_object_with_key_holds_no_value(cache: SecretCache, admin: Any, document: str) -> None:
    """Reading a key of JSON that is not an object raises an error without the value."""
    admin.create_secret(Name="list", SecretString=document)
    error = raised(cache.get_secret_json, "list", "password")
    assert "not an object" in str(error)
    assert_value_absent(error, MARK)


def test_missing_key_holds_no_value(cache: SecretCache, admin: Any) -> None:
    """A missing JSON key raises an error naming the key, without the value."""
    admin.create_secret(Name="db", SecretString=json.dumps({"password": MARK, MARK: MARK}))
    error = raised(cache.get_secret_json, "db", "username")
    assert "no JSON key 'username'" in str(error)
    assert_value_absent(error, MARK)


def test_string_binary_mismatches_hold_no_value(cache: SecretCache, admin: Any) -> None:
    """Reading binary as a string or JSON, or a string as binary, raises an error without the value."""
    admin.create_secret(Name="bin", SecretBinary=MARK.encode())
    admin.create_secret(Name="str", SecretString=json.dumps({"password": MARK}))
    errors = [
        raised(cache.get_secret_string, "bin"),
        raised(cache.get_secret_json, "bin"),
        raised(cache.get_secret_json, "bin", "password"),
        raised(cache.get_secret_binary, "str"),
    ]
    for error in errors:
        assert_value_absent(error, MARK)
        assert_value_absent(error, MARK.encode())


@pytest.mark.parametrize("key", [None, "k"])
def test_deeply_nested_json_is_a_format_error(cache: SecretCache, admin: Any, key: str | None) -> None:
    """Valid JSON nested 100,000 deep is a SecretFormatError, never a RecursionError."""
    admin.create_secret(Name="deep", SecretString='{"k": ' + deep_list(DEEP) + "}")
    admin.create_secret(Name="deeplist", SecretString=deep_list(DEEP))
    for secret_id in ("deep", "deeplist"):
        error = raised(cache.get_secret_json, secret_id, key)
        assert "nested too deeply to parse" in str(error)
        assert_value_absent(error, MARK)
        assert (error.__cause__, error.__context__) == (None, None)


@pytest.mark.parametrize("frames", [0, 300])
def test_nesting_just_under_the_parser_limit_reads_or_fails_cleanly(
    cache: SecretCache, admin: Any, frames: int
) -> None:
    """JSON about 900 deep is read whole or refused with a SecretFormatError, at any caller depth."""
    admin.create_secret(Name="deep", SecretString='{"k": ' + deep_list(900) + "}")
    for key in (None, "k"):
        outcome = under_stack(frames, lambda: outcome_of(cache.get_secret_json, "deep", key))  # noqa: B023
        if isinstance(outcome, SecretFormatError):
            assert "nested too deeply to parse" in str(outcome)
            assert_value_absent(outcome, MARK)
        else:
            assert depth_of(outcome if key else outcome["k"]) == 900


def test_a_document_the_parser_accepted_is_copied_at_any_caller_depth() -> None:
    """Once parsed, a document near the parser's limit is copied even for a deep caller."""
    depth = 1000
    while depth > 0:
        try:
            json.loads(deep_list(depth))
            break
        except RecursionError:
            depth -= 1
    depth -= 100  # room for the cache's own frames on the first, shallow read
    cache = seeded_cache({"deep": deep_list(depth)})
    assert depth_of(cache.get_secret_json("deep")) == depth  # parsed here and remembered
    assert depth_of(under_stack(400, lambda: cache.get_secret_json("deep"))) == depth


async def test_async_reads_hold_no_value(client: Any, admin: Any, clock: FakeClock) -> None:
    """AsyncSecretCache's JSON errors, deep nesting included, hold nothing of the value."""
    admin.create_secret(Name="bad", SecretString=f'{{"password": "{MARK}", oops}}')
    admin.create_secret(Name="deep", SecretString=deep_list(DEEP))
    cache = AsyncSecretCache(client, clock=clock, ttl=60.0, ttl_jitter=0.0, retry=FAST_RETRY)
    for secret_id in ("bad", "deep"):
        with pytest.raises(SecretFormatError) as info:
            await cache.get_secret_json(secret_id, "password")
        assert_value_absent(info.value, MARK)
        assert info.value.__context__ is None


# --- database credentials ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(f'{{"username": "app", "password": "{MARK}"', "not JSON (error at line 1", id="invalid-json"),
        pytest.param(f'["{MARK}"]', "not an object", id="not-an-object"),
        pytest.param(json.dumps({"password": MARK}), "no 'username' key", id="no-username"),
        pytest.param(
            json.dumps({"username": "app", "password": MARK, "port": f"54{MARK}"}),
            "'port' is not a number",
            id="port-text",
        ),
        pytest.param(
            json.dumps({"username": "app", "password": MARK, "port": [MARK]}), "'port' is not a number", id="port-list"
        ),
        pytest.param(
            json.dumps({"username": "app", "password": MARK, "port": "9" * 5000}),
            "'port' is not a number",
            id="port-too-many-digits",
        ),
        pytest.param(
            f'{{"username": "app", "password": "{MARK}", "port": 1e999}}', "'port' is not a number", id="port-infinite"
        ),
        pytest.param(
            json.dumps({"username": "app", "password": [MARK]}), "'password' must be a string", id="password-not-str"
        ),
        pytest.param(
            json.dumps({"username": {"n": MARK}, "password": "pw"}),
            "'username' must be a string",
            id="username-not-str",
        ),
        pytest.param(
            '{"username": "app", "password": "pw", "x": ' + deep_list(DEEP) + "}",
            "nested too deeply",
            id="deep-nesting",
        ),
    ],
)
def test_db_credential_errors_hold_no_value(cache: SecretCache, admin: Any, document: str, message: str) -> None:
    """db.credentials() refuses malformed secrets with an error that holds nothing of the secret."""
    admin.create_secret(Name="db", SecretString=document)
    error = raised(credentials, cache, "db")
    assert message in str(error)
    assert_value_absent(error, MARK)
    assert (error.__cause__, error.__context__) == (None, None)


def test_db_credentials_still_parse(cache: SecretCache, admin: Any) -> None:
    """A well-formed secret still gives credentials, numeric-string port included."""
    admin.create_secret(Name="db", SecretString=json.dumps({"username": "app", "password": MARK, "port": " 5432 "}))
    found = credentials(cache, "db")
    assert (found.username, found.password, found.port) == ("app", MARK, 5432)


# --- the command line --------------------------------------------------------------------------


def run_cli(*args: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    command = [sys.executable, "-m", "secretcache", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"k": ' + deep_list(DEEP) + "}", "nested too deeply to parse"),
        (deep_list(DEEP), "nested too deeply to parse"),
        (f'{{"k": "{MARK}", oops}}', "not valid JSON"),
    ],
)
def test_cli_get_key_fails_cleanly(moto_server: str, document: str, message: str) -> None:
    """`secretcache get --key` on too-deep or invalid JSON prints one clean line and exits 1."""
    name = f"leaks/{uuid.uuid4()}"
    boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server).create_secret(
        Name=name, SecretString=document
    )
    result = run_cli("get", name, "--key", "k", endpoint=moto_server)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("secretcache: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert MARK not in result.stderr


def test_cli_get_prints_a_deep_secret_it_does_not_parse(moto_server: str) -> None:
    """Without --key, a deeply nested secret is printed as stored: nothing is parsed."""
    name = f"leaks/{uuid.uuid4()}"
    document = deep_list(DEEP)
    boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_server).create_secret(
        Name=name, SecretString=document
    )
    result = run_cli("get", name, endpoint=moto_server)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == document + "\n"
