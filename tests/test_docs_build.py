"""scripts/check-docs: a built page that does not show the code it includes fails the docs build."""

from __future__ import annotations

import importlib.util
import sys
from html import escape
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_docs.py"

EXAMPLE = '''"""An example."""

from secretcache import SecretCache

cache = SecretCache(ttl=300)


# --8<-- [start:read]
def read() -> str:
    return cache.get_secret_string("prod/key")  # a dict lookup once warm
    # --8<-- [end:read]
'''


@pytest.fixture(scope="module")
def check_docs() -> ModuleType:
    """The checking logic of scripts/check-docs, imported without building anything."""
    spec = importlib.util.spec_from_file_location("check_docs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A project directory holding one example with a named section."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "app.py").write_text(EXAMPLE)
    return tmp_path


def _highlighted(code: str) -> str:
    """Code as pygments renders it: one span per token, entities for <, > and quotes."""
    spans = "".join(f'<span class="n">{escape(token)}</span>' for token in code.split(" "))
    return f'<div class="highlight"><pre><code>{spans.replace("</span><span", "</span> <span")}</code></pre></div>'


def _page(body: str) -> str:
    return f"<html><head><script>var x = 1;</script></head><body><article>{body}</article></body></html>"


def test_a_page_showing_its_examples_passes(check_docs: ModuleType, base: Path) -> None:
    """A page showing a whole example and a section of another, tokenised and escaped, has no problem."""
    markdown = 'Read:\n\n```python\n--8<-- "examples/app.py"\n```\n\n```python\n--8<-- "examples/app.py:read"\n```\n'
    whole = "\n".join(line for line in EXAMPLE.splitlines() if "--8<--" not in line)
    section = EXAMPLE.split("[start:read]\n")[1].split("    # --8<-- [end")[0]
    html = _page(f"<p>Read:</p>{_highlighted(whole)}{_highlighted(section)}")
    assert check_docs.check_page("docs/good.md", markdown, html, base) == []


@pytest.mark.parametrize(
    "shown",
    [
        '--8<-- "examples/app.py"',
        "--8&lt;-- &quot;examples/app.py&quot;",
        '<span class="o">--</span><span class="mi">8</span><span class="o">&lt;--</span> "examples/app.py"',
        '--8 &lt;-- "examples/app.py"',
    ],
)
def test_an_unexpanded_include_is_reported(check_docs: ModuleType, base: Path, shown: str) -> None:
    """Include syntax left in the built page, raw, escaped, split by highlighting or mangled, is a problem."""
    markdown = '```python\n--8 <-- "examples/app.py"\n```\n'  # a formatter broke it: pymdownx leaves it alone
    problems = check_docs.check_page("docs/broken.md", markdown, _page(f"<pre><code>{shown}</code></pre>"), base)
    assert len(problems) == 1
    assert problems[0].startswith("docs/broken.md: the built page shows include syntax")


def test_a_missing_snippet_is_reported(check_docs: ModuleType, base: Path) -> None:
    """An included section whose code the built page does not show is a problem naming the page, line and include."""
    markdown = "# Title\n\n```python\n--8<-- 'examples/app.py:read'\n```\n"
    html = _page("<h1>Title</h1><pre><code>def read() -&gt; str:\n    return 42</code></pre>")
    problems = check_docs.check_page("docs/missing.md", markdown, html, base)
    assert problems == [
        "docs/missing.md:4: the built page does not show the code of 'examples/app.py:read': first missing line "
        "'return cache.get_secret_string(\"prod/key\")  # a dict lookup once warm'"
    ]


def test_lines_must_appear_in_order_and_outside_scripts(check_docs: ModuleType, base: Path) -> None:
    """Code found only inside a script, or out of order, does not count as shown."""
    markdown = '--8<-- "examples/app.py:read"\n'
    section = EXAMPLE.split("[start:read]\n")[1].split("    # --8<-- [end")[0].splitlines()
    in_script = f"<html><script>{escape(chr(10).join(section))}</script></html>"
    reversed_order = _page(_highlighted("\n".join(reversed(section))))
    assert len(check_docs.check_page("docs/a.md", markdown, in_script, base)) == 1
    assert len(check_docs.check_page("docs/a.md", markdown, reversed_order, base)) == 1


