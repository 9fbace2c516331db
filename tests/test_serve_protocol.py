"""The Agent protocol's checks and routing (``secretcache.serve._protocol.parse``), row by row and fuzzed.

Expected statuses and bodies are the AWS Secrets Manager Agent's (aws_secretsmanager_agent/src/
server.rs and parse.rs); the one departure tested here is X-Forwarded-For on /ping (issue 24).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretcache.serve._bodies import created_date
from secretcache.serve._protocol import Lookup, Request, Response, _query_lookup, parse

TOKEN = "s3cr3t-token"
AUTH = {"x-aws-parameters-secrets-token": TOKEN}


def get(target: str, headers: Mapping[str, str] = AUTH, method: str = "GET") -> Lookup | Response:
    path, _, query = target.partition("?")
    return parse(Request(method, path, query, dict(headers)), TOKEN)


def answer(result: Lookup | Response) -> tuple[int, bytes]:
    assert isinstance(result, Response), result
    return result.status, result.body


@pytest.mark.parametrize(
    ("target", "headers", "method", "status", "body"),
    [
        ("/ping", {}, "GET", 200, b"healthy"),  # server.rs: no token for /ping
        ("/ping", {"x-forwarded-for": "10.0.0.1"}, "GET", 400, b"Forwarded"),  # issue 24: "any" XFF
        ("/ping", {}, "POST", 405, b"Not allowed"),
        ("/secretsmanager/get?secretId=a", {}, "GET", 403, b"Bad Token"),
        ("/secretsmanager/get?secretId=a", {"x-aws-parameters-secrets-token": "wrong"}, "GET", 403, b"Bad Token"),
        ("/secretsmanager/get?secretId=a", {"x-aws-parameters-secrets-token": ""}, "GET", 403, b"Bad Token"),
        ("/secretsmanager/get?secretId=a", {**AUTH, "x-forwarded-for": "1.2.3.4"}, "GET", 400, b"Forwarded"),
        ("/secretsmanager/get?secretId=a", {"x-forwarded-for": ""}, "GET", 400, b"Forwarded"),
        ("/secretsmanager/get?secretId=a", AUTH, "POST", 405, b"Not allowed"),
        ("/secretsmanager/get?secretId=a", {}, "POST", 403, b"Bad Token"),  # token before method, as server.rs
        ("/secretsmanager/get?secretId=a", AUTH, "HEAD", 405, b"Not allowed"),
        ("/nowhere", AUTH, "GET", 404, b"Not found"),
        ("/nowhere", {}, "GET", 403, b"Bad Token"),
        ("/ping/", AUTH, "GET", 404, b"Not found"),
        ("/v1", AUTH, "GET", 404, b"Not found"),
        ("/secretsmanager/get?secretId=a&abc=1", AUTH, "GET", 400, b"unknown parameter: abc"),
        ("/secretsmanager/get?abc=1&refreshNow=x", AUTH, "GET", 400, b"unknown parameter: abc"),  # first wins
        ("/secretsmanager/get?refreshNow=x&abc=1", AUTH, "GET", 400, b"invalid refreshNow value"),
        ("/secretsmanager/get?versionId=v", AUTH, "GET", 400, b"missing parameter secretId"),
        ("/secretsmanager/get?secretId=", AUTH, "GET", 400, b"missing parameter secretId"),
        ("/secretsmanager/get", AUTH, "GET", 400, b"missing parameter secretId"),
        ("/secretsmanager/get?secretId=a&refreshNow=yes", AUTH, "GET", 400, b"invalid refreshNow value"),
        ("/secretsmanager/get?secretId=a&refreshNow=", AUTH, "GET", 400, b"invalid refreshNow value"),
        ("/v1/", AUTH, "GET", 400, b"missing secret ID"),
        ("/v1/a?secretId=b", AUTH, "GET", 400, b"unknown parameter: secretId"),
        ("/v1/a?x%20y=1", AUTH, "GET", 400, b"unknown parameter: x y"),
    ],
)
def test_error_rows(target: str, headers: dict[str, str], method: str, status: int, body: bytes) -> None:
    """Each check answers the Agent's status and text body."""
    result = get(target, headers, method)
    assert answer(result) == (status, body)
    assert isinstance(result, Response)
    assert result.content_type == "text/plain"


