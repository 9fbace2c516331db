"""The collection order under pytest-xdist (``tests/collection.py``): every test once, long ones first."""

from __future__ import annotations

from typing import Any

import pytest

from tests.collection import LONG_MARKS, long_first


class Item:
    """Stands in for a collected test: a name and the marks it carries."""

    def __init__(self, name: str, marks: tuple[str, ...] = ()) -> None:
        self.name = name
        self.marks = marks

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self.marks else None

    def __repr__(self) -> str:
        return self.name


def shares(items: list[Any], workers: int) -> list[list[Any]]:
    """``items`` cut as pytest-xdist's ``worksteal`` first hands them out: each worker an equal part of what is left."""
    cut, left = [], list(items)
    for share in range(workers):
        size = len(left) // (workers - share)
        cut.append(left[:size])
        left = left[size:]
    return cut


@pytest.mark.parametrize("workers", [2, 3, 4, 7])
@pytest.mark.parametrize(("tests", "long_every"), [(0, 1), (5, 1), (30, 4), (100, 9), (100, 40)])
def test_every_test_stays_once_and_each_share_starts_with_its_long_tests(
    workers: int, tests: int, long_every: int
) -> None:
    """The order holds the same tests, each once; every share starts with long tests until they run out."""
    marks = [(LONG_MARKS[number % len(LONG_MARKS)],) if number % long_every == 0 else () for number in range(tests)]
    items = [Item(f"t{number}", mark) for number, mark in enumerate(marks)]
    ordered = long_first(items, workers)  # type: ignore[arg-type]
    assert sorted(ordered, key=items.index) == items
    assert [item for item in items if not item.marks] == [item for item in ordered if not item.marks]
    cuts = shares(ordered, workers)
    for cut in cuts:  # long tests first
        assert [bool(item.marks) for item in cut] == sorted((bool(item.marks) for item in cut), reverse=True)
    counts = [sum(1 for item in cut if item.marks) for cut in cuts]
    if all(len(cut) > max(counts) for cut in cuts):  # room left in every share: dealt evenly
        assert max(counts) - min(counts) <= 1
