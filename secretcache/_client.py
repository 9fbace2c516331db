"""The ``secretsmanager`` client a cache builds when given none, and how long one call of a client may take."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError

from secretcache._regions import env_region

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = [
    "CONNECT_TIMEOUT",
    "ISOLATED_REGION",
    "READ_TIMEOUT",
    "SecretsClient",
    "build_client",
    "call_seconds",
    "default_region",
    "isolated_client",
]

ISOLATED_REGION = "us-east-1"
"""The Region of :func:`isolated_client`'s clients."""

CONNECT_TIMEOUT = 2.0
"""Seconds a client built by the cache waits to open a connection."""
READ_TIMEOUT = 5.0
"""Seconds a client built by the cache waits for a response."""


class SecretsClient(Protocol):
    """What a cache needs of a client it is given: boto3's ``get_secret_value``.

    A boto3 ``secretsmanager`` client, or :class:`secretcache.agent.AgentClient`; the cache
    uses ``batch_get_secret_value`` and the client's Region and timeouts only when it has them.
    """

    def get_secret_value(self, *, SecretId: str, VersionId: str = ..., VersionStage: str = ...) -> Any:
        """Read one version of a secret (boto3's parameters and response)."""


def build_client(region: str | None = None, endpoint_url: str | None = None) -> SecretsManagerClient:
    """Build the ``secretsmanager`` client a cache uses when none is given (or for a replica ``region``).

    Botocore's retries are off (the cache's :class:`RetryPolicy` is the one policy) and
    connect/read timeouts are bounded. Region (unless given): ``AWS_REGION``, then botocore's
    chain (``AWS_DEFAULT_REGION``, the profile); credentials from the usual boto3 chain.
    ``endpoint_url`` (default: botocore's) sends the calls elsewhere, such as a local emulator.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="secretcache",
    )
    # A fresh Session per client: boto3's default session is not thread-safe.
    region = region or env_region()
    return boto3.session.Session().client(
        "secretsmanager", region_name=region, endpoint_url=endpoint_url, config=config
    )


def isolated_client() -> SecretsManagerClient:
    """A ``secretsmanager`` client that reads nothing of the AWS environment or the AWS config files.

    For clients whose calls never leave the process (the demo's embedded moto,
    :func:`secretcache.testing.seeded_cache`): no ``AWS_PROFILE``, ``AWS_CONFIG_FILE``,
    ``AWS_ENDPOINT_URL``, ``AWS_DEFAULTS_MODE``, ``AWS_MAX_ATTEMPTS``, ``AWS_USE_FIPS_ENDPOINT``
    or other ``AWS_*`` setting can stop it or send it elsewhere. Every botocore setting has its
    default; the Region is :data:`ISOLATED_REGION` and the credentials are fake.
    """
    import boto3
    import botocore.session
    from botocore.configprovider import ConfigChainFactory, ConfigValueStore

    session = botocore.session.Session()
    # Each setting from the session's own variables, else its default: no environment, no file.
    chains = ConfigChainFactory(session=session, environ={})
    settings = {
        name: chains.create_config_chain(instance_name=name, default=default, conversion_func=convert)
        for name, (_, _, default, convert) in session.session_var_map.items()
    }
    session.register_component("config_store", ConfigValueStore(mapping=settings))
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    session.set_config_variable("ignore_configured_endpoint_urls", True)  # botocore reads AWS_ENDPOINT_URL* itself
    fake = "isolated"  # credentials for calls that never leave the process
    return boto3.session.Session(botocore_session=session).client(
        "secretsmanager", region_name=ISOLATED_REGION, aws_access_key_id=fake, aws_secret_access_key=fake
    )


def default_region() -> str | None:
    """The Region :func:`build_client` would call when given none: ``AWS_REGION``, else botocore's chain.

    No network I/O. ``None`` when no Region is configured, or the configuration cannot be read
    (a missing profile, say: building the client fails the same way).
    """
    import boto3

    if env_region() is not None:
        return env_region()
    try:
        region = boto3.session.Session().region_name
    except BotoCoreError:
        return None
    return region if isinstance(region, str) else None


def call_seconds(client: object | None) -> float:
    """Longest one call of ``client`` waits on the network: its connect timeout plus its read timeout.

    Read from the client's own configuration (``client.meta.config``), so a client the caller
    built with longer timeouts gets a longer bound. ``None`` stands for the client the cache will
    build (:func:`build_client`'s timeouts); a client whose configuration does not say (a test
    double) counts with those timeouts too. Builds nothing and makes no call.
    """
    config = getattr(getattr(client, "meta", None), "config", None)
    total = 0.0
    for name, default in (("connect_timeout", CONNECT_TIMEOUT), ("read_timeout", READ_TIMEOUT)):
        seconds = getattr(config, name, None)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            seconds = default
        total += seconds
    return total