@pytest.mark.parametrize("header", ["x-aws-parameters-secrets-token", "x-vault-token"])
def test_either_token_header(header: str) -> None:
    """The token is accepted in X-Aws-Parameters-Secrets-Token or X-Vault-Token."""
    assert get("/secretsmanager/get?secretId=a", {header: TOKEN}) == Lookup("a")


def test_one_right_header_is_enough() -> None:
    """A wrong value in one token header does not spoil the right one in the other."""
    headers = {"x-aws-parameters-secrets-token": "wrong", "x-vault-token": TOKEN}
    assert get("/secretsmanager/get?secretId=a", headers) == Lookup("a")


def test_a_token_followed_by_more_text_does_not_match() -> None:
    """A header value holding the token and more (two tokens joined by a proxy, say) is not the token."""
    assert answer(get("/secretsmanager/get?secretId=a", {"x-vault-token": f"{TOKEN}, {TOKEN}"}))[0] == 403


def test_non_ascii_token_compares() -> None:
    """A non-ASCII header value is compared (hmac.compare_digest on bytes), never an error."""
    request = Request("GET", "/secretsmanager/get", "secretId=a", {"x-vault-token": "tøken\udcff"})
    assert answer(parse(request, "tøken"))[0] == 403
    assert parse(Request("GET", "/secretsmanager/get", "secretId=a", {"x-vault-token": "tøken"}), "tøken") == Lookup(
        "a"
    )


def test_no_token_mode() -> None:
    """token=None (--no-token) lets any request through the token check; X-Forwarded-For is still refused."""
    assert parse(Request("GET", "/secretsmanager/get", "secretId=a", {}), None) == Lookup("a")
    assert answer(parse(Request("GET", "/v1/a", "", {"x-forwarded-for": "x"}), None))[0] == 400


@pytest.mark.parametrize(
    ("raw", "flag"), [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)]
)
def test_refresh_now_values(raw: str, flag: bool) -> None:
    """refreshNow takes true/false/1/0, case-insensitively (parse.rs, parse_refresh_value)."""
    assert get(f"/secretsmanager/get?secretId=a&refreshNow={raw}") == Lookup("a", refresh_now=flag)


def test_all_parameters() -> None:
    """secretId, versionId, versionStage and refreshNow are read, percent- and plus-decoded."""
    result = get("/secretsmanager/get?secretId=app%2Fdb+x&versionId=v%31&versionStage=AWSPREVIOUS&refreshNow=1")
    assert result == Lookup("app/db x", "v1", "AWSPREVIOUS", True)


def test_repeated_parameter_last_wins() -> None:
    """A repeated parameter's last value wins, as the Agent's loop over query_pairs does."""
    assert get("/secretsmanager/get?secretId=a&secretId=b&refreshNow=1&refreshNow=0") == Lookup("b")


def test_empty_pairs_are_skipped() -> None:
    """Empty pieces between ampersands are ignored (form-urlencoded parsing)."""
    assert get("/secretsmanager/get?&&secretId=a&&") == Lookup("a")


@pytest.mark.parametrize(
    ("target", "secret_id"),
    [
        ("/v1/app/db/primary", "app/db/primary"),
        ("/v1/app%2Fdb", "app/db"),
        ("/v1/a+b@c", "a+b@c"),  # in a path, + is a plus
        ("/v1/arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf", None),
    ],
)
def test_path_style_ids(target: str, secret_id: str | None) -> None:
    """/v1/<id> takes the rest of the path as the id, slashes and all, percent-decoded."""
    expected = secret_id if secret_id is not None else target.removeprefix("/v1/")
    assert get(target) == Lookup(expected)


def test_path_style_parameters() -> None:
    """/v1/<id> takes versionId, versionStage and refreshNow from the query."""
    assert get("/v1/app/db?versionStage=AWSPENDING&refreshNow=true") == Lookup("app/db", None, "AWSPENDING", True)


