"""The SSRF token of ``secretcache serve``: where it is read from, and what its errors never say."""

from __future__ import annotations

from pathlib import Path

import pytest

from secretcache._token import MAX_TOKEN_BYTES, TOKEN_VARIABLES, read_token
from secretcache.serve import ServeConfigError, TokenError

TOKEN = "tok-3f9a-SECRET"


@pytest.mark.parametrize("index", range(len(TOKEN_VARIABLES)))
def test_first_set_variable_wins(index: int) -> None:
    """The token comes from the first of AWS_TOKEN, AWS_SESSION_TOKEN, AWS_CONTAINER_AUTHORIZATION_TOKEN that is set."""
    env = {name: f"value-of-{name}" for name in TOKEN_VARIABLES[index:]}
    token = read_token(env)
    assert token.value == f"value-of-{TOKEN_VARIABLES[index]}"
    assert token.variable == TOKEN_VARIABLES[index]
    assert token.path is None


def test_order_is_the_agents() -> None:
    """The variables are searched in the Agent's order."""
    assert TOKEN_VARIABLES == ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")


def test_empty_variable_counts_as_unset() -> None:
    """A variable set to the empty string is skipped rather than making the empty string the token."""
    assert read_token({"AWS_TOKEN": "", "AWS_SESSION_TOKEN": "session"}).value == "session"


def test_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a mapping, the process environment is read."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    assert read_token().value == TOKEN


def test_plain_value_is_not_trimmed() -> None:
    """A value that is not a file reference is the token exactly (as the Agent uses it)."""
    assert read_token({"AWS_TOKEN": " spaced "}).value == " spaced "


def test_file_reference_is_read_and_trimmed(tmp_path: Path) -> None:
    """``file://PATH`` is replaced by the file's contents, surrounding whitespace trimmed."""
    path = tmp_path / "awssmatoken"
    path.write_text(f"\n  {TOKEN}\t\r\n")
    token = read_token({"AWS_TOKEN": f"file://{path}", "AWS_SESSION_TOKEN": "ignored"})
    assert (token.value, token.variable, token.path) == (TOKEN, "AWS_TOKEN", str(path))


def test_repr_never_shows_the_token(tmp_path: Path) -> None:
    """The token's repr names its source, never its value."""
    path = tmp_path / "t"
    path.write_text(TOKEN)
    for token in (read_token({"AWS_TOKEN": TOKEN}), read_token({"AWS_TOKEN": f"file://{path}"})):
        assert TOKEN not in repr(token)
        assert "AWS_TOKEN" in repr(token)


def test_no_variable_names_all_three() -> None:
    """With none set, the error names the three variables and is a ServeConfigError and a ValueError."""
    with pytest.raises(TokenError) as caught:
        read_token({"UNRELATED": "x"})
    for name in TOKEN_VARIABLES:
        assert name in str(caught.value)
    assert isinstance(caught.value, ServeConfigError)
    assert isinstance(caught.value, ValueError)


def _assert_clean(err: BaseException, *secrets: str) -> None:
    """No secret in the message, args, or anything chained."""
    seen: BaseException | None = err
    while seen is not None:
        for secret in secrets:
            assert secret not in str(seen)
            assert all(secret not in str(arg) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """A missing token file is a TokenError naming the variable and path, with no OSError chained."""
    path = tmp_path / "nowhere"
    with pytest.raises(TokenError) as caught:
        read_token({"AWS_SESSION_TOKEN": f"file://{path}"})
    assert str(path) in str(caught.value)
    assert "AWS_SESSION_TOKEN" in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("contents", "says"),
    [
        (b" \n\t ", "empty"),
        (b"\xff\xfe" + TOKEN.encode(), "UTF-8"),
        (TOKEN.encode() * (MAX_TOKEN_BYTES // len(TOKEN) + 1), "longer"),
    ],
)
def test_bad_file_is_refused_without_its_contents(tmp_path: Path, contents: bytes, says: str) -> None:
    """An empty, non-UTF-8 or oversized token file is refused; the error never quotes the file."""
    path = tmp_path / "token"
    path.write_bytes(contents)
    with pytest.raises(TokenError, match=says) as caught:
        read_token({"AWS_TOKEN": f"file://{path}"})
    _assert_clean(caught.value, TOKEN)


def test_unreadable_directory_is_refused(tmp_path: Path) -> None:
    """A path that is a directory fails with a TokenError, not an OSError."""
    with pytest.raises(TokenError, match="cannot read"):
        read_token({"AWS_TOKEN": f"file://{tmp_path}"})
