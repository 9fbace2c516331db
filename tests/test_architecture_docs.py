"""ARCHITECTURE.md and CONTRIBUTING.md name only files, folders and modules that exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("ARCHITECTURE.md", "CONTRIBUTING.md")
# A path in the tree: it starts at one of its top folders and ends at a name or a slash (not at a
# sentence's full stop); a placeholder such as tests/test_<module>.py is not one.
PATH = re.compile(
    r"(?<![\w/.-])((?:secretcache|tests|benchmarks|scripts|examples|docs|\.ci)/(?:[\w./-]*[\w/])?)(?![\w<])"
)
DOTTED = re.compile(r"(?<![\w/.])(secretcache(?:\.\w+)+)")


def named(page: str, pattern: re.Pattern[str]) -> list[str]:
    return sorted(set(pattern.findall((ROOT / page).read_text(encoding="utf-8"))))


def resolves(dotted: str) -> bool:
    """The longest importable prefix of ``dotted`` is a module, and the rest are attributes of it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


@pytest.mark.parametrize("page", PAGES)
def test_every_path_a_page_names_exists(page: str):
    """Every file or folder path the page names is in the repository."""
    paths = named(page, PATH)
    assert paths, f"{page} names no path: the pattern no longer reads it"
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"{page} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_every_dotted_name_a_page_names_resolves(page: str):
    """Every dotted name under secretcache the page names is a module, or an attribute of one."""
    missing = [name for name in named(page, DOTTED) if not resolves(name)]
    assert not missing, f"{page} names modules or attributes that do not exist: {missing}"


def test_architecture_names_every_module_of_the_package():
    """Every module of the package appears in ARCHITECTURE.md's map, by path or by its short name."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = [path for path in (ROOT / "secretcache").rglob("*.py") if "django" not in path.parts]
    absent = [
        str(path.relative_to(ROOT))
        for path in modules
        if str(path.relative_to(ROOT)) not in text
        and f"`{path.stem}`" not in text
        and str(path.parent.relative_to(ROOT)) + "/" not in text
    ]
    assert not absent, f"ARCHITECTURE.md does not place: {absent}"


def test_the_path_pattern_reads_what_it_should():
    """The path pattern takes real paths and leaves placeholders, outside paths and full stops alone."""
    text = "See `secretcache/_store.py`, benchmarks/. Not tests/test_<module>.py nor /work/x/secretcache/a.py."
    assert PATH.findall(text) == ["secretcache/_store.py", "benchmarks/"]
    assert DOTTED.findall("`secretcache._store` and secretcache._keys.check_read.") == [
        "secretcache._store",
        "secretcache._keys.check_read",
    ]