def test_the_parse_cache_keeps_short_queries_only() -> None:
    """A query is parsed once and kept, unless it is longer than a real one (8 KB): the kept parses
    stay small however long the queries a token holder sends."""
    _query_lookup.cache_clear()
    short = "/secretsmanager/get?secretId=app/db&versionStage=AWSCURRENT"
    long = "/secretsmanager/get?secretId=app/db&versionStage=AWSCURRENT&" + "&" * 10_000
    assert get(short) == get(short) == Lookup("app/db", None, "AWSCURRENT", False)
    assert get(long) == get(long) == Lookup("app/db", None, "AWSCURRENT", False)
    assert get("/v1/" + "x" * 9000) == get("/v1/" + "x" * 9000)
    info = _query_lookup.cache_info()
    assert (info.currsize, info.hits) == (1, 1)


def test_bad_percent_encoding_is_kept_literally() -> None:
    """Bad percent-escapes stay as they are; undecodable bytes become U+FFFD, never an error."""
    assert get("/secretsmanager/get?secretId=%zz%4") == Lookup("%zz%4")
    assert get("/secretsmanager/get?secretId=%ff%fe") == Lookup("\ufffd\ufffd")


# -- fuzz ---------------------------------------------------------------------------------------

_bytes_text = st.binary(max_size=64).map(lambda b: b.decode("utf-8", "surrogateescape")) | st.binary(max_size=64).map(
    lambda b: b.decode("latin-1")
)
_pieces = st.sampled_from(
    ["secretId", "versionId", "versionStage", "refreshNow", "=", "&", "%", "%2", "%zz", "%ff", "%00", "+", "true", "1"]
)
_query = st.lists(_pieces | st.text(max_size=8) | _bytes_text, max_size=12).map("".join) | st.builds(
    lambda n: "secretId=" + "x" * n, st.integers(0, 5000)
)
_path = st.sampled_from(["/ping", "/secretsmanager/get", "/v1/", "/v1/app/db", "/", "", "/v1"]) | st.builds(
    "/v1/{}".format, _bytes_text
)
_header_names = st.sampled_from(
    ["x-aws-parameters-secrets-token", "x-vault-token", "x-forwarded-for", "host", "", "X-Vault-Token"]
) | st.text(max_size=10)
_headers = st.dictionaries(_header_names, st.sampled_from([TOKEN, ""]) | _bytes_text | st.text(), max_size=5)
_methods = st.sampled_from(["GET", "POST", "HEAD", "get", ""]) | st.text(max_size=5)
requests = st.builds(Request, _methods, _path, _query, _headers)


@pytest.mark.unmeasured  # randomized: run unmeasured (CONTRIBUTING.md, "Coverage")
@settings(max_examples=500, deadline=None)
@given(request=requests, token=st.sampled_from([TOKEN, None, "tøken"]))
def test_fuzz_parse_never_raises(request: Request, token: str | None) -> None:
    """Any request parses to a Lookup with an id or to one of the protocol's client answers; never a 5xx."""
    result = parse(request, token)
    if isinstance(result, Lookup):
        assert result.secret_id
        assert request.method == "GET"
    else:
        assert result.status in (200, 400, 403, 404, 405)
        assert result.status != 200 or result.body == b"healthy"


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(2019, 9, 26, 21, 53, 9, 46000, tzinfo=timezone.utc), "1569534789.046"),  # the Agent's test body
        (datetime(2019, 9, 26, 21, 53, 9, tzinfo=timezone.utc), "1569534789"),  # Rust prints no ".0"
        (datetime(2018, 4, 11, 20, 5, 45, 713000, tzinfo=timezone.utc), "1523477145.713"),
        (datetime(2019, 9, 26, 21, 53, 9, 46000), "1569534789.046"),  # naive: UTC
        (datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=timezone.utc), "-1.5"),
        (None, None),
    ],
)
def test_created_date_in_agent_format(when: datetime | None, text: str | None) -> None:
    """CreatedDate is epoch seconds with their fraction as a string (serde_with's TimestampSecondsWithFrac<String>)."""
    assert created_date(when) == text