def test_an_unreadable_include_is_reported(check_docs: ModuleType, base: Path) -> None:
    """An include of a missing file or section is reported; an escaped include (;--8<--) is not an include."""
    markdown = '--8<-- "examples/gone.py"\n--8<-- "examples/app.py:nope"\n;--8<-- "examples/gone.py"\n'
    problems = check_docs.check_page("docs/x.md", markdown, _page("<p>text</p>"), base)
    assert problems == [
        "docs/x.md:1: include 'examples/gone.py' cannot be read: examples/gone.py does not exist",
        "docs/x.md:2: include 'examples/app.py:nope' cannot be read: examples/app.py has no section 'nope'",
    ]


def test_find_problems_maps_sources_to_built_pages(check_docs: ModuleType, base: Path) -> None:
    """Every docs page is checked against its built page (index.md at the root, x.md at x/), and others are scanned."""
    docs, site = base / "docs", base / "site"
    docs.mkdir()
    (docs / "index.md").write_text('--8<-- "examples/app.py:read"\n')
    (docs / "quickstart.md").write_text('--8<-- "examples/app.py:read"\n')
    (docs / "unbuilt.md").write_text("nothing\n")
    (site / "quickstart").mkdir(parents=True)
    (site / "index.html").write_text(_page(escape(EXAMPLE)))
    (site / "quickstart" / "index.html").write_text(_page("<p>no code at all</p>"))
    (site / "404.html").write_text(_page("--8&lt;-- oops"))
    problems = check_docs.find_problems(docs, site, base)
    assert [problem.split(":")[0] for problem in problems] == [
        "docs/index.md",  # its page shows the markers: they were not stripped
        "docs/quickstart.md",
        "docs/unbuilt.md",
        "404.html",
    ]


def test_a_build_that_cannot_format_signatures_is_a_problem(check_docs: ModuleType) -> None:
    """mkdocstrings' INFO line about a missing formatter, which --strict lets through, fails the check."""
    output = (
        "INFO    -  Cleaning site directory\n"
        "INFO    -  Formatting signatures requires either Black or Ruff to be installed.\n"
        "INFO    -  Documentation built in 7.23 seconds\n"
    )
    problems = check_docs.log_problems(output)
    assert len(problems) == 1
    assert "install the docs extra, which holds ruff" in problems[0]
    assert check_docs.log_problems(output.replace("Formatting signatures requires", "Built")) == []


@pytest.mark.parametrize(
    ("include", "problem"),
    [
        ('--8<--"examples/app.py"', "is not an include pymdownx.snippets reads"),  # no space: left as text
        ("--8<-- examples/app.py", "is not an include pymdownx.snippets reads"),  # unquoted: left as text
        ("--8 <-- 'examples/app.py'", "is not an include pymdownx.snippets reads"),  # a formatter's space
        ("--8<--\nexamples/gone.py\n--8<--", "examples/gone.py does not exist"),  # a block
        ('--8<-- "examples/app.py:90:95"', "examples/app.py has 11 lines"),  # pymdownx would include nothing
        ('--8<-- "examples/app.py:3:95"', "examples/app.py has 11 lines"),
        ('--8<-- "examples/app.py:2:2"', "selects no code"),  # a blank line
    ],
)
def test_a_broken_include_is_found_in_the_source(
    check_docs: ModuleType, base: Path, include: str, problem: str
) -> None:
    """An include pymdownx.snippets would leave as text, or expand to nothing, is reported without building."""
    problems = check_docs.source_problems("docs/x.md", f"```python\n{include}\n```\n", base)
    assert len(problems) == 1
    assert problems[0].startswith("docs/x.md:")
    assert problem in problems[0]


@pytest.mark.parametrize(
    "include",
    ['--8<-- "examples/app.py"', "--8<-- 'examples/app.py:read'", '--8<-- "examples/app.py:3:5"', ';--8<-- "gone"'],
)
def test_a_good_include_is_not_reported(check_docs: ModuleType, base: Path, include: str) -> None:
    """A whole file, a section, a line range (either quote) and an escaped include are fine."""
    assert check_docs.source_problems("docs/x.md", f"{include}\n", base) == []


def test_every_snippet_include_in_the_docs_resolves(check_docs: ModuleType) -> None:
    """Each ``--8<--`` include in docs/ reads some code of an existing example, as ``mkdocs.yml`` resolves it."""
    pages = sorted((ROOT / "docs").rglob("*.md"))
    problems = [
        problem
        for page in pages
        for problem in check_docs.source_problems(page.relative_to(ROOT).as_posix(), page.read_text(), ROOT)
    ]
    assert problems == []
    assert sum(len(list(check_docs.includes(page.read_text()))) for page in pages) >= 11  # it still finds them
