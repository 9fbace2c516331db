"""``secretcache serve``'s settings: flags over variables over defaults, one-line errors, loopback unless allowed."""

from __future__ import annotations

from typing import Any

import pytest

from secretcache import SecretCache
from secretcache._token import ServeConfigError
from secretcache.serve._config import DEFAULT_BINDS, ServeConfig, load_config

EVERYWHERE = "0.0.0.0"  # noqa: S104 - a configuration value these tests never bind


def test_defaults() -> None:
    """No flag and no variable: port 2773 on both loopbacks, 800 connections, the cache's own defaults."""
    config = load_config({}, {})
    assert config == ServeConfig()
    assert (config.port, config.binds, config.max_conn, config.refresh_interval) == (2773, DEFAULT_BINDS, 800, 1.0)
    assert (config.binds_given, config.allow_remote, config.log_ids, config.log_level) == (False, False, False, "info")
    assert config.cache_settings == {}


@pytest.mark.parametrize(
    ("dest", "flag", "variable", "raw_flag", "raw_variable", "field", "from_flag", "from_variable"),
    [
        ("port", "--port", "PORT", "1234", "4321", "port", 1234, 4321),
        ("max_conn", "--max-conn", "MAX_CONN", "5", "7", "max_conn", 5, 7),
        ("refresh_interval", "--refresh-interval", "REFRESH_INTERVAL", "0", "2.5", "refresh_interval", 0.0, 2.5),
        ("bind", "--bind", "BIND", ["::1"], "127.0.0.1, ::1", "binds", ("::1",), ("127.0.0.1", "::1")),
        ("prefetch", "--prefetch", "PREFETCH", ["a", "b", "a"], "c,d", "prefetch", ("a", "b"), ("c", "d")),
        ("sqs_queue_url", "--sqs-queue-url", "SQS_QUEUE_URL", "http://q/1", "https://q/2", "sqs_queue_url",
         "http://q/1", "https://q/2"),
        ("metrics_port", "--metrics-port", "METRICS_PORT", "9464", "9465", "metrics_port", 9464, 9465),
        ("log_ids", "--log-ids", "LOG_IDS", True, "1", "log_ids", True, True),
        ("log_level", "--log-level", "LOG_LEVEL", "DEBUG", "warning", "log_level", "debug", "warning"),
    ],
)  # fmt: skip
def test_a_flag_wins_over_its_variable(
    dest: str,
    flag: str,
    variable: str,
    raw_flag: Any,
    raw_variable: str,
    field: str,
    from_flag: Any,
    from_variable: Any,
) -> None:
    """Each setting: the flag when given, else the SECRETCACHE_SERVE_* variable."""
    env = {f"SECRETCACHE_SERVE_{variable}": raw_variable}
    assert getattr(load_config({dest: raw_flag}, env), field) == from_flag
    assert getattr(load_config({}, env), field) == from_variable


def test_cache_flags_override_their_variables_and_the_rest_is_kept() -> None:
    """--ttl beats SECRETCACHE_TTL; other SECRETCACHE_* cache variables still apply; 'off' turns refresh-ahead off."""
    env = {"SECRETCACHE_TTL": "30", "SECRETCACHE_MAX_SIZE": "10", "SECRETCACHE_SERVE_PORT": "1"}
    config = load_config({"ttl": "60", "refresh_ahead": "off", "replica_regions": "us-west-2"}, env)
    assert config.cache_settings == {
        "ttl": 60.0,
        "max_size": 10,
        "refresh_ahead": None,
        "replica_regions": ("us-west-2",),
    }
    assert load_config({}, env).cache_settings == {"ttl": 30.0, "max_size": 10}


