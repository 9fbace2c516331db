"""How the suite's collection is shaped: each example runs once; under pytest-xdist each worker starts with long tests.

Registered as plugins by ``tests/conftest.py`` (``pytest_configure``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

__all__ = ["LONG_MARKS", "EachExampleRunsOnce", "LongTestsFirst", "long_first"]


class EachExampleRunsOnce:
    """Where an example's fresh-venv run is selected, its run under the development extras is deselected.

    Both run the example and check the same output (``tests/test_examples.py``, ``_run``); the
    fresh venv holds only the example's documented install line, the stricter set-up. The full
    run so runs each example once; a run without the fresh venvs (``-m "not fresh_venv"``, CI's
    other Pythons) keeps the development-extras run.
    """

    @pytest.hookimpl(trylast=True)  # after -m and -k have selected
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        fresh = {
            _example(item) for item in items if _named(item, "test_example_runs_in_a_fresh_venv_with_its_install_line")
        }
        twins = [item for item in items if _named(item, "test_example_runs") and _example(item) in fresh]
        if twins:
            config.hook.pytest_deselected(items=twins)
            items[:] = [item for item in items if item not in twins]


def _named(item: pytest.Item, name: str) -> bool:
    return getattr(item, "originalname", None) == name


def _example(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("name")


LONG_MARKS = ("unmeasured", "fresh_venv")  # the randomized tests and the fresh venvs: seconds each


class LongTestsFirst:
    """Under pytest-xdist's ``worksteal``, each worker starts its share of the tests with some of the long ones.

    ``worksteal`` first hands each of the N workers a contiguous Nth of the collection; a worker
    that runs out takes the tail half of the longest queue left. A long test late in a share ran
    last on its worker while the others had nothing left (the state machines, the thread stress
    test, each 5 to 10 s: about 8 s at the end of a run). This deals the tests marked
    :data:`LONG_MARKS` round robin to the heads of the shares (the fresh venvs, one worker's until
    then, so build and run side by side too); every other test keeps its place in the order.
    """

    @pytest.hookimpl(wrapper=True)  # after every other step, -m, -k and the deselections included
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
        yield
        workers = int(getattr(config, "workerinput", {}).get("workercount", 0))  # 0 outside pytest-xdist
        if workers > 1:  # a worker's --dist reads "no": each orders the collection alike, whatever the mode
            items[:] = long_first(items, workers)


def long_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """``items`` in ``workers`` shares sized as ``worksteal`` cuts them, each led by its part of the long tests."""
    sizes, left = [], len(items)
    for share in range(workers):
        sizes.append(left // (workers - share))  # xdist's WorkStealingScheduling.check_schedule, at the start
        left -= sizes[-1]
    heads: list[list[pytest.Item]] = [[] for _ in sizes]
    rest, share = [], 0
    for item in items:
        if not any(item.get_closest_marker(mark) for mark in LONG_MARKS):
            rest.append(item)
            continue
        while len(heads[share]) == sizes[share]:  # a full share (a short run): the next one
            share = (share + 1) % workers
        heads[share].append(item)
        share = (share + 1) % workers
    ordered: list[pytest.Item] = []
    for size, head in zip(sizes, heads, strict=True):
        cut = size - len(head)
        ordered += head + rest[:cut]
        rest = rest[cut:]
    return ordered
