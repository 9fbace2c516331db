"""The lock-free hit is written once in ``Store.hit`` and inlined, identically, in the getters.

A call costs about a fifth of a hit (``SecretCache``'s getters inline it for that reason), so the
copies stay; these tests keep them one: the five getters' fast paths are the same statement, and
its parts are those of ``Store.hit``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable

from secretcache._cache import SecretCache
from secretcache._store import Store
from secretcache.testing import seeded_cache

GETTERS = ("get_secret_string", "get_secret_binary", "get_secret_json", "get_secret", "get_secret_model")


def _function(function: Callable[..., object]) -> ast.FunctionDef:
    """The parsed definition of a function or method."""
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def _fast_path(name: str) -> ast.If:
    """The getter's statement that holds the inlined hit (the one with a ``try``)."""
    found = [
        node
        for node in _function(getattr(SecretCache, name)).body
        if isinstance(node, ast.If) and any(isinstance(child, ast.Try) for child in node.body)
    ]
    assert len(found) == 1, f"{name}: expected one fast-path statement, found {len(found)}"
    return found[0]


def _parts(tree: ast.AST) -> list[str]:
    """What makes a hit: the exceptions a miss raises, the freshness test and the hit count."""
    caught = [ast.dump(node.type) for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler) and node.type]
    tests = [
        ast.dump(node) for node in ast.walk(tree) if isinstance(node, ast.Compare) and "refresh_at" in ast.dump(node)
    ]
    counts = [ast.dump(node) for node in ast.walk(tree) if isinstance(node, ast.AugAssign)]
    return [*caught, *tests, *counts]


def test_getters_inline_the_same_hit() -> None:
    """Every getter of ``SecretCache`` carries the very same fast-path statement."""
    first, *others = (ast.dump(_fast_path(name)) for name in GETTERS)
    assert all(other == first for other in others)


def test_inlined_hit_is_store_hit() -> None:
    """The inlined hit catches the same errors, tests the same deadline and counts as ``Store.hit`` does."""
    inlined = _fast_path("get_secret_string")
    assert _parts(inlined) == _parts(_function(Store.hit))
    lookups = {ast.unparse(node.value) for node in ast.walk(inlined) if isinstance(node, ast.Subscript)}
    assert lookups == {"self._current"}  # the facade's name for Store.current, the hot index


def test_inlined_hit_and_store_hit_agree() -> None:
    """A warm AWSCURRENT read is a hit both ways, counted once each."""
    cache = seeded_cache({"app/db": "s3cret"})
    store = cache._store
    assert cache.get_secret_string("app/db") == "s3cret"
    assert store.hit("app/db") is store.current["app/db"]
    assert store.hit("app/other") is None
    assert cache.stats().hits == 2