def test_from_env_leaves_serve_variables_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """SecretCache.from_env accepts SECRETCACHE_SERVE_* (serve checks them), still refusing other unknown names."""
    monkeypatch.setenv("SECRETCACHE_SERVE_PORT", "2773")
    SecretCache.from_env().close()
    monkeypatch.setenv("SECRETCACHE_TTLL", "1")
    with pytest.raises(ValueError, match="SECRETCACHE_TTLL"):
        SecretCache.from_env()


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"port": "http"}, {}, "--port='http' is not a port number"),
        ({}, {"SECRETCACHE_SERVE_PORT": "65536"}, "SECRETCACHE_SERVE_PORT='65536' is not a port number"),
        ({"max_conn": "0"}, {}, "--max-conn='0' is not a connection count"),
        ({"refresh_interval": "-1"}, {}, "--refresh-interval='-1' is not a number of seconds"),
        ({}, {"SECRETCACHE_SERVE_REFRESH_INTERVAL": "nan"}, "SECRETCACHE_SERVE_REFRESH_INTERVAL='nan'"),
        ({"bind": ["localhost"]}, {}, "--bind 'localhost' is not an IP address"),
        ({"bind": ["10.1.2.3"]}, {}, "--bind 10.1.2.3 is not a loopback address: add --allow-remote"),
        ({}, {"SECRETCACHE_SERVE_BIND": EVERYWHERE}, "SECRETCACHE_SERVE_BIND 0.0.0.0 is not a loopback address"),
        ({"prefetch": ["a", " "]}, {}, "--prefetch holds an empty secret id"),
        ({"sqs_queue_url": "queue"}, {}, "--sqs-queue-url='queue' is not an SQS queue URL"),
        ({"metrics_port": "0"}, {}, "--metrics-port='0' is not a port number"),
        (
            {},
            {"SECRETCACHE_SERVE_PORT": "²"},
            "SECRETCACHE_SERVE_PORT='²' is not a port number",
        ),  # isdigit(), not int()
        ({"max_conn": "1²"}, {}, "--max-conn='1²' is not a connection count"),
        ({"metrics_port": "9" * 5000}, {}, "--metrics-port='9999"),  # more digits than int() converts
        ({}, {"SECRETCACHE_SERVE_LOG_IDS": "sometimes"}, "SECRETCACHE_SERVE_LOG_IDS='sometimes' is not a yes/no"),
        ({"log_level": "trace"}, {}, "--log-level='trace' is not a log level"),
        ({}, {"SECRETCACHE_SERVE_PROT": "1"}, "unknown setting SECRETCACHE_SERVE_PROT; known: SECRETCACHE_SERVE_PORT"),
        ({"ttl": "soon"}, {}, "--ttl='soon' is not a number"),
        ({"max_size": "-3"}, {}, "--max-size='-3' is not a whole number"),
        ({"max_size": "²"}, {}, "--max-size='²' is not a whole number"),
        ({}, {"SECRETCACHE_MAX_SIZE": "9" * 5000}, "SECRETCACHE_MAX_SIZE='9999"),
        ({}, {"SECRETCACHE_TTL_OVERRIDES": "[" * 100_000}, "SECRETCACHE_TTL_OVERRIDES is nested too deeply"),
        ({}, {"SECRETCACHE_MAX_STALE": "x"}, "SECRETCACHE_MAX_STALE='x' is not a number"),
    ],
)
def test_each_bad_value_is_one_line_naming_its_source(flags: dict[str, Any], env: dict[str, str], message: str) -> None:
    """A bad flag or variable is a ServeConfigError (a ValueError) of one line that names it."""
    with pytest.raises(ServeConfigError) as info:
        load_config(flags, env)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_non_loopback_needs_allow_remote_and_says_the_token_is_the_only_defence() -> None:
    """0.0.0.0 is refused with a reason; --allow-remote (or its variable) accepts it."""
    with pytest.raises(ServeConfigError, match="the token is then the only defence"):
        load_config({"bind": [EVERYWHERE]}, {})
    everywhere = (EVERYWHERE,)
    assert load_config({"bind": [EVERYWHERE], "allow_remote": True}, {}).binds == everywhere
    env = {"SECRETCACHE_SERVE_ALLOW_REMOTE": "1", "SECRETCACHE_SERVE_BIND": EVERYWHERE}
    config = load_config({}, env)
    assert (config.binds, config.binds_given, config.allow_remote) == (everywhere, True, True)
    assert load_config({"bind": ["::1", "127.0.0.2"]}, {}).binds == ("::1", "127.0.0.2")  # loopback needs no flag
