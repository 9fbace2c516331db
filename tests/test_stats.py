"""CacheStats: how a snapshot prints, compares, hashes and travels between processes."""

from __future__ import annotations

import copy
import pickle

import pytest

from secretcache import CacheStats, SecretNotFoundError
from secretcache.testing import seeded_cache


def test_stats_print_as_a_plain_dataclass() -> None:
    """repr() and str() of CacheStats show the API calls as a dict, not a mappingproxy, and no id or value."""
    cache = seeded_cache({"prod/key": "value-abc"})
    cache.get_secret_string("prod/key")
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("prod/other")
    stats = cache.stats()
    expected = (
        "CacheStats(hits=1, misses=1, api_calls={'GetSecretValue': 1}, refreshes=0, background_refreshes=0, "
        "stale_served=0, errors=1, evictions=0, size=2, in_flight=0, api_errors={'ResourceNotFoundException': 1}, "
        "read_errors=1, changes=0, failovers=0)"
    )
    assert repr(stats) == expected
    assert str(stats) == expected
    assert f"{stats}" == expected
    assert "mappingproxy" not in repr(CacheStats())
    assert repr(CacheStats()).startswith("CacheStats(hits=0, misses=0, api_calls={}, ")


def test_stats_pickle_copy_hash_and_stay_read_only() -> None:
    """A snapshot survives pickle and copy equal to itself, hashes, and its api_calls cannot be changed."""
    cache = seeded_cache({"prod/key": "value-abc"})
    cache.get_secret_string("prod/key")
    with pytest.raises(SecretNotFoundError):
        cache.get_secret_string("prod/other")
    stats = cache.stats()
    pickled = pickle.loads(pickle.dumps(stats))  # noqa: S301 - our own bytes
    for other in (pickled, copy.copy(stats), copy.deepcopy(stats)):
        assert other == stats
        assert hash(other) == hash(stats)
        assert other.api_calls == {"GetSecretValue": 1}
        assert other.api_errors == {"ResourceNotFoundException": 1}
        with pytest.raises(TypeError):
            other.api_calls["GetSecretValue"] = 0  # type: ignore[index]
        with pytest.raises(TypeError):
            other.api_errors["ResourceNotFoundException"] = 0  # type: ignore[index]
    built = CacheStats(hits=1, api_calls={"GetSecretValue": 2}, api_errors={"ThrottlingException": 1})
    with pytest.raises(TypeError):
        built.api_calls["GetSecretValue"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        built.api_errors["ThrottlingException"] = 0  # type: ignore[index]
    assert built.total_api_calls == 2
